"""The tables as data: column and row orders, averages over common tasks, ranking by metric
direction, budget warnings, contamination and the notes under the main table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tasks
from bench import records, stats
from bench.report import frame_of
from bench.report.frame import comparable
from bench.report.table import column_groups, main_table, method_order, task_order

RECORDS = Path(__file__).resolve().parents[2] / "golden" / "records"


# ---------------------------------------------------------------------------------------------
# What the golden table must show (independent of the golden text)
# ---------------------------------------------------------------------------------------------
def test_columns_follow_the_paper_order_with_suite_averages(golden_frame):
    table = main_table(golden_frame)
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


def test_smoke_failed_and_diverged_runs_are_left_out(golden_frame):
    table = main_table(golden_frame)
    assert table.cells[("full_ft", "boolq")].n == 2  # not the smoke run (seed 7)
    assert table.cells[("lora", "gsm8k")].n == 1  # its seed 1 failed
    assert table.cells[("neuroada@k=4", "svamp")].n == 1  # its seed 1 diverged
    assert table.seeds["lora"] == "1–2"


def test_average_is_over_tasks_every_method_has(golden_frame):
    table = main_table(golden_frame)
    assert ("lora", "siqa") not in table.cells and ("full_ft", "siqa") in table.cells
    for method in table.methods:  # siqa left out: lora has none
        cells = [table.cells[(method, task)] for task in ("boolq", "piqa")]
        expected = sum(c.mean for c in cells) / len(cells)
        assert table.cells[(method, "avg:commonsense")].mean == pytest.approx(expected)
    assert any("left out: siqa" in n for n in table.notes)


def test_average_leaves_out_a_task_some_method_lacks(rec):
    items = [
        rec("a", "boolq", 0, 60.0),
        rec("a", "piqa", 0, 62.0),
        rec("a", "siqa", 0, 90.0),
        rec("b", "boolq", 0, 50.0),
        rec("b", "piqa", 0, 54.0),
    ]
    table = main_table(frame_of(items))
    assert table.cells[("a", "avg:commonsense")].mean == pytest.approx((60.0 + 62.0) / 2)
    assert table.cells[("b", "avg:commonsense")].mean == pytest.approx((50.0 + 54.0) / 2)
    assert any("left out: siqa" in n for n in table.notes)


def test_budget_differences_are_warned(golden_frame):
    table = main_table(golden_frame)
    steps = records.load(RECORDS / "full_ft--gsm8k--seed0.json").run["budget"]["max_steps"]
    rerun = records.load(RECORDS / "neuroada@k=4--gsm8k--seed1.json").run["budget"]["max_steps"]
    assert rerun != steps
    assert len(table.warnings) == 1
    assert table.warnings[0].startswith(f"runs on gsm8k differ in max_steps ({steps}: full_ft")
    assert f"{rerun}: neuroada@k=4" in table.warnings[0]


def test_contaminated_results_carry_a_dagger(golden_frame):
    table = main_table(golden_frame)
    assert table.cells[("lora", "addsub")].contaminated and not table.cells[("lora", "gsm8k")].contaminated
    assert table.cells[("lora", "avg:arithmetic")].contaminated
    assert any(n.startswith("†: trained on a file that contains eval problems of addsub") for n in table.notes)


# ---------------------------------------------------------------------------------------------
# Ranking and direction on records built in code
# ---------------------------------------------------------------------------------------------
def correct(n_right: int, n: int = 200) -> dict:
    return {"correct": [True] * n_right + [False] * (n - n_right)}


def test_lower_is_better_metric_makes_the_lowest_the_best(rec):
    df = frame_of(
        [rec(m, "t", 0, k / 2, higher=False, items=correct(k)) for m, k in (("a", 150), ("b", 20), ("c", 100))]
    )
    table = main_table(df)
    assert table.stats["t"].best == "b"
    assert [table.cells[(m, "t")].best for m in ("a", "b", "c")] == [False, True, False]


def test_record_direction_decides_and_unknown_metrics_are_noted(rec):
    # task "t" is not registered: without a recorded direction, "accuracy"'s is unknown here
    items = [rec(m, "t", 0, k / 2, higher=None, items=correct(k)) for m, k in (("a", 100), ("b", 160))]
    table = main_table(frame_of(items))
    assert table.stats["t"].best == "b"
    assert any("Direction unknown for metric(s) accuracy" in n for n in table.notes)
    items = [rec(m, "t", 0, k / 2, higher=False, items=correct(k)) for m, k in (("a", 100), ("b", 160))]
    table = main_table(frame_of(items))
    assert table.stats["t"].best == "a" and not table.notes


@pytest.mark.parametrize("higher", [None, True], ids=["registry", "record"])
def test_cola_with_its_real_metric_has_a_known_direction(rec, higher):
    # The bug: the report's own metric map lacked matthews_corr, glue_cola's primary metric.
    assert tasks.get("glue_cola").metrics[0] == "matthews_corr"
    refs = [1, 0] * 100
    preds = {"a": refs[:120] + [1] * 80, "b": refs[:180] + [1] * 20}
    items = [
        rec(
            m,
            "glue_cola",
            0,
            float(stats.matthews_binary(np.array(p), np.array(refs))),
            metric="matthews_corr",
            suite="glue",
            higher=higher,
            items={"prediction": p, "reference": refs},
        )
        for m, p in preds.items()
    ]
    table = main_table(frame_of(items))
    assert table.notes == []  # was: "Direction unknown for metric(s) matthews_corr"
    assert table.stats["glue_cola"].best == "b"
    cell = table.cells[("b", "glue_cola")]
    assert cell.best and cell.low < cell.mean < cell.high


def test_equal_methods_are_both_bold_and_a_lone_method_is_not(rec):
    table = main_table(frame_of([rec(m, "t", 0, 60.0, items=correct(120)) for m in ("a", "b")]))
    assert table.cells[("a", "t")].best and table.cells[("b", "t")].best
    alone = main_table(frame_of([rec("a", "t", 0, 60.0, items=correct(120))]))
    assert not alone.cells[("a", "t")].best  # nothing to compare with


def test_dtype_and_gradient_checkpointing_differences_are_warned(rec):
    items = [
        rec("a", "t", 0, 1.0),
        rec("b", "t", 0, 2.0, dtype="bfloat16", budget={"gradient_checkpointing": True}),
    ]
    (warning,) = main_table(frame_of(items)).warnings
    assert "gradient_checkpointing (false: a; true: b)" in warning
    assert 'dtype ("float32": a; "bfloat16": b)' in warning


def test_task_version_differences_are_warned(rec):
    items = [rec("a", "t", 0, 1.0, task_version=1), rec("b", "t", 0, 2.0, task_version=2)]
    assert main_table(frame_of(items)).warnings == [
        "runs on t differ in task_version (1: a; 2: b); they are not directly comparable."
    ]


# ---------------------------------------------------------------------------------------------
# Orders
# ---------------------------------------------------------------------------------------------
def test_task_order_registry_then_first_seen(monkeypatch):
    monkeypatch.setattr(tasks, "names", lambda: ["toy_b", "multiarith", "gsm8k", "toy_a"])
    order = task_order(["zeta_task", "glue_rte", "toy_a", "gsm8k", "alpha_task", "boolq", "multiarith"])
    assert order == ["multiarith", "gsm8k", "toy_a", "zeta_task", "glue_rte", "alpha_task", "boolq"]


def test_columns_group_paper_suites_first(rec):
    items = [
        rec("a", t, 0, 50.0, suite=s) for t, s in (("toy_x", "toy"), ("glue_rte", "glue"), ("piqa", "commonsense"))
    ]
    groups = column_groups(comparable(frame_of(items)))
    assert [s for s, _ in groups] == ["commonsense", "glue", "toy"]


def test_unknown_suites_follow_the_registered_ones_first_seen(rec):
    items = [rec("a", t, 0, 50.0, suite=s) for t, s in (("x1", "zeta"), ("x2", "alpha"), ("glue_rte", "glue"))]
    groups = column_groups(comparable(frame_of(items)))
    assert [s for s, _ in groups] == ["glue", "zeta", "alpha"]


def test_method_order_known_methods_first_and_k_naturally(rec):
    items = [rec(m, "t", 0, 1.0) for m in ("zz", "neuroada@k=16", "neuroada@k=4", "lora", "full_ft")]
    assert method_order(frame_of(items)) == ["full_ft", "lora", "neuroada@k=4", "neuroada@k=16", "zz"]
    assert method_order(frame_of([rec("lora", "t", 0, 1.0), rec("base", "t", 0, 1.0)]))[0] == "base"


def test_the_budget_caption_names_epochs_when_steps_came_from_them(rec):
    df = frame_of([rec("lora", "boolq", 0, 50.0, budget={"epochs": 3, "max_steps": 31956})])
    assert main_table(df).budget_lines == [
        "Budget: 31956 steps (3 epochs) × 4 examples (micro-batch 4), max length 64, float32, "
        "gradient checkpointing off, model tiny-llama."
    ]
