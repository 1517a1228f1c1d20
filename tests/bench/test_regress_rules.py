"""The rules of ``bench regress`` on hand-made summaries: counts and breakdown bytes exact, accuracy
within the tolerance, time ratios only warning unless strict, and how moved checks are printed.
Running the suite, summarizing records and the baseline file are tested in ``test_regress``."""

from __future__ import annotations

import copy
import re

import pytest

from bench import regress
from bench.regress_rules import (
    ACCURACY_POINTS,
    BREAKDOWN_BYTES,
    COUNTS,
    METHODS,
    TIME_RATIO_FACTOR,
    TIME_REFERENCE,
    Row,
    compare,
    format_ratios,
    format_rows,
)

TOLERANCE = {"accuracy_points": 5.0, "time_ratio_factor": 2.0}
SEEDS = ("0", "1")


def entry(i: int, *, score: float, ratio: float | None) -> dict:
    """A summary like ``regress.summarize``'s: method ``i`` of :data:`METHODS`, two seeds."""
    return {
        "status": "ok",
        "metric": "accuracy",
        "score": score,
        "per_seed": {"0": score - 0.5, "1": score + 0.5},
        "trainable_params": 1000 * (i + 1),
        "total_params": 100_000,
        "buffer_params": 64 * i,
        "head_params": 130,
        "breakdown": {s: {name: 4096 * (i + 1) + int(s) for name in BREAKDOWN_BYTES} for s in SEEDS},
        "tokens_per_s_vs_full_ft": ratio,
    }


def baseline() -> dict[str, dict]:
    """All five methods on toy_sum, toy_mc (tiny-llama) and toy_cls (tiny-bert), and neuroada on
    glue_sst2 (minilm-l6): accuracy 40 + 10 i (+ 0.5 on toy_cls), tokens/s (i + 1) / 5 of full_ft's."""
    out = {}
    for task, model in (("toy_sum", "tiny-llama"), ("toy_mc", "tiny-llama"), ("toy_cls", "tiny-bert")):
        for i, method in enumerate(METHODS):
            score = 40.0 + 10 * i + (0.5 if task == "toy_cls" else 0.0)
            out[f"{method}|{task}|{model}"] = entry(i, score=score, ratio=round((i + 1) / 5, 4))
    out["neuroada|glue_sst2|minilm-l6"] = entry(0, score=40.0, ratio=0.2)
    return out


def diff(now, *, strict_time=False):
    rows, _, _ = compare(baseline(), now, TOLERANCE, strict_time=strict_time)
    return rows, format_rows(rows)


def row(out: str, *cells: str) -> bool:
    """A table row with these cells in order, however wide the columns are."""
    return any(re.fullmatch(r"\s*" + r"\s+".join(map(re.escape, cells)) + r".*", line) for line in out.splitlines())


def edit(key: str, fn) -> dict[str, dict]:
    now = copy.deepcopy(baseline())
    fn(now[key])
    return now


def setter(**values):
    return lambda e: e.update(values)


# ---------------------------------------------------------------------------------------------
# The constants
# ---------------------------------------------------------------------------------------------
def test_the_constants():
    assert METHODS == ("neuroada", "lora", "dora", "masked_sparse", "full_ft")
    assert TIME_REFERENCE == "full_ft" and TIME_REFERENCE in METHODS
    assert ACCURACY_POINTS == 5.0 and TIME_RATIO_FACTOR == 2.0
    assert COUNTS == ("trainable_params", "total_params", "buffer_params", "head_params")
    assert len(BREAKDOWN_BYTES) == len(set(BREAKDOWN_BYTES)) == 10 and "total_bytes" in BREAKDOWN_BYTES
    # bench.regress re-exports the rules: one definition
    assert regress.compare is compare and regress.Row is Row and regress.METHODS is METHODS


# ---------------------------------------------------------------------------------------------
# compare
# ---------------------------------------------------------------------------------------------
def test_nothing_moved_gives_no_rows():
    rows, checks, ratios = compare(baseline(), baseline(), TOLERANCE)
    assert rows == []
    # per case: the record, the score, 4 counts, 10 bytes x 2 seeds, and the time ratio (not full_ft's)
    assert checks == 16 * (1 + 1 + 4 + 20 + 1) - 3
    assert len(ratios) == 13 and not any(k.startswith("full_ft|") for k in ratios)
    assert ratios["lora|toy_cls|tiny-bert"] == (0.4, 0.4)


def test_accuracy_within_the_tolerance_passes():
    now = edit("lora|toy_cls|tiny-bert", setter(score=54.5))  # 50.5 -> 54.5: +4 points
    rows, out = diff(now)
    assert [r.fails for r in rows] == [False]
    assert row(out, "accuracy", "lora", "toy_cls", "tiny-bert", "50.50", "54.50", "+4.00", "within tolerance (±5)")


def test_accuracy_exactly_at_the_tolerance_passes():
    rows, _ = diff(edit("lora|toy_sum|tiny-llama", setter(score=55.0)))  # 50 -> 55
    assert [(r.check, r.verdict) for r in rows] == [("accuracy", "within tolerance (±5)")]
    rows, _ = diff(edit("lora|toy_sum|tiny-llama", setter(score=55.01)))
    assert rows[0].verdict == "REGRESSION (better: if intended, --update; beyond ±5)"


@pytest.mark.parametrize(("value", "side"), [(30.0, "worse"), (70.0, "better: if intended, --update")])
def test_accuracy_beyond_the_tolerance_fails_either_way(value, side):
    rows, out = diff(edit("neuroada|glue_sst2|minilm-l6", setter(score=value)))
    assert [r.fails for r in rows] == [True]
    assert row(out, "accuracy", "neuroada", "glue_sst2", "minilm-l6", "40.00", f"{value:.2f}")
    assert f"REGRESSION ({side}; beyond ±5)" in out


def test_the_tolerance_comes_from_the_baseline_file():
    now = edit("lora|toy_cls|tiny-bert", setter(score=54.5))
    rows, _, _ = compare(baseline(), now, {"accuracy_points": 2, "time_ratio_factor": 2})
    assert rows[0].verdict == "REGRESSION (better: if intended, --update; beyond ±2)"


def test_no_score_is_a_regression():
    rows, out = diff(edit("dora|toy_mc|tiny-llama", setter(score=None)))
    assert [r.verdict for r in rows] == ["REGRESSION (no score)"]
    assert row(out, "accuracy", "dora", "toy_mc", "tiny-llama", "60.00", "None", "", "REGRESSION (no score)")


@pytest.mark.parametrize("count", COUNTS)
def test_parameter_counts_are_exact(count):
    now = edit("lora|toy_sum|tiny-llama", lambda e: e.update({count: e[count] + 1}))
    rows, _ = diff(now)
    assert [(r.check, r.fails) for r in rows] == [(count, True)]


def test_a_count_change_is_printed_with_its_difference():
    rows, out = diff(edit("lora|toy_sum|tiny-llama", lambda e: e.update(trainable_params=e["trainable_params"] + 1)))
    assert row(out, "trainable_params", "lora", "toy_sum", "tiny-llama", "2,000", "2,001", "+1", "REGRESSION (exact)")


@pytest.mark.parametrize("name", BREAKDOWN_BYTES)
def test_every_breakdown_byte_is_exact(name):
    now = edit(
        "full_ft|toy_mc|tiny-llama", lambda e: e["breakdown"]["0"].update({name: e["breakdown"]["0"][name] + 1})
    )
    rows, _ = diff(now)
    assert [(r.check, r.baseline, r.now, r.verdict) for r in rows] == [
        (f"{name} (seed 0)", 20480, 20481, "REGRESSION (exact)")
    ]


def test_memory_bytes_are_exact_per_seed():
    now = edit("dora|toy_mc|tiny-llama", lambda e: e["breakdown"]["1"].update(saved_activation_bytes=12285))
    rows, out = diff(now)
    assert [r.fails for r in rows] == [True]
    assert row(out, "saved_activation_bytes (seed 1)", "dora", "toy_mc", "tiny-llama", "12,289", "12,285", "-4")


def test_the_same_move_on_several_seeds_is_one_row():
    key = "lora|toy_cls|tiny-bert"
    base = baseline()
    base[key]["breakdown"]["1"] = dict(base[key]["breakdown"]["0"])  # seeds 0 and 1 measure the same bytes
    now = copy.deepcopy(base)
    for s in SEEDS:
        now[key]["breakdown"][s]["grad_bytes"] = 1
    rows, _, _ = compare(base, now, TOLERANCE)
    assert [(r.check, r.baseline, r.now, r.verdict) for r in rows] == [
        ("grad_bytes (seeds 0,1)", 8192, 1, "REGRESSION (exact)")
    ]
    # different moves on each seed: a row each
    rows, _ = diff(edit(key, lambda e: [e["breakdown"][s].update(grad_bytes=1) for s in SEEDS]))
    assert [(r.check, r.baseline, r.now) for r in rows] == [
        ("grad_bytes (seed 0)", 8192, 1),
        ("grad_bytes (seed 1)", 8193, 1),
    ]


def test_a_missing_breakdown_is_a_regression():
    rows, out = diff(edit("full_ft|toy_cls|tiny-bert", lambda e: e["breakdown"].pop("0")))
    assert [r.fails for r in rows] == [True]
    assert row(out, "breakdown seed 0", "full_ft", "toy_cls", "tiny-bert", "present", "missing")
    assert rows[0].verdict == "REGRESSION (not measured)"


def test_a_new_breakdown_seed_is_not_a_regression():
    new_seed = {name: 1 for name in BREAKDOWN_BYTES}
    rows, _ = diff(edit("lora|toy_cls|tiny-bert", lambda e: e["breakdown"].update({"2": new_seed})))
    assert [(r.check, r.verdict, r.fails) for r in rows] == [("breakdown seed 2", "new (--update adds it)", False)]


def test_time_ratios_only_warn():
    now = edit("masked_sparse|toy_mc|tiny-llama", setter(tokens_per_s_vs_full_ft=2.4))  # 0.8 -> 2.4: x3
    rows, out = diff(now)
    assert [r.fails for r in rows] == [False]
    assert row(out, "tokens/s ÷ full_ft", "masked_sparse", "toy_mc", "tiny-llama", "0.80", "2.40")
    assert "warning (x3.00; outside x2)" in out
    rows, out = diff(now, strict_time=True)
    assert [r.fails for r in rows] == [True] and "REGRESSION (x3.00; outside x2)" in out


@pytest.mark.parametrize(("now", "warns"), [(0.41, False), (0.8, False), (0.2, False), (0.81, True), (0.19, True)])
def test_the_time_factor_bounds(now, warns):
    rows, _ = diff(edit("lora|toy_sum|tiny-llama", setter(tokens_per_s_vs_full_ft=now)))  # baseline 0.4, x2
    assert bool(rows) is warns
    assert not any(r.fails for r in rows)


@pytest.mark.parametrize("value", [None, 0.0])
def test_a_missing_time_ratio_is_reported_not_judged(value):
    now = edit("lora|toy_sum|tiny-llama", setter(tokens_per_s_vs_full_ft=value))
    rows, _, ratios = compare(baseline(), now, TOLERANCE, strict_time=True)
    assert rows == [] and ratios["lora|toy_sum|tiny-llama"] == (0.4, value)


def test_the_time_reference_is_not_compared():
    now = edit("full_ft|toy_sum|tiny-llama", setter(tokens_per_s_vs_full_ft=9.0))
    rows, _, ratios = compare(baseline(), now, TOLERANCE, strict_time=True)
    assert rows == [] and "full_ft|toy_sum|tiny-llama" not in ratios


def test_a_failed_or_missing_job_is_a_regression():
    now = edit("neuroada|toy_sum|tiny-llama", setter(status="diverged,ok", score=None))
    rows, out = diff(now)
    assert [r.fails for r in rows] == [True]  # one row: the other checks are skipped
    assert row(out, "status", "neuroada", "toy_sum", "tiny-llama", "ok", "diverged,ok", "", "REGRESSION")
    now = baseline()
    del now["lora|toy_mc|tiny-llama"]
    rows, out = diff(now)
    assert [r.fails for r in rows] == [True]
    assert row(out, "record", "lora", "toy_mc", "tiny-llama", "present", "missing")
    assert rows[0].verdict == "REGRESSION (the job did not run)"


def test_a_case_not_in_the_baseline_is_new_not_a_regression():
    now = baseline()
    now["lora|glue_sst2|minilm-l6"] = entry(1, score=50.0, ratio=0.4)
    rows, checks, ratios = compare(baseline(), now, TOLERANCE)
    assert [(r.check, r.key, r.verdict, r.fails) for r in rows] == [
        ("record", "lora|glue_sst2|minilm-l6", "new (not in the baseline; --update adds it)", False)
    ]
    assert "lora|glue_sst2|minilm-l6" not in ratios
    assert checks == compare(baseline(), baseline(), TOLERANCE)[1] + 1


def test_rows_are_sorted_by_case():
    now = edit("neuroada|toy_sum|tiny-llama", setter(score=0.0))
    now["dora|toy_cls|tiny-bert"]["score"] = 0.0
    rows, _ = diff(now)
    assert [r.key for r in rows] == ["dora|toy_cls|tiny-bert", "neuroada|toy_sum|tiny-llama"]


def test_row_fails_only_on_a_regression():
    assert Row("x", "a|b|c", 1, 2, "REGRESSION (exact)").fails
    for verdict in ("warning (x3.00; outside x2)", "within tolerance (±5)", "new (--update adds it)"):
        assert not Row("x", "a|b|c", 1, 2, verdict).fails


# ---------------------------------------------------------------------------------------------
# Printing
# ---------------------------------------------------------------------------------------------
def test_format_rows_exact_table():
    rows = [
        Row("trainable_params", "lora|toy_sum|tiny-llama", 2000, 2001, "REGRESSION (exact)"),
        Row("accuracy", "neuroada|glue_sst2|minilm-l6", 40.0, 30.0, "REGRESSION (worse)"),
        Row("record", "dora|toy_mc|tiny-llama", "present", "missing", "REGRESSION (not run)"),
    ]
    assert format_rows(rows).splitlines() == [
        "  check             method    task       model       baseline  now      change  verdict",
        "  trainable_params  lora      toy_sum    tiny-llama  2,000     2,001    +1      REGRESSION (exact)",
        "  accuracy          neuroada  glue_sst2  minilm-l6   40.00     30.00    -10.00  REGRESSION (worse)",
        "  record            dora      toy_mc     tiny-llama  present   missing          REGRESSION (not run)",
    ]


def test_format_ratios_one_row_per_task_and_model():
    ratios = {
        "lora|toy_sum|tiny-llama": (0.4, 0.5),
        "neuroada|toy_sum|tiny-llama": (0.2, 0.2),
        "dora|toy_cls|tiny-bert": (None, 0.6),
    }
    assert format_ratios(ratios).splitlines() == [
        "  task     model       neuroada     lora         dora         masked_sparse",
        "  toy_sum  tiny-llama  0.20 (0.20)  0.50 (0.40)  -            -",
        "  toy_cls  tiny-bert   -            -            0.60 (None)  -",
    ]
