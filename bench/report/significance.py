"""Which differences are real: per task, each method's 95% interval, its paired test against the
column's best and against ``base``, and the win/tie/loss matrix of methods over tasks.

Runs are paired on the same eval items, checked by the records' ``items_hash`` (runs that saw
different items are not paired, and a note says so), and on the same seeds where both methods
have them. The statistics are :mod:`bench.stats`; this module only gathers the per-item results
of the frame (:mod:`bench.report.frame`) into seeds x items matrices.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench import stats

BASE = "base"
"""The frozen backbone's method name: every method is tested against it when it is there."""


@dataclass
class Scores:
    """One method's per-item results on one task: seeds x items."""

    seeds: list[int]
    matrix: np.ndarray
    refs: np.ndarray | None
    """References for a metric recomputed on resamples; None for a percentage of correct items."""
    metric: stats.Metric | None
    items_hash: str | None

    @property
    def binary(self) -> bool:
        return self.metric is None


@dataclass
class TaskStats:
    intervals: dict[str, stats.Interval] = field(default_factory=dict)
    best: str | None = None
    """The method with the best point estimate (by the metric's direction)."""
    vs_best: dict[str, stats.Comparison] = field(default_factory=dict)
    vs_base: dict[str, stats.Comparison] = field(default_factory=dict)
    scores: dict[str, Scores] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    _tests: dict[tuple[str, str], stats.Comparison | None] = field(default_factory=dict, repr=False)

    def test(self, a: str, b: str) -> stats.Comparison | None:
        """:func:`pair` of methods ``a`` and ``b``, computed once: the tests against the best and
        ``base`` are also entries of the win/tie/loss matrix."""
        if (a, b) not in self._tests:
            self._tests[(a, b)] = pair(self.scores[a], self.scores[b])
        return self._tests[(a, b)]

    def tied_with_best(self, method: str, higher: bool) -> bool:
        """Not significantly worse than the best (the best itself included)."""
        if method == self.best:
            return True
        test = self.vs_best.get(method)
        return test is not None and not (test.significant and (test.diff < 0) == higher)


def task_scores(sub: pd.DataFrame, task: str) -> tuple[dict[str, Scores], list[str]]:
    """Per method, the seeds x items matrix of its comparable runs on ``task`` (``sub``)."""
    out: dict[str, Scores] = {}
    notes: list[str] = []
    for method, runs in sub.groupby("method", sort=False):
        runs = runs.sort_values("seed")
        if runs["item_values"].isna().any():
            notes.append(f"{task}: {method} has runs without per-item results: no interval or test for it.")
            continue
        hashes = set(runs["items_hash"])
        lengths = {len(v) for v in runs["item_values"]}
        if len(hashes) > 1 or len(lengths) > 1:
            notes.append(f"{task}: {method}'s seeds saw different eval items (items_hash differs): not pooled.")
            continue
        refs = runs["item_refs"].iloc[0]
        metric_name = runs["metric"].iloc[0]
        out[str(method)] = Scores(
            seeds=[int(s) for s in runs["seed"]],
            matrix=np.array(list(runs["item_values"]), dtype=float),
            refs=None if refs is None else np.asarray(refs, dtype=float),
            metric=None if refs is None else stats.RESAMPLED[metric_name],
            items_hash=hashes.pop(),
        )
    return out, notes


def pair(a: Scores, b: Scores) -> stats.Comparison | None:
    """The paired test of ``a`` against ``b``; None when they cannot be paired (other items,
    or a recomputed metric with no seed in common)."""
    if a.items_hash != b.items_hash or a.matrix.shape[1] != b.matrix.shape[1]:
        return None
    common = sorted(set(a.seeds) & set(b.seeds))
    if common:
        left = a.matrix[[a.seeds.index(s) for s in common]]
        right = b.matrix[[b.seeds.index(s) for s in common]]
    elif a.binary:  # no seed in common: the per-item mean over each method's seeds
        left, right = a.matrix.mean(axis=0, keepdims=True), b.matrix.mean(axis=0, keepdims=True)
    else:
        return None
    return stats.compare(left, right, a.refs, a.metric, binary=a.binary and bool(common))


def task_stats(sub: pd.DataFrame, task: str, higher: bool) -> TaskStats:
    """Intervals, the best method and the paired tests of one task's comparable runs."""
    scores, notes = task_scores(sub, task)
    out = TaskStats(scores=scores, notes=notes)
    for method, s in scores.items():
        out.intervals[method] = stats.interval(s.matrix, s.refs, s.metric)
    if not scores:
        return out
    means = {m: i.mean for m, i in out.intervals.items()}
    out.best = (max if higher else min)(means, key=means.get)
    unpaired = []
    for method in scores:
        if method != out.best:
            test = out.test(method, out.best)
            if test is None:
                unpaired.append(method)
            else:
                out.vs_best[method] = test
        if BASE in scores and method != BASE:
            test = out.test(method, BASE)
            if test is not None:
                out.vs_base[method] = test
    if unpaired:
        out.notes.append(
            f"{task}: {', '.join(unpaired)} not paired with the best ({out.best}): different eval items "
            "(items_hash) or no common seed; not marked."
        )
    return out


def base_mark(ts: TaskStats, method: str, higher: bool) -> str:
    """``↑`` significantly above ``base``, ``↓`` significantly below, else ``""``."""
    test = ts.vs_base.get(method)
    if test is None or not test.significant:
        return ""
    return "↑" if (test.diff > 0) == higher else "↓"


def wins_ties_losses(per_task: dict[str, tuple[TaskStats, bool]], methods: list[str]) -> pd.DataFrame:
    """Methods x methods: for the row method against the column method, the tasks where it is
    significantly better (wins), not significantly different (ties) and significantly worse
    (losses), as ``"w/t/l"``; pairs that could not be paired on a task do not count there."""
    table = pd.DataFrame("", index=methods, columns=methods)
    for a in methods:
        for b in methods:
            if a == b:
                table.loc[a, b] = "–"
                continue
            w = t = loss = 0
            for ts, higher in per_task.values():
                if a not in ts.scores or b not in ts.scores:
                    continue
                test = ts.test(a, b)
                if test is None:
                    continue
                if not test.significant:
                    t += 1
                elif (test.diff > 0) == higher:
                    w += 1
                else:
                    loss += 1
            table.loc[a, b] = f"{w}/{t}/{loss}"
    return table
