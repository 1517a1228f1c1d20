"""GLUE metrics (sklearn, scipy) against hand-computed values, and the percent scores per task."""

from __future__ import annotations

import math
import warnings

import pytest

import tasks
from tasks import glue

# TP = 2 (items 0, 4), FP = 1 (item 1), TN = 2 (items 2, 3), FN = 1 (item 5).
BIN_PRED = [1, 1, 0, 0, 1, 0]
BIN_REF = [1, 0, 0, 0, 1, 1]
EXACT = 1e-12  # hand-computed values; only float rounding differs


@pytest.fixture(autouse=True)
def _no_warnings():
    # Undefined correlations must come back as 0.0 without scipy's ConstantInputWarning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_matthews_binary():
    # (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (4 - 1) / sqrt(3^4) = 1/3
    assert glue.matthews_corrcoef(BIN_PRED, BIN_REF) == pytest.approx(1 / 3, abs=EXACT)
    assert glue.matthews_corrcoef(BIN_REF, BIN_REF) == pytest.approx(1.0, abs=EXACT)
    assert glue.matthews_corrcoef([1 - r for r in BIN_REF], BIN_REF) == pytest.approx(-1.0, abs=EXACT)


def test_matthews_undefined_is_zero():
    assert glue.matthews_corrcoef([1] * 6, BIN_REF) == 0.0  # constant prediction
    assert glue.matthews_corrcoef(BIN_PRED, [0] * 6) == 0.0  # constant reference
    assert glue.matthews_corrcoef([], []) == 0.0


def test_matthews_multiclass():
    # n=4, 3 correct; prediction counts {0:2, 2:2}, reference counts {0:2, 1:1, 2:1}:
    # (3*4 - (2*2 + 0*1 + 2*1)) / sqrt((16 - 8) * (16 - 6)) = 6 / sqrt(80)
    assert glue.matthews_corrcoef([0, 2, 2, 0], [0, 1, 2, 0]) == pytest.approx(6 / math.sqrt(80), abs=EXACT)


def test_f1_binary():
    assert glue.f1_binary(BIN_PRED, BIN_REF) == pytest.approx(4 / 6, abs=EXACT)  # 2TP / (2TP + FP + FN)
    assert glue.f1_binary([1, 0], [1, 0]) == 1.0
    assert glue.f1_binary([0, 1, 1, 1], [0, 0, 0, 1]) == pytest.approx(2 / 4, abs=EXACT)  # TP 1, FP 2, FN 0
    assert glue.f1_binary([1, 1, 0], [0, 1, 1], positive=0) == 0.0  # TP 0, FP 1, FN 1


def test_f1_without_the_positive_class_is_zero():
    assert glue.f1_binary([0, 0], [0, 0]) == 0.0
    assert glue.f1_binary([0, 2], [0, 0]) == 0.0
    assert glue.f1_binary([], []) == 0.0


def test_pearson():
    assert glue.pearson([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(1.0, abs=EXACT)
    assert glue.pearson([1, 2, 3, 4], [8, 6, 4, 2]) == pytest.approx(-1.0, abs=EXACT)
    # means 2 and 2: sxy = 1, sxx = syy = 2 -> 0.5
    assert glue.pearson([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5, abs=EXACT)


def test_pearson_undefined_is_zero():
    assert glue.pearson([1, 1, 1], [1, 2, 3]) == 0.0  # constant side
    assert glue.pearson([1, 2, 3], [4, 4, 4]) == 0.0
    assert glue.pearson([1.0], [2.0]) == 0.0  # a single item
    assert glue.pearson([], []) == 0.0
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        glue.pearson([1, 2], [1])


def test_spearman_with_ties():
    # ranks [1, 2.5, 2.5, 4] vs [1, 2, 3, 4]: sxy = 4.5, sxx = 4.5, syy = 5 -> 4.5 / sqrt(22.5)
    assert glue.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(22.5), abs=EXACT)
    assert glue.spearman([1, 2, 3, 4], [1, 4, 9, 16]) == pytest.approx(1.0, abs=EXACT)  # monotone
    assert glue.spearman([1, 2, 3, 4], [16, 9, 4, 1]) == pytest.approx(-1.0, abs=EXACT)
    assert glue.spearman([2, 2, 2], [1, 2, 3]) == 0.0  # constant side: undefined
    with pytest.raises(ValueError, match="3 predictions but 2 references"):
        glue.spearman([1, 2, 3], [1, 2])


def test_glue_scores_are_percent():
    assert tasks.get("glue_cola").score(BIN_PRED, BIN_REF) == pytest.approx(
        {"matthews_corr": 100 / 3, "accuracy": 100 * 4 / 6}
    )
    assert tasks.get("glue_mrpc").score(BIN_PRED, BIN_REF) == pytest.approx(
        {"f1": 100 * 4 / 6, "accuracy": 100 * 4 / 6}
    )
    assert tasks.get("glue_qqp").score(BIN_PRED, BIN_REF) == tasks.get("glue_mrpc").score(BIN_PRED, BIN_REF)
    assert tasks.get("glue_sst2").score([1, 0, 1, 1], [1, 0, 0, 1]) == {"accuracy": 75.0}
    assert tasks.get("glue_mnli").score([0, 1, 2], [0, 1, 1]) == pytest.approx({"accuracy": 200 / 3})
    assert tasks.get("glue_stsb").score([1.0, 2.0, 3.0], [1.0, 3.0, 2.0]) == pytest.approx(
        {"pearson": 50.0, "spearman": 50.0}
    )
    assert tasks.get("glue_stsb").score([3.0, 3.0], [1.0, 2.0]) == {"pearson": 0.0, "spearman": 0.0}


@pytest.mark.parametrize(
    ("name", "row", "item"),
    [
        ("glue_cola", {"sentence": "It rains.", "label": 1}, {"text": "It rains.", "text_pair": None, "label": 1}),
        (
            "glue_mnli",
            {"premise": "A dog runs.", "hypothesis": "An animal moves.", "label": 0},
            {"text": "A dog runs.", "text_pair": "An animal moves.", "label": 0},
        ),
        (
            "glue_stsb",
            {"sentence1": "a", "sentence2": "b", "label": 3},
            {"text": "a", "text_pair": "b", "label": 3.0},  # regression: a float label
        ),
    ],
)
def test_items(name, row, item):
    task = tasks.get(name)
    assert task.to_train(row) == item and task.to_eval(row) == item
    assert type(task.to_eval(row)["label"]) is type(item["label"])
    assert task.display_name == glue.DISPLAY_NAMES[name.removeprefix("glue_")]
