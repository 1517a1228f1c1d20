"""The ``loreft`` protocol (the official NeuroAda/LoReFT scripts'): prompts, targets and answer
extraction, tabulated against the official code's rules."""

from __future__ import annotations

import pytest

import tasks
from bench.errors import UsageError
from tasks._base import ALPACA_PROMPT
from tasks.protocols import after_trigger, first_letter, last_number, with_protocol

ROW = {"instruction": "Please answer ...\n\nAnswer format: true/false", "input": "", "output": "x", "answer": "true"}


@pytest.mark.parametrize(
    "response,expected",
    [
        ("the correct answer is true", "true"),
        ("the correct answer is  answer2 \n", "answer2"),
        ("the correct answer is answer1. because", "answer1. because"),  # exact match makes it wrong
        ("The correct answer is true", ""),  # case-sensitive trigger: no prediction
        ("true", ""),
        ("so the correct answer is option1 the correct answer is option2", "option1 the correct answer is option2"),
    ],
)
def test_after_trigger(response, expected):
    assert after_trigger(response) == expected


@pytest.mark.parametrize(
    "response,expected",
    [
        ("The answer is 1,234.", 1234.0),
        ("3 apples and -2.5 pears", -2.5),
        ("10-3", -3.0),  # the official regex reads "-3" here
        ("3/4", 4.0),  # no fractions
        ("no number", None),
        ("5.", 5.0),
    ],
)
def test_last_number(response, expected):
    assert last_number(response) == expected


@pytest.mark.parametrize(
    "response,expected",
    [("A train leaves ... the answer is (C)", "A"), ("  (D) 12", "D"), ("none here", ""), ("Bob", "B")],
)
def test_first_letter(response, expected):
    assert first_letter(response) == expected


def test_commonsense_prompt_target_and_scoring():
    task = with_protocol(tasks.get("boolq"), "loreft")
    assert task.to_train(ROW) == {"prompt": ROW["instruction"] + "\n", "target": "the correct answer is true"}
    assert task.to_eval(ROW) == {"prompt": ROW["instruction"] + "\n", "reference": "true"}
    assert task.max_new_tokens == 32 and task.protocol.startswith("loreft:")
    assert task.name == "boolq" and task.train_file == tasks.get("boolq").train_file
    preds = [task.extract(r) for r in ("the correct answer is true", "the correct answer is True", "true")]
    assert task.score(preds, ["true"] * 3) == {"accuracy": pytest.approx(100 / 3)}


def test_arithmetic_prompt_keeps_the_instruction_as_given():
    gsm8k = with_protocol(tasks.get("gsm8k"), "loreft")
    row = {"instruction": " Tom has 3 apples. ", "input": "", "output": "3 + 1 = 4", "answer": "4.0"}
    assert gsm8k.to_train(row) == {
        "prompt": ALPACA_PROMPT.format(instruction=" Tom has 3 apples. "),
        "target": "3 + 1 = 4",
    }
    assert gsm8k.to_eval(row)["reference"] == 4.0 and gsm8k.max_new_tokens == 512
    assert gsm8k.score([gsm8k.extract("so 4.0004"), gsm8k.extract("none")], [4.0, 4.0]) == {"accuracy": 50.0}
    aqua = with_protocol(tasks.get("aqua"), "loreft")
    assert aqua.extract("A car ... (B)") == "A" and aqua.protocol.endswith("exact match")


def test_harness_is_the_task_itself_and_unknown_ones_fail():
    boolq = tasks.get("boolq")
    assert with_protocol(boolq, "harness") is boolq
    with pytest.raises(UsageError, match="task 'glue_sst2' has no loreft protocol"):
        with_protocol(tasks.get("glue_sst2"), "loreft")
    with pytest.raises(UsageError, match="task 'gsm8k' has no loreft protocol"):
        with_protocol(tasks.per_task_train(tasks.get("gsm8k")), "loreft")
    with pytest.raises(UsageError, match="unknown protocol 'x'"):
        with_protocol(boolq, "x")


def test_loreft_commonsense_trains_on_the_mixture_rows(tmp_path):
    from pathlib import Path

    data = Path(__file__).resolve().parents[3] / "shared" / "data"
    task = with_protocol(tasks.get("piqa"), "loreft")
    rows = task.load("train", data)[:3]
    assert all(task.to_train(r)["target"] == "the correct answer is " + r["answer"] for r in rows)


def test_the_paper_training_mixtures_load_from_a_pinned_commit():
    """Users with network access get the full commonsense_170k and math_10k from LLM-Adapters at
    one commit (the hub is unreachable here; the offline path reads shared/data)."""
    import re

    for name in ("boolq", "gsm8k"):
        url = tasks.get(name).train_hub.data_files["train"]
        assert re.fullmatch(
            r"https://raw\.githubusercontent\.com/AGI-Edgerunners/LLM-Adapters/[0-9a-f]{40}/ft-training_set/"
            r"(commonsense_170k|math_10k)\.json",
            url,
        )
