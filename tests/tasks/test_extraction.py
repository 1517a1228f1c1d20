"""Answer extraction and metrics: tabulated cases with hand-computed expected values."""

from __future__ import annotations

import math
import random

import pytest

import tasks
from bench.errors import UsageError
from tasks import arithmetic, commonsense, glue

# ---------------------------------------------------------------------------------------------
# Commonsense: the first whole word of the task's label set, case-insensitive
# ---------------------------------------------------------------------------------------------
COMMONSENSE_CASES = [
    # (task, response, expected)
    ("boolq", "the correct answer is true", "true"),
    ("boolq", "True", "true"),
    ("boolq", "FALSE.", "false"),
    ("boolq", "the correct answer is false, not true", "false"),  # the first one wins
    ("boolq", "that is untrue", None),  # whole words only
    ("boolq", "yes", None),
    ("boolq", "", None),
    ("piqa", "the correct answer is solution2", "solution2"),
    ("piqa", "Solution1", "solution1"),
    ("piqa", "solution12", None),
    ("piqa", "solution3", None),
    ("siqa", "the correct answer is answer3", "answer3"),
    ("siqa", "answer5", "answer5"),  # the shared answer1-5 set, as LLM-Adapters
    ("hellaswag", "the correct answer is ending4.", "ending4"),
    ("hellaswag", "ending5", None),
    ("winogrande", "Option2", "option2"),
    ("winogrande", "the first option", None),
    ("arc_easy", "the correct answer is answer1", "answer1"),
    ("arc_easy", "answer10", None),  # not answer1
    ("arc_easy", "answer10 or answer2", "answer2"),
    ("arc_challenge", "Answer4: Planetary gravity", "answer4"),
    ("arc_challenge", "answer format: answer1/answer2/answer3/answer4", "answer1"),  # an echoed format
    ("openbookqa", "answer_2", None),
    ("openbookqa", "the correct answer is\nanswer2", "answer2"),
]


@pytest.mark.parametrize(("task", "response", "expected"), COMMONSENSE_CASES)
def test_commonsense_extraction(task, response, expected):
    assert tasks.get(task).extract(response) == expected


def test_commonsense_label_sets():
    assert commonsense.LABELS["boolq"] == ("true", "false")
    assert commonsense.LABELS["arc_easy"] == ("answer1", "answer2", "answer3", "answer4", "answer5")
    assert commonsense.extract_label("Ending3", ("ending1", "ending3")) == "ending3"


# ---------------------------------------------------------------------------------------------
# Arithmetic: the last number, commas removed, fractions read as fractions
# ---------------------------------------------------------------------------------------------
NUMBER_CASES = [
    ("The answer is 1,234.", 1234.0),
    ("1,000,000", 1_000_000.0),
    ("The answer is 576.", 576.0),
    ("It costs $18.50 in total.", 18.5),
    ("The temperature is -12 degrees.", -12.0),
    ("\u22124", -4.0),  # typographic minus
    ("10-3", 3.0),  # a minus glued to a digit is subtraction, not a sign
    ("10 - 3 = 7", 7.0),
    ("3/4", 0.75),
    ("He ate 1/2 of the pie", 0.5),
    ("5/0", None),
    ("0.5 and then .25", 0.25),
    ("25%", 25.0),
    ("Step 1: 3 + 4 = 7. The answer is 7.", 7.0),
    ("The answer in Arabic numerals is:\n\n16", 16.0),
    ("12 apples and 3 pears", 3.0),
    ("no number here", None),
    ("", None),
]


@pytest.mark.parametrize(("response", "expected"), NUMBER_CASES)
def test_extract_number(response, expected):
    got = arithmetic.extract_number(response)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("name", ["gsm8k", "svamp", "mawps", "addsub", "multiarith", "singleeq"])
def test_numeric_tasks_use_extract_number(name):
    assert tasks.get(name).extract("a 1,234.5 b") == 1234.5


REFERENCE_CASES = [
    ("576.0", 576.0),
    ("1,234", 1234.0),
    ("-15.0", -15.0),
    ("1.8333333333333335", 1.8333333333333335),
    (8, 8.0),
    ("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72", 72.0),
    ("#### 1,200", 1200.0),
]


@pytest.mark.parametrize(("answer", "expected"), REFERENCE_CASES)
def test_parse_reference(answer, expected):
    assert arithmetic.parse_reference(answer) == expected


def test_parse_reference_rejects_text():
    with pytest.raises(UsageError, match="not a number"):
        arithmetic.parse_reference("C")


def test_numeric_accuracy():
    # 576.0004 is within 1e-3 of 576; None is wrong; 3.0 is 0.002 away from 3.002.
    predictions = [576.0004, None, 3.0, 0.75]
    references = [576.0, 1.0, 3.002, 0.75]
    assert arithmetic.numeric_accuracy(predictions, references) == {"accuracy": 50.0}
    assert arithmetic.numeric_accuracy([], []) == {"accuracy": 0.0}
    assert not arithmetic.numbers_match(float("nan"), 1.0)


# ---------------------------------------------------------------------------------------------
# AQuA: the first explicit answer statement, else the last standalone option letter
# ---------------------------------------------------------------------------------------------
LETTER_CASES = [
    ("The answer is (C).", "C"),
    ("Rationale: so 30 cm * (3/5) = 18 cm.The answer is (A).", "A"),
    ("Answer: B", "B"),
    ("answer: (E)", "E"),
    ("Therefore, the answer is A) 64.", "A"),
    ("Therefore, the answer is option C: 2390/60^2.", "C"),
    ("The correct option is E", "E"),
    ("The correct answer is D) if S4 = -7 then S1 = -2.", "D"),
    ("The answer is (C). Question: A train ... The answer is (A).", "C"),  # the first statement
    ("It is not A; the answer is E", "E"),  # a statement beats loose letters
    ("A train travels 60 km. So the answer is B", "B"),
    ("A train travels 60 km in one hour.", None),  # the article A is no option
    ("Between (A) and (D), the second: (D)", "D"),  # no statement: the last letter
    ("Options A) 12 and B) 15; B) fits.", "B"),
    ("D", "D"),
    ("(B)", "B"),
    ("The answer is Alice", None),
    ("The answer is 0% or option F.", None),  # F is no option
    ("The correct answer is 120.", None),
    ("Answer Choices: (A) 21 (B) 22", "B"),  # an echoed option list: its last letter
    ("the answer is c", None),  # option letters are capitals
    ("", None),
]


@pytest.mark.parametrize(("response", "expected"), LETTER_CASES)
def test_extract_option_letter(response, expected):
    assert arithmetic.extract_option_letter(response) == expected
    assert tasks.get("aqua").extract(response) == expected


def test_gsm8k_rationale_drops_calculator_marks():
    answer = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nSo 48+24 = <<48+24=72>>72.\n#### 72"
    target = arithmetic.gsm8k_rationale(answer)
    assert target == "Natalia sold 48/2 = 24 clips in May.\nSo 48+24 = 72.\nThe answer is 72."
    assert arithmetic.extract_number(target) == 72.0


# ---------------------------------------------------------------------------------------------
# GLUE metrics, against hand-computed values
# ---------------------------------------------------------------------------------------------
# TP = 2 (items 0, 4), FP = 1 (item 1), TN = 2 (items 2, 3), FN = 1 (item 5).
BIN_PRED = [1, 1, 0, 0, 1, 0]
BIN_REF = [1, 0, 0, 0, 1, 1]


def test_matthews_binary():
    # (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (4 - 1) / sqrt(3^4) = 1/3
    assert glue.matthews_corrcoef(BIN_PRED, BIN_REF) == pytest.approx(1 / 3, abs=1e-12)
    assert glue.matthews_corrcoef(BIN_REF, BIN_REF) == pytest.approx(1.0)
    assert glue.matthews_corrcoef([1 - r for r in BIN_REF], BIN_REF) == pytest.approx(-1.0)
    assert glue.matthews_corrcoef([1] * 6, BIN_REF) == 0.0  # constant prediction: undefined -> 0
    assert glue.matthews_corrcoef([], []) == 0.0


def test_matthews_multiclass():
    # n=4, 3 correct; prediction counts {0:2, 2:2}, reference counts {0:2, 1:1, 2:1}:
    # (3*4 - (2*2 + 0*1 + 2*1)) / sqrt((16 - 8) * (16 - 6)) = 6 / sqrt(80)
    assert glue.matthews_corrcoef([0, 2, 2, 0], [0, 1, 2, 0]) == pytest.approx(6 / math.sqrt(80), abs=1e-12)


def test_f1_binary():
    assert glue.f1_binary(BIN_PRED, BIN_REF) == pytest.approx(4 / 6)  # 2TP / (2TP + FP + FN)
    assert glue.f1_binary([0, 0], [0, 0]) == 0.0
    assert glue.f1_binary([1, 0], [1, 0]) == 1.0


def test_pearson():
    assert glue.pearson([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(1.0)
    assert glue.pearson([1, 2, 3, 4], [8, 6, 4, 2]) == pytest.approx(-1.0)
    # means 2 and 2: sxy = 1, sxx = syy = 2 -> 0.5
    assert glue.pearson([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert glue.pearson([1, 1, 1], [1, 2, 3]) == 0.0  # constant side: undefined -> 0
    with pytest.raises(ValueError):
        glue.pearson([1, 2], [1])


def test_rank_average_ties():
    assert glue.rank_average([10, 20, 20, 30]) == [1.0, 2.5, 2.5, 4.0]
    assert glue.rank_average([3, 1, 3, 3]) == [3.0, 1.0, 3.0, 3.0]
    assert glue.rank_average([]) == []


def test_spearman_with_ties():
    # ranks [1, 2.5, 2.5, 4] vs [1, 2, 3, 4]: sxy = 4.5, sxx = 4.5, syy = 5 -> 4.5 / sqrt(22.5)
    assert glue.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(22.5), abs=1e-12)
    assert glue.spearman([1, 2, 3, 4], [1, 4, 9, 16]) == pytest.approx(1.0)  # monotone


def test_correlations_agree_with_scipy():
    stats = pytest.importorskip("scipy.stats", reason="scipy is optional; the hand-computed cases above suffice")
    rng = random.Random(0)
    x = [rng.choice([0.0, 1.0, 2.5, 3.0, 5.0]) for _ in range(50)]  # many ties
    y = [v + rng.gauss(0, 1) for v in x]
    assert glue.pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
    assert glue.spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)


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
