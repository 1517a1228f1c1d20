"""Statistics for comparisons: 95% intervals and paired tests on per-item results.

scipy does the statistics (``scipy.stats.bootstrap``, ``scipy.stats.binomtest``); this module
is the glue that pairs items and seeds. Scores come as a matrix of seeds x items (every seed of a
method evaluated on the same items, in the same order). A metric is either the mean of per-item
scores (accuracy: 1 for a correct item, 0 otherwise; ``metric=None``) or a function of whole
prediction and reference vectors (Matthews correlation, F1, Pearson), recomputed on every
resample; see :data:`RESAMPLED`.

- **Interval**: a percentile bootstrap over items (``scipy.stats.bootstrap``, paired over the
  vectors a metric needs); with several seeds, a two-stage bootstrap that resamples seeds, then
  items, so that the interval covers both sources of variation.
- **Paired test** of two methods on the same items (and seeds, matched by seed): McNemar's exact
  test (a binomial test on the discordant items) when both have one seed and 0/1 item scores;
  otherwise a paired bootstrap of the difference. Its two-sided p-value is the share of
  resampled differences, centred on the observed one, at least as far from it as the observed
  difference is from zero (the bootstrap's null distribution, Efron & Tibshirani 16.4).

Every resampling uses a fixed seed, so a report is reproducible to the digit. No correction for
multiple comparisons is applied; tables say so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
ALPHA = 0.05
N_RESAMPLES = 2000
"""Resamples per interval or test. The Monte Carlo error of a 95% percentile bound from 2,000
resamples is about 0.2 points at n=500 items, below the tables' one decimal of rounding noise."""
SEED = 0
_CHUNK = 250  # resamples evaluated at once by the two-stage bootstrap (bounds its memory)

Metric = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""A vectorized metric: (predictions, references) with items on the last axis -> one value per
leading index (percent, as the tasks report it)."""


# ---------------------------------------------------------------------------------------------
# Vectorized metrics, so that 2,000 resamples cost one array operation, not 2,000 library calls
# (sklearn's matthews_corrcoef takes ~5 ms per call here). tests/bench/test_stats.py checks each
# against the task's own sklearn/scipy metric on fixed vectors.
# ---------------------------------------------------------------------------------------------
def mean_metric(predictions: np.ndarray, references: np.ndarray) -> np.ndarray:
    """The mean of per-item scores (``predictions`` holds the scores; references unused)."""
    return np.mean(predictions, axis=-1)


def _counts(p: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, ...]:
    p, r = p == 1, r == 1
    return (p & r).sum(-1), (~p & ~r).sum(-1), (p & ~r).sum(-1), (~p & r).sum(-1)


def matthews_binary(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Binary Matthews correlation in percent; 0 when undefined (as sklearn)."""
    tp, tn, fp, fn = (c.astype(float) for c in _counts(p, r))
    denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100.0 * np.where(denom > 0, (tp * tn - fp * fn) / np.where(denom > 0, denom, 1.0), 0.0)


def f1_binary(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    """F1 of class 1 in percent; 0 when there is no true positive, false positive or negative."""
    tp, _, fp, fn = (c.astype(float) for c in _counts(p, r))
    denom = 2 * tp + fp + fn
    return 100.0 * np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1.0), 0.0)


def pearson(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Pearson correlation in percent; 0 when a side is constant (as the tasks report it)."""
    p, r = np.asarray(p, float), np.broadcast_to(np.asarray(r, float), np.shape(p))
    pc, rc = p - p.mean(-1, keepdims=True), r - r.mean(-1, keepdims=True)
    denom = np.sqrt((pc**2).sum(-1) * (rc**2).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(denom > 1e-300, (pc * rc).sum(-1) / np.where(denom > 1e-300, denom, 1.0), 0.0)
    return 100.0 * np.clip(value, -1.0, 1.0)


def spearman(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Spearman correlation in percent: Pearson of the tie-averaged ranks (as scipy)."""
    from scipy.stats import rankdata

    r = np.broadcast_to(np.asarray(r, float), np.shape(p))
    return pearson(rankdata(p, axis=-1), rankdata(r, axis=-1))


RESAMPLED: dict[str, Metric] = {
    "matthews_corr": matthews_binary,
    "f1": f1_binary,
    "pearson": pearson,
    "spearman": spearman,
}
"""Metrics that are not a mean of per-item scores, by the name tasks give them. A metric in
neither this table nor the per-item kind has no interval (the table says so)."""


ITEM_KEYS = {"accuracy": "correct", "accuracy_norm": "correct_norm", "exact_match": "correct"}
"""Metrics that are the percentage of correct items, and the record's per-item field for them."""


def per_item(metric: str, items: dict[str, list]) -> tuple[list[float] | None, list | None]:
    """A record's per-item data for ``metric``: (scores, None) for a percentage of correct items
    (each item 100 or 0), (predictions, references) for a :data:`RESAMPLED` metric, or
    (None, None) when the record has no per-item results for it."""
    key = ITEM_KEYS.get(metric)
    if key and isinstance(items.get(key), list):
        return [100.0 if c else 0.0 for c in items[key]], None
    if metric in RESAMPLED and isinstance(items.get("prediction"), list) and isinstance(items.get("reference"), list):
        return [float(p) for p in items["prediction"]], [float(r) for r in items["reference"]]
    return None, None


# ---------------------------------------------------------------------------------------------
# Intervals
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float


def _as_matrix(scores) -> np.ndarray:
    scores = np.asarray(scores, dtype=float)
    return scores[None, :] if scores.ndim == 1 else scores


def _percentiles(dist: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(dist, [100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2])
    return float(low), float(high)


def interval(
    scores,
    references=None,
    metric: Metric | None = None,
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> Interval:
    """The mean over seeds of the metric, and its 95% percentile-bootstrap interval.

    ``scores``: seeds x items (or items). Without ``metric`` they are per-item scores and the
    metric is their mean; with it, they are predictions, scored against ``references``.
    """
    scores = _as_matrix(scores)
    metric = metric or mean_metric
    refs = np.zeros(scores.shape[1]) if references is None else np.asarray(references, dtype=float)
    point = float(np.mean(metric(scores, refs)))
    if scores.shape[1] < 2:
        return Interval(point, float("nan"), float("nan"))
    if scores.shape[0] > 1:
        return Interval(point, *_percentiles(two_stage(scores, refs, metric, n_resamples, seed)))
    from scipy import stats

    data = (scores[0],) if metric is mean_metric else (scores[0], refs)
    res = stats.bootstrap(
        data,
        lambda *cols, axis=-1: metric(*cols) if len(cols) == 2 else metric(cols[0], None),
        n_resamples=n_resamples,
        vectorized=True,
        paired=True,
        confidence_level=CONFIDENCE,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return Interval(point, float(res.confidence_interval.low), float(res.confidence_interval.high))


def two_stage(scores: np.ndarray, refs: np.ndarray, metric: Metric, n_resamples: int, seed: int) -> np.ndarray:
    """Bootstrap distribution of the seed-mean metric: resample seeds, then items (the same items
    for every drawn seed, as they are the same items)."""
    rng = np.random.default_rng(seed)
    n_seeds, n_items = scores.shape
    out = np.empty(n_resamples)
    for start in range(0, n_resamples, _CHUNK):
        b = min(_CHUNK, n_resamples - start)
        seeds = rng.integers(0, n_seeds, (b, n_seeds))
        items = rng.integers(0, n_items, (b, n_items))
        drawn = scores[seeds[:, :, None], items[:, None, :]]  # b x seeds x items
        out[start : start + b] = metric(drawn, refs[items][:, None, :]).mean(axis=-1)
    return out


def average_interval(
    parts: Sequence[tuple[np.ndarray, np.ndarray | None, Metric | None]], seed: int = SEED
) -> Interval:
    """The mean of several tasks' scores (a suite average) and its interval: each task's seeds
    and items are resampled independently, and the resampled task scores are averaged."""
    points, dists = [], []
    for i, (scores, refs, metric) in enumerate(parts):
        scores = _as_matrix(scores)
        metric = metric or mean_metric
        refs = np.zeros(scores.shape[1]) if refs is None else np.asarray(refs, dtype=float)
        points.append(float(np.mean(metric(scores, refs))))
        dists.append(two_stage(scores, refs, metric, N_RESAMPLES, seed + 1 + i))
    return Interval(float(np.mean(points)), *_percentiles(np.mean(dists, axis=0)))


# ---------------------------------------------------------------------------------------------
# Paired tests
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """A paired test of ``a`` against ``b``: ``diff`` is a's score minus b's."""

    diff: float
    p_value: float
    test: str
    """``mcnemar`` or ``paired-bootstrap``."""

    @property
    def significant(self) -> bool:
        return self.p_value < ALPHA


def mcnemar(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> float:
    """McNemar's exact test: two-sided binomial p-value of the discordant items (1.0 if none)."""
    from scipy import stats

    a, b = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    if only_a + only_b == 0:
        return 1.0
    return float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)


def paired_bootstrap(
    a, b, references=None, metric: Metric | None = None, *, n_resamples: int = N_RESAMPLES, seed: int = SEED
) -> tuple[float, float]:
    """(a - b, two-sided p-value) by a paired bootstrap over items (``scipy.stats.bootstrap``).

    ``a``, ``b``: seeds x items, seeds matched by position; each resample draws one set of items
    for both, and the metric is averaged over seeds.
    """
    from scipy import stats

    a, b = _as_matrix(a), _as_matrix(b)
    metric = metric or mean_metric
    refs = np.zeros(a.shape[1]) if references is None else np.asarray(references, dtype=float)
    n = a.shape[0]

    def diff(*cols, axis=-1):  # cols: a's seeds, b's seeds, the references; items on the last axis
        stacked = np.stack(cols[:-1])  # 2n x ... x items
        r = cols[-1]
        return metric(stacked[:n], r).mean(axis=0) - metric(stacked[n:], r).mean(axis=0)

    observed = float(diff(*a, *b, refs))
    if a.shape[1] < 2:
        return observed, 1.0
    res = stats.bootstrap(
        (*a, *b, refs),
        diff,
        n_resamples=n_resamples,
        vectorized=True,
        paired=True,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    dist = np.asarray(res.bootstrap_distribution)
    extreme = int(np.sum(np.abs(dist - observed) >= abs(observed) - 1e-12))
    return observed, min(1.0, (1 + extreme) / (1 + n_resamples))


def compare(a, b, references=None, metric: Metric | None = None, *, binary: bool = False) -> Comparison:
    """Paired test of ``a`` against ``b`` (seeds x items each, same items, seeds matched).

    ``binary``: per-item 0/1 scores whose mean is the metric: with one seed each, McNemar's
    exact test; otherwise (or for another metric) a paired bootstrap.
    """
    a, b = _as_matrix(a), _as_matrix(b)
    if a.shape != b.shape:
        raise ValueError(f"a paired test needs the same seeds and items; got {a.shape} and {b.shape}")
    if binary and metric is None and a.shape[0] == 1:
        return Comparison(float(np.mean(a) - np.mean(b)), mcnemar(a[0] > 0.5, b[0] > 0.5), "mcnemar")
    diff, p = paired_bootstrap(a, b, references, metric)
    return Comparison(diff, p, "paired-bootstrap")
