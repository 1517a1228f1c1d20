"""Intervals and paired tests: equal to scipy's on fixed vectors, ties and real differences
told apart, and the vectorized metrics equal to the tasks' own (sklearn, scipy)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from bench import stats
from tasks import glue

RNG = np.random.default_rng(1234)
CORRECT = (RNG.random(500) < 0.8).astype(float)  # 500 items, about 80% right


def test_single_seed_interval_is_scipys_percentile_bootstrap():
    got = stats.interval(CORRECT)
    ref = sps.bootstrap(
        (CORRECT,),
        np.mean,
        n_resamples=stats.N_RESAMPLES,
        method="percentile",
        confidence_level=0.95,
        rng=np.random.default_rng(stats.SEED),
    ).confidence_interval
    assert got.mean == CORRECT.mean()
    assert (got.low, got.high) == pytest.approx((ref.low, ref.high), abs=1e-12)
    assert got.low < got.mean < got.high


def test_mcnemar_is_scipys_binomial_test_on_the_discordant_items():
    a = CORRECT.copy()
    b = CORRECT.copy()
    flip_down = np.flatnonzero(a == 1)[:9]
    flip_up = np.flatnonzero(a == 0)[:2]
    b[flip_down], b[flip_up] = 0, 1  # a alone right on 9 items, b alone right on 2
    assert stats.mcnemar(a > 0, b > 0) == pytest.approx(sps.binomtest(9, 11, 0.5).pvalue, abs=0)
    result = stats.compare(a, b, binary=True)
    assert result.test == "mcnemar" and result.p_value == pytest.approx(sps.binomtest(9, 11).pvalue)
    assert result.diff == pytest.approx(7 / 500)


def test_one_item_of_500_is_a_tie():
    b = CORRECT.copy()
    b[0] = 1 - b[0]
    result = stats.compare(CORRECT, b, binary=True)
    assert result.p_value == 1.0 and not result.significant


def test_fifteen_points_is_a_real_difference():
    b = CORRECT.copy()
    b[np.flatnonzero(b == 1)[:75]] = 0  # 75 of 500 items: 15 points
    result = stats.compare(CORRECT, b, binary=True)
    assert result.diff == pytest.approx(0.15)
    assert result.significant and result.p_value < 1e-10


def test_paired_bootstrap_with_seeds_tells_a_tie_from_a_difference():
    b = CORRECT.copy()
    b[0] = 1 - b[0]
    worse = CORRECT.copy()
    worse[np.flatnonzero(worse == 1)[:75]] = 0
    a3, b3, w3 = (np.stack([x, x, x]) for x in (CORRECT, b, worse))
    tie = stats.compare(a3, b3, binary=True)
    real = stats.compare(a3, w3, binary=True)
    assert tie.test == real.test == "paired-bootstrap"
    assert not tie.significant and real.significant
    assert real.p_value == pytest.approx(1 / (1 + stats.N_RESAMPLES))  # no resample reached zero


def test_paired_bootstrap_p_value_is_the_centred_share_of_scipys_distribution():
    a = (RNG.random(200) < 0.7).astype(float)
    b = (RNG.random(200) < 0.6).astype(float)
    diff, p = stats.paired_bootstrap(a, b)
    dist = sps.bootstrap(
        (a - b,), np.mean, n_resamples=stats.N_RESAMPLES, method="percentile", rng=np.random.default_rng(stats.SEED)
    ).bootstrap_distribution
    expected = (1 + np.sum(np.abs(dist - diff) >= abs(diff) - 1e-12)) / (1 + stats.N_RESAMPLES)
    assert diff == pytest.approx(a.mean() - b.mean())
    assert p == pytest.approx(expected)


def test_several_seeds_widen_the_interval_by_the_seed_spread():
    low_seed = CORRECT.copy()
    low_seed[np.flatnonzero(low_seed == 1)[:50]] = 0  # one seed 10 points lower
    one = stats.interval(np.stack([CORRECT, CORRECT, CORRECT]))
    spread = stats.interval(np.stack([CORRECT, CORRECT, low_seed]))
    assert one.mean == pytest.approx(CORRECT.mean())
    assert spread.mean == pytest.approx((2 * CORRECT.mean() + low_seed.mean()) / 3)
    assert (spread.high - spread.low) > (one.high - one.low)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (stats.matthews_binary, glue.matthews_corrcoef),
        (stats.f1_binary, glue.f1_binary),
    ],
)
def test_vectorized_classification_metrics_equal_the_tasks(ours, theirs):
    refs = (RNG.random(300) < 0.5).astype(int)
    preds = np.where(RNG.random(300) < 0.75, refs, 1 - refs)
    assert ours(preds, refs) == pytest.approx(100 * theirs(list(preds), list(refs)), abs=1e-9)
    assert ours(np.ones(300, int), refs) == 100 * theirs([1] * 300, list(refs))  # constant prediction
    rows = np.stack([preds, 1 - preds, refs])
    np.testing.assert_allclose(ours(rows, refs), [100 * theirs(list(r), list(refs)) for r in rows], atol=1e-9)


@pytest.mark.parametrize(("ours", "theirs"), [(stats.pearson, glue.pearson), (stats.spearman, glue.spearman)])
def test_vectorized_correlations_equal_the_tasks(ours, theirs):
    refs = np.round(RNG.random(100) * 5, 1)  # STS-B-like scores with ties
    preds = refs + RNG.normal(0, 1, 100)
    assert ours(preds, refs) == pytest.approx(100 * theirs(list(preds), list(refs)), abs=1e-9)
    assert ours(np.full(100, 2.0), refs) == 0.0  # undefined: reported 0, as the task does


def test_metric_interval_recomputes_the_metric_on_resamples():
    refs = (RNG.random(400) < 0.5).astype(int)
    preds = np.where(RNG.random(400) < 0.8, refs, 1 - refs)
    got = stats.interval(preds, refs, stats.matthews_binary)
    ref = sps.bootstrap(
        (preds, refs),
        lambda p, r: 100 * glue.matthews_corrcoef(list(p), list(r)),
        paired=True,
        vectorized=False,
        n_resamples=200,
        method="percentile",
        rng=np.random.default_rng(stats.SEED),
    ).confidence_interval
    fast = stats.interval(preds, refs, stats.matthews_binary, n_resamples=200)
    assert got.mean == pytest.approx(100 * glue.matthews_corrcoef(list(preds), list(refs)))
    assert (fast.low, fast.high) == pytest.approx((ref.low, ref.high), abs=1e-9)


def test_suite_average_interval_contains_the_average():
    other = (RNG.random(300) < 0.4).astype(float)
    avg = stats.average_interval([(CORRECT, None, None), (other, None, None)])
    assert avg.mean == pytest.approx((CORRECT.mean() + other.mean()) / 2)
    assert avg.low < avg.mean < avg.high


def test_unpaired_shapes_are_refused():
    with pytest.raises(ValueError, match="same seeds and items"):
        stats.compare(np.ones((1, 5)), np.ones((2, 5)))
