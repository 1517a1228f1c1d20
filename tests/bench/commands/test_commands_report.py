"""``python -m bench report``: the command's contract on the golden records (exit 0, tables under
OUT/tables/, Markdown on stdout, ``--output`` written). What the tables hold is tested in
``tests/bench/report/``."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from bench.cli import build_parser, main

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "records"


def test_defaults():
    args = build_parser().parse_args(["report"])
    assert (args.records, args.out, args.no_plots, args.output) == ("results/runs", "results", False, None)


@pytest.fixture(scope="module")
def golden_report(tmp_path_factory):
    """``report --records tests/golden/records --out OUT --no-plots --output FILE``, run once."""
    out = tmp_path_factory.mktemp("report")
    output = out / "printed" / "report.md"  # a folder that does not exist yet
    stdout, stderr = io.StringIO(), io.StringIO()  # capsys is per test; this runs once per module
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["report", "--records", str(GOLDEN), "--out", str(out), "--no-plots", "--output", str(output)])
    return code, out, output, stdout.getvalue(), stderr.getvalue()


def test_golden_records_exit_0_and_print_markdown(golden_report):
    code, _, _, stdout, _ = golden_report
    assert code == 0
    assert stdout.strip()
    assert any(re.fullmatch(r"\|.*\|", line) for line in stdout.splitlines())  # a Markdown table


def test_tables_are_written_under_out_tables(golden_report):
    _, out, output, stdout, stderr = golden_report
    tables = out / "tables"
    written = sorted(p for p in tables.iterdir() if p.is_file())
    assert written and all(p.stat().st_size > 0 for p in written)
    assert {p.suffix for p in written} >= {".md", ".csv", ".tex"}
    assert not (out / "plots").exists()  # --no-plots
    assert f"wrote {len(written)} file(s) under {out}/ (tables/, plots/)" in stderr


def test_output_holds_what_was_printed(golden_report):
    _, _, output, stdout, stderr = golden_report
    assert output.read_text(encoding="utf-8") + "\n" == stdout
    assert f"wrote {output}" in stderr


def test_an_empty_records_folder_still_reports(tmp_path, capsys):
    records = tmp_path / "records"
    records.mkdir()
    assert main(["report", "--records", str(records), "--out", str(tmp_path / "out"), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert f"no records in {records}" in out
    assert (tmp_path / "out" / "tables").is_dir()


def test_a_missing_records_folder_is_exit_2(tmp_path, capsys):
    missing = tmp_path / "none"
    assert main(["report", "--records", str(missing), "--out", str(tmp_path / "out"), "--no-plots"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and str(missing) in err and err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_reference_paper_adds_its_section(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["report", "--records", str(GOLDEN), "--out", str(out), "--no-plots", "--reference", "paper"]) == 0
    printed = capsys.readouterr().out
    # the golden records are tiny-llama runs: no published table matches them, and the report says so
    assert "## Against the paper reference" in printed and "_no run matches a published table" in printed
    assert (out / "tables" / "reference.md").read_text().startswith("## Against the paper reference")


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--reference", "papers"], "unknown reference 'papers'; did you mean 'paper'?"),
        (["--reference", "paper", "--tolerance", "-1"], "--tolerance -1.0 must be >= 0"),
    ],
)
def test_bad_reference_flags_are_exit_2(tmp_path, capsys, flags, message):
    assert main(["report", "--records", str(GOLDEN), "--out", str(tmp_path), "--no-plots", *flags]) == 2
    assert message in capsys.readouterr().err
