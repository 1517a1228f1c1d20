"""Significance in the tables: intervals from the per-item results, bold for "not significantly
worse than the best", marks against base, the win/tie/loss matrix, and runs that saw different
items refused for pairing with a note (no crash)."""

from __future__ import annotations

import numpy as np
import pytest

from bench import stats
from bench.report import frame_of
from bench.report.render import results_markdown, wtl_frame
from bench.report.significance import pair, task_scores
from bench.report.table import main_table

N = 500
RNG = np.random.default_rng(7)
GOOD = RNG.random(N) < 0.8  # per-item correctness of a method at ~80%


def with_items(record, correct, items_hash="sha256:same"):
    """``record`` (from the ``rec`` fixture) with per-item results ``correct`` and its score."""
    path, r = record
    correct = [bool(c) for c in correct]
    r.result["metrics"]["accuracy"] = 100.0 * sum(correct) / len(correct)
    r.result["items"] = {"id": list(range(len(correct))), "correct": correct}
    r.result["items_hash"] = items_hash
    return path, r


def flipped(correct, n_down, n_up=0):
    out = np.array(correct, dtype=bool)
    out[np.flatnonzero(out)[:n_down]] = False
    out[np.flatnonzero(~np.array(correct, dtype=bool))[:n_up]] = True
    return out


@pytest.fixture
def table(rec):
    items = [
        with_items(rec("base", "t", 0, 0.0), flipped(GOOD, 200)),  # 40 points below
        with_items(rec("lora", "t", 0, 0.0), GOOD),  # the best
        with_items(rec("neuroada", "t", 0, 0.0), flipped(GOOD, 1)),  # 1 item of 500 worse: a tie
        with_items(rec("full_ft", "t", 0, 0.0), flipped(GOOD, 75)),  # 15 points worse: not a tie
    ]
    return main_table(frame_of(items))


def test_one_item_apart_is_bold_fifteen_points_apart_is_not(table):
    cells = {m: table.cells[(m, "t")] for m in table.methods}
    assert cells["lora"].best and cells["neuroada"].best
    assert not cells["full_ft"].best and not cells["base"].best
    assert table.stats["t"].best == "lora"
    assert table.stats["t"].vs_best["neuroada"].p_value == 1.0  # McNemar: one discordant item


def test_intervals_come_from_the_items(table):
    cell = table.cells[("lora", "t")]
    expected = stats.interval(np.where(GOOD, 100.0, 0.0))
    assert (cell.mean, cell.low, cell.high) == pytest.approx((expected.mean, expected.low, expected.high))
    md = results_markdown(table)
    assert f"**{cell.mean:.1f} [{cell.low:.1f}, {cell.high:.1f}]**↑" in md
    assert "McNemar's exact test" in md and "95% confidence interval" in md


def test_marks_against_base(table):
    assert table.methods[0] == "base"
    assert {m: table.cells[(m, "t")].mark for m in table.methods} == {
        "base": "",
        "lora": "↑",
        "neuroada": "↑",
        "full_ft": "↑",
    }


def test_win_tie_loss_matrix(table):
    assert table.wtl.loc["lora", "full_ft"] == "1/0/0"
    assert table.wtl.loc["full_ft", "lora"] == "0/0/1"
    assert table.wtl.loc["lora", "neuroada"] == "0/1/0"
    assert table.wtl.loc["base", "lora"] == "0/0/1"
    long = wtl_frame(table)
    row = long[(long["method"] == "lora") & (long["against"] == "full_ft")].iloc[0]
    assert (row["wins"], row["ties"], row["losses"]) == (1, 0, 0)
    assert "### Wins, ties and losses" in results_markdown(table)


def test_runs_that_saw_other_items_are_not_paired(rec):
    items = [
        with_items(rec("lora", "t", 0, 0.0), GOOD),
        with_items(rec("neuroada", "t", 0, 0.0), flipped(GOOD, 75), items_hash="sha256:other"),
    ]
    table = main_table(frame_of(items))
    assert not table.cells[("neuroada", "t")].best  # not shown as tied: it was never tested
    assert any("not paired with the best (lora)" in n and "items_hash" in n for n in table.notes)
    scores, _ = task_scores(frame_of(items), "t")
    assert pair(scores["neuroada"], scores["lora"]) is None
    assert table.wtl.loc["lora", "neuroada"] == "0/0/0"


def test_seeds_are_paired_by_seed(rec):
    items = [
        with_items(rec(m, "t", s, 0.0), flipped(GOOD, 75 * (m == "full_ft") + s))
        for m in ("lora", "full_ft")
        for s in (0, 1, 2)
    ]
    table = main_table(frame_of(items))
    test = table.stats["t"].vs_best["full_ft"]
    assert test.test == "paired-bootstrap" and test.significant
    assert test.diff == pytest.approx(-15.0)
    assert table.cells[("lora", "t")].n == 3


def test_records_without_items_have_no_interval_and_say_so(rec):
    table = main_table(frame_of([rec("lora", "t", 0, 80.0), rec("full_ft", "t", 0, 70.0)]))
    cell = table.cells[("lora", "t")]
    assert cell.low is None and not cell.best
    assert any("without per-item results" in n for n in table.notes)
    assert "| lora | 50.00 | 80.0 |" in results_markdown(table)
