"""The whole report: files written by ``write_report`` (tables and plots), what ``bench report``
prints, and the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import report
from bench.cli import main

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
RECORDS = GOLDEN / "records"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    text, paths = report.write_report(RECORDS, out)
    return out, text, paths


def test_write_report_writes_tables(written):
    out, text, paths = written
    tables = {p.name for p in paths if p.parent.name == "tables"}
    assert tables == {
        "report.md",
        "results.md",
        "results.tex",
        "results.csv",
        "wins_ties_losses.md",
        "wins_ties_losses.tex",
        "wins_ties_losses.csv",
        "cost.md",
        "cost.tex",
        "cost.csv",
        "excluded.md",
        "runs.csv",
    }
    assert (out / "tables" / "report.md").read_text() == text
    assert (out / "tables" / "results.md").read_text() == (GOLDEN / "results.md").read_text()
    csv = (out / "tables" / "results.csv").read_text().splitlines()
    assert csv[0] == (
        "method,suite,task,metric,higher_is_better,mean,ci_low,ci_high,std,n_seeds,"
        "best,p_vs_best,vs_base,p_vs_base,contaminated,trainable_pct"
    )
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temp files left


def test_plots_are_written_and_not_empty(written):
    out, _, paths = written
    names = {p.name for p in paths if p.parent.name == "plots"}
    stems = ("accuracy_vs_params", "accuracy_vs_memory", "throughput", "k_sweep", "loss_curves", "wins_ties_losses")
    assert names == {f"{s}.{ext}" for s in stems for ext in ("png", "pdf")}
    for name in names:
        data = (out / "plots" / name).read_bytes()
        assert data.startswith(b"\x89PNG" if name.endswith(".png") else b"%PDF")
        assert len(data) > 1000


def test_empty_and_all_excluded_inputs(rec):
    assert report.markdown_of(report.frame_of([])) == "_no records_\n"
    path, failed = rec("a", "t", 0, 1.0)
    failed.result = {"status": "failed", "error": "ValueError: x", "metrics": {}}
    text = report.markdown_of(report.frame_of([(path, failed)]))
    assert "_no comparable runs" in text and "| a--t--seed0.json | failed | no | ValueError: x |" in text


def test_an_empty_records_folder(tmp_path):
    text, paths = report.write_report(tmp_path, tmp_path / "out")
    assert text == f"_no records in {tmp_path}_\n"
    assert [p.name for p in paths] == ["report.md"]


def test_cli_report_prints_markdown_and_writes_files(tmp_path, capsys):
    code = main(["report", "--records", str(RECORDS), "--out", str(tmp_path), "--no-plots"])
    out, err = capsys.readouterr()
    assert code == 0
    assert out.startswith("## Results") and "## Cost" in out and "Smoke runs" in out
    assert (tmp_path / "tables" / "results.tex").exists() and not (tmp_path / "plots").exists()
    assert "wrote" in err


def test_cli_report_on_a_missing_folder_is_a_one_line_error(tmp_path, capsys):
    code = main(["report", "--records", str(tmp_path / "nope"), "--out", str(tmp_path)])
    assert code == 2
    assert capsys.readouterr().err.startswith("error: records folder")
