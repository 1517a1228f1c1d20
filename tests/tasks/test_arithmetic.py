"""The arithmetic suite (``tasks/arithmetic.py``): number and option-letter extraction
(tabulated cases with hand-computed values), references, hub converters, and the offline data
(those tests skip, with the reason, when the data folder is absent).
"""

from __future__ import annotations

import pytest

import tasks
from bench.errors import UsageError
from tasks import arithmetic

ARITHMETIC = ["multiarith", "gsm8k", "addsub", "aqua", "singleeq", "svamp", "mawps"]  # NeuroAda's columns


# math_10k rows (1-based lines of math_10k/train.jsonl) whose rationale contradicts the row's
# letter answer: the data is wrong, not the extractor (e.g. line 11 ends "The answer is 0% or
# option F." for answer C; line 197 ends "The correct answer is A) ..." for answer B).
MATH10K_BAD_REFERENCES = {11, 50, 197, 799, 897}


# ---------------------------------------------------------------------------------------------
# Numbers: the last number, commas removed, fractions read as fractions
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
# Training sources and hub converters
# ---------------------------------------------------------------------------------------------
def test_per_task_train_options():
    gsm = arithmetic.per_task_train(tasks.get("gsm8k"))
    assert (gsm.train_file, gsm.train_required_fields) == ("gsm8k/train_orig.jsonl", ("question", "answer"))
    assert gsm.train_hub.path == "openai/gsm8k"
    assert tasks.per_task_train(tasks.get("gsm8k")) == gsm
    with pytest.raises(UsageError, match="no per-task train file"):
        arithmetic.per_task_train(tasks.get("svamp"))


def test_per_task_train_rows_format(data_dir):
    task = arithmetic.per_task_train(tasks.get("gsm8k"))
    for row in task.load("train", data_dir):
        item = task.to_train(row)
        assert item["prompt"].endswith("### Response:\n")
        assert arithmetic.extract_number(item["target"]) == arithmetic.parse_reference(row["answer"])


def test_hub_converters_reproduce_local_rows(raw_rows):
    """Hub rows (GSM8K's, AQuA-RAT's) convert to the LLM-Adapters rows."""
    gsm = raw_rows("gsm8k/eval_orig.jsonl")[0]
    converted = arithmetic.gsm8k_to_llm_adapters(gsm)
    assert (converted["instruction"], converted["answer"]) == (gsm["question"], "18")
    assert tasks.get("gsm8k").to_eval(converted)["reference"] == 18.0

    aqua = raw_rows("aqua/eval.jsonl")[0]
    hub_aqua = {
        "question": aqua["instruction"].split(" Answer Choices: ")[0],
        "options": ["A)23.65", "B)1000", "C)35.62", "D)2.65", "E)1023.65"],
        "rationale": "...",
        "correct": "A",
    }
    assert arithmetic.aqua_to_llm_adapters(hub_aqua)["instruction"] == aqua["instruction"]


# ---------------------------------------------------------------------------------------------
# The offline data
# ---------------------------------------------------------------------------------------------
def test_math10k_outputs_extract_to_their_answer(raw_rows):
    bad = set()
    for i, row in enumerate(raw_rows("math_10k/train.jsonl"), 1):
        if row["answer"].strip() in ("A", "B", "C", "D", "E"):
            ok = arithmetic.extract_option_letter(row["output"]) == row["answer"].strip()
        else:
            ok = arithmetic.numbers_match(
                arithmetic.extract_number(row["output"]), arithmetic.parse_reference(row["answer"])
            )
        if not ok:
            bad.add(i)
    assert bad == MATH10K_BAD_REFERENCES


@pytest.mark.parametrize("name", ARITHMETIC)
def test_arithmetic_references_are_extractable(name, data_dir):
    """The eval rows' ``output`` is a model-written rationale, not a reference (MAWPS has none),
    so check instead that every reference survives the extractor in a typical answer sentence."""
    task = tasks.get(name)
    for i, row in enumerate(task.load("eval", data_dir), 1):
        reference = task.to_eval(row)["reference"]
        if name == "aqua":
            assert task.extract(f"The answer is ({reference}).") == reference, f"line {i}"
        else:
            answer = row["answer"]
            assert arithmetic.numbers_match(task.extract(f"The answer is {answer}."), reference), f"line {i}"
            assert arithmetic.numbers_match(task.extract(f"So it is {reference:,}"), reference), f"line {i}"


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
def test_non_empty_input_is_refused():
    row = {"instruction": "2+2?", "input": "context", "output": "4", "answer": "4"}
    with pytest.raises(UsageError, match="non-empty 'input'"):
        tasks.get("gsm8k").to_eval(row)
