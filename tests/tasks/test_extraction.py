"""Answer extraction and metrics: tabulated cases with hand-computed expected values."""

from __future__ import annotations

import pytest

import tasks
from bench.errors import UsageError
from tasks import arithmetic, commonsense

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
