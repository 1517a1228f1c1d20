"""Reports from records: golden Markdown and LaTeX tables from fixture records, ranking by metric
direction, averages over common tasks, budget warnings, excluded runs, plots and the CLI.

Regenerate the golden files after an intended change with ``BENCH_REGEN_GOLDEN=1 pytest
tests/bench/test_report.py`` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench import plots, report
from bench.cli import main
from bench.records import RunRecord

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
RECORDS = GOLDEN / "records"
REGEN = os.environ.get("BENCH_REGEN_GOLDEN") == "1"


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if REGEN:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} missing; create it with BENCH_REGEN_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), f"{name} changed; if intended, rerun with BENCH_REGEN_GOLDEN=1"


@pytest.fixture(scope="module")
def frame():
    return report.load_frame(RECORDS)


# ---------------------------------------------------------------------------------------------
# Golden files
# ---------------------------------------------------------------------------------------------
def test_results_markdown_matches_golden(frame):
    check_golden("results.md", report.results_markdown(report.main_table(frame)))


def test_results_latex_matches_golden(frame):
    check_golden("results.tex", report.results_latex(report.main_table(frame)))


def test_cost_markdown_matches_golden(frame):
    check_golden("cost.md", report.cost_markdown(frame))


# ---------------------------------------------------------------------------------------------
# What the fixture table must show (independent of the golden text)
# ---------------------------------------------------------------------------------------------
def test_columns_follow_the_paper_order_with_suite_averages(frame):
    table = report.main_table(frame)
    keys = [c.key for c in table.columns]
    assert keys == [
        "boolq",
        "piqa",
        "siqa",
        "avg:commonsense",
        "gsm8k",
        "addsub",
        "svamp",
        "avg:arithmetic",
        "glue_cola",
        "glue_sst2",
        "avg:glue",
    ]
    assert table.methods == ["full_ft", "lora", "neuroada", "neuroada@k=4"]


def test_smoke_failed_and_diverged_runs_are_left_out_and_listed(frame):
    table = report.main_table(frame)
    assert table.cells[("full_ft", "boolq")].n == 2  # not the smoke run's 99.0
    assert table.cells[("lora", "gsm8k")].n == 1  # its seed 1 failed
    assert table.cells[("neuroada@k=4", "svamp")].n == 1  # its seed 1 diverged
    assert table.seeds["lora"] == "1–2"
    listed = report.excluded_markdown(frame)
    assert "| full_ft | boolq | 7 | accuracy | 99.0 |" in listed
    assert "| lora--gsm8k--seed1.json | failed | no | RuntimeError: out of memory |" in listed
    assert "| neuroada@k=4--svamp--seed1.json | diverged | no | loss became nan at step 12 |" in listed


def test_average_is_over_tasks_every_method_has(frame):
    table = report.main_table(frame)
    lora = table.cells[("lora", "avg:commonsense")]
    assert lora.mean == pytest.approx((61.2 + 61.5) / 2)  # siqa left out: lora has none
    assert any("left out: siqa" in n for n in table.notes)


def test_budget_differences_are_warned(frame):
    table = report.main_table(frame)
    assert len(table.warnings) == 1
    assert table.warnings[0].startswith("runs on gsm8k differ in max_steps (40: full_ft")
    assert "80: neuroada@k=4" in table.warnings[0]


# ---------------------------------------------------------------------------------------------
# Ranking, direction and formatting on records built in code
# ---------------------------------------------------------------------------------------------
def rec(method, task, seed, score, *, metric="accuracy", suite="commonsense", dtype="float32", **run):
    budget = {
        "max_steps": 10,
        "batch_size": 4,
        "micro_batch_size": 4,
        "max_length": 64,
        "gradient_checkpointing": False,
    }
    budget.update(run.pop("budget", {}))
    return (
        Path(f"{method}--{task}--seed{seed}.json"),
        RunRecord(
            run={
                "method": method.split("@")[0],
                "method_label": method,
                "task": task,
                "suite": suite,
                "seed": seed,
                "model": "tiny-llama",
                "smoke": False,
                "primary_metric": metric,
                "budget": budget,
                "dtype": dtype,
                **run,
            },
            result={"status": "ok", "metrics": {metric: score}},
            cost={"trainable_fraction": 0.5, "peak_memory_mb": 100.0, "train_tokens_per_s": 10.0},
        ),
    )


def test_lower_is_better_metric_bolds_the_lowest():
    df = report.frame_of(
        [
            rec("a", "t", 0, 3.0, metric="loss"),
            rec("b", "t", 0, 1.0, metric="loss"),
            rec("c", "t", 0, 2.0, metric="loss"),
        ]
    )
    table = report.main_table(df)
    assert [table.cells[(m, "t")].rank for m in ("a", "b", "c")] == [None, 1, 2]
    assert "| t (loss) ↓ |" in report.results_markdown(table)


def test_record_direction_overrides_the_map_and_unknown_metrics_are_noted():
    items = [rec("a", "t", 0, 1.0, metric="weird"), rec("b", "t", 0, 2.0, metric="weird")]
    table = report.main_table(report.frame_of(items))
    assert table.cells[("b", "t")].rank == 1
    assert any("Direction unknown for metric(s) weird" in n for n in table.notes)
    items = [rec(m, "t", 0, s, metric="weird", higher_is_better=False) for m, s in (("a", 1.0), ("b", 2.0))]
    table = report.main_table(report.frame_of(items))
    assert table.cells[("a", "t")].rank == 1 and not table.notes


def test_ties_share_a_rank_and_second_best_needs_three_entries():
    table = report.main_table(report.frame_of([rec("a", "t", 0, 5.0), rec("b", "t", 0, 4.0)]))
    assert [table.cells[(m, "t")].rank for m in ("a", "b")] == [1, None]
    items = [rec("a", "t", 0, 5.0), rec("b", "t", 0, 5.04), rec("c", "t", 0, 4.0)]
    table = report.main_table(report.frame_of(items))
    assert [table.cells[(m, "t")].rank for m in ("a", "b", "c")] == [1, 1, 2]  # 5.0 and 5.0 shown


def test_mean_std_and_seed_count():
    items = [rec("a", "t", s, v) for s, v in enumerate((70.0, 72.0, 74.0))]
    md = report.results_markdown(report.main_table(report.frame_of(items)))
    assert "| a | 50.00 | 72.0 ± 2.0 | 3 |" in md


def test_dtype_and_gradient_checkpointing_differences_are_warned():
    items = [
        rec("a", "t", 0, 1.0),
        rec("b", "t", 0, 2.0, dtype="bfloat16", budget={"gradient_checkpointing": True}),
    ]
    (warning,) = report.main_table(report.frame_of(items)).warnings
    assert "gradient_checkpointing (false: a; true: b)" in warning
    assert 'dtype ("float32": a; "bfloat16": b)' in warning


def test_task_version_differences_are_warned():
    items = [rec("a", "t", 0, 1.0, task_version=1), rec("b", "t", 0, 2.0, task_version=2)]
    assert report.main_table(report.frame_of(items)).warnings == [
        "runs on t differ in task_version (1: a; 2: b); they are not directly comparable."
    ]


def test_task_order_registry_then_paper_list_then_first_seen(monkeypatch):
    monkeypatch.setattr(report, "_registered_tasks", lambda: ["toy_b", "multiarith", "gsm8k", "toy_a"])
    order = report.task_order(["zeta_task", "glue_rte", "toy_a", "gsm8k", "alpha_task", "boolq", "multiarith"])
    assert order == ["multiarith", "gsm8k", "toy_a", "boolq", "glue_rte", "zeta_task", "alpha_task"]


def test_columns_group_paper_suites_first():
    items = [
        rec("a", t, 0, 50.0, suite=s) for t, s in (("toy_x", "toy"), ("glue_rte", "glue"), ("piqa", "commonsense"))
    ]
    groups = report.column_groups(report.comparable(report.frame_of(items)))
    assert [s for s, _ in groups] == ["commonsense", "glue", "toy"]


def test_contaminated_results_carry_a_dagger(frame):
    table = report.main_table(frame)
    assert table.cells[("lora", "addsub")].contaminated and not table.cells[("lora", "gsm8k")].contaminated
    assert table.cells[("lora", "avg:arithmetic")].contaminated
    assert any(n.startswith("†: trained on a file that contains eval problems of addsub") for n in table.notes)


def test_method_order_known_methods_first_and_k_naturally():
    items = [rec(m, "t", 0, 1.0) for m in ("zz", "neuroada@k=16", "neuroada@k=4", "lora", "full_ft")]
    assert report.method_order(report.frame_of(items)) == ["full_ft", "lora", "neuroada@k=4", "neuroada@k=16", "zz"]


def test_latex_escapes_names():
    table = report.main_table(report.frame_of([rec("my_method", "new_task", 0, 10.0)]))
    tex = report.results_latex(table)
    assert r"my\_method & 50.00 & 10.0 & 1 \\" in tex  # one entry: no best, no underline
    assert r"new\_task" in tex


def test_empty_and_all_excluded_inputs():
    empty = report.frame_of([])
    assert list(empty.columns) == list(report.COLUMNS)
    assert report.markdown_of(empty) == "_no records_\n"
    path, failed = rec("a", "t", 0, 1.0)
    failed.result = {"status": "failed", "error": "ValueError: x", "metrics": {}}
    text = report.markdown_of(report.frame_of([(path, failed)]))
    assert "_no comparable runs" in text and "| a--t--seed0.json | failed | no | ValueError: x |" in text
    assert "| a | t | 0 | failed | ValueError: x |" in report.summary_table(report.frame_of([(path, failed)]))


def test_pareto_front():
    import pandas as pd

    pts = pd.DataFrame({"method": list("abcd"), "mem": [1.0, 2.0, 3.0, 1.5], "score": [50.0, 60.0, 55.0, 40.0]})
    assert list(plots.pareto_front(pts, "mem", "score")["method"]) == ["a", "b"]
    assert list(plots.pareto_front(pts, "mem", "score", higher_is_better=False)["method"]) == ["a", "d"]


# ---------------------------------------------------------------------------------------------
# Files and the CLI
# ---------------------------------------------------------------------------------------------
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
        "cost.md",
        "cost.tex",
        "cost.csv",
        "excluded.md",
        "runs.csv",
    }
    assert (out / "tables" / "report.md").read_text() == text
    assert (out / "tables" / "results.md").read_text() == (GOLDEN / "results.md").read_text()
    csv = (out / "tables" / "results.csv").read_text().splitlines()
    assert csv[0] == "method,suite,task,metric,higher_is_better,mean,std,n_seeds,rank,contaminated,trainable_pct"
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temp files left


def test_plots_are_written_and_not_empty(written):
    out, _, paths = written
    names = {p.name for p in paths if p.parent.name == "plots"}
    stems = ("accuracy_vs_params", "accuracy_vs_memory", "throughput", "k_sweep")
    assert names == {f"{s}.{ext}" for s in stems for ext in ("png", "pdf")}
    for name in names:
        data = (out / "plots" / name).read_bytes()
        assert data.startswith(b"\x89PNG" if name.endswith(".png") else b"%PDF")
        assert len(data) > 1000


def test_no_k_sweep_without_several_k(tmp_path):
    df = report.frame_of([rec("neuroada", "t", 0, 1.0, method_config={"k": 1}), rec("lora", "t", 0, 2.0)])
    assert plots.k_sweep_frame(df).empty
    assert not [p for p in plots.write_all(df, tmp_path) if p.stem == "k_sweep"]


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
