"""Records -> frame: the one column table, metric directions (record, then task registry)."""

from __future__ import annotations

import pytest

from bench.report import frame_of
from bench.report.frame import COLUMNS, FIELDS, MiB, shown_in


def test_empty_frame_has_every_column():
    empty = frame_of([])
    assert list(empty.columns) == list(COLUMNS)


def test_the_column_table():
    assert len(set(COLUMNS)) == len(COLUMNS)
    assert {table for f in FIELDS for table in f.show} == {"cost", "summary"}
    # What `bench run` prints at the end of a sweep (tests of the CLI grep its header).
    assert [f.heading for f in shown_in("summary")] == [
        "method",
        "task",
        "seed",
        "status",
        "metric",
        "trainable %",
        "peak MiB",
        "train tok/s",
        "train s",
        "eval s",
    ]
    assert [f.heading for f in shown_in("cost")][:3] == ["trainable params", "trainable %", "peak MiB"]


def test_values_come_from_their_place_in_the_record(rec):
    path, record = rec("lora@r=8", "t", 3, 61.5, dtype=None, method_config={"k": 4})
    record.run["budget"]["dtype"] = "bfloat16"
    record.cost.update(
        trainable_fraction=0.0125,
        memory={"peak_rss_mb": 512.0},
        breakdown={"param_bytes": 3 * MiB, "total_bytes": 10 * MiB},
    )
    row = frame_of([(path, record)]).iloc[0]
    assert row["file"] == "lora@r=8--t--seed3.json"
    assert (row["method"], row["method_name"], row["k"]) == ("lora@r=8", "lora", 4)
    assert row["dtype"] == "bfloat16"  # run.dtype empty: the budget's
    assert row["trainable_pct"] == pytest.approx(1.25)
    assert (row["rss_mb"], row["bd_param_mb"], row["bd_total_mb"]) == (512.0, 3.0, 10.0)
    assert row["bd_grad_mb"] is None
    assert row["score"] == 61.5 and row["status"] == "ok" and not row["smoke"]


def test_a_method_evaluated_unmerged_says_so_in_its_label(rec):
    rows = []
    for label, evaluated in (("lily", "unmerged"), ("shira", "merged"), ("lora", None)):
        path, record = rec(label, "t", 0, 50.0)
        if evaluated:
            record.result["evaluated"] = evaluated
        rows.append((path, record))
    frame = frame_of(rows)
    assert list(frame["method"]) == ["lily (unmerged)", "shira", "lora"]
    assert list(frame["method_name"]) == ["lily", "shira", "lora"]


# ---------------------------------------------------------------------------------------------
# Metric directions: result.higher_is_better, else the task registry, else unknown
# ---------------------------------------------------------------------------------------------
def test_cola_matthews_corr_direction_comes_from_the_task_registry(rec):
    # Records written before runs recorded result.higher_is_better: glue_cola declares it.
    row = frame_of([rec("a", "glue_cola", 0, 40.0, metric="matthews_corr", suite="glue", higher=None)]).iloc[0]
    assert row["higher_is_better"] and row["direction_known"]


def test_the_record_direction_wins_over_the_registry(rec):
    item = rec("a", "glue_cola", 0, 40.0, metric="matthews_corr", suite="glue", higher=False)
    row = frame_of([item]).iloc[0]
    assert not row["higher_is_better"] and row["direction_known"]


def test_a_metric_in_neither_has_an_unknown_direction_taken_as_higher_is_better(rec):
    rows = frame_of(
        [
            rec("a", "t", 0, 1.0, metric="weird", higher=None),
            rec("a", "glue_cola", 0, 1.0, metric="weird", higher=None),
        ]
    )
    assert list(rows["direction_known"]) == [False, False]
    assert list(rows["higher_is_better"]) == [True, True]
