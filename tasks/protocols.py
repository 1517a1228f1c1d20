"""Scoring protocols other than a task's own: ``loreft``, the official NeuroAda scripts' (LoReFT's).

``Budget.protocol`` names one; :func:`with_protocol` returns the task with that protocol's
prompt, target, extraction and decoding length (``harness`` returns it unchanged). The task keeps
its name and data; its ``protocol`` text, recorded with every result, says which was used.

``loreft`` (FightingFighting/NeuroAda@0ed987c4 ``task_config.py``, ``dataset.py``,
``compute_metrics.py``, taken from stanfordnlp/pyreft's LoReFT example):

- **commonsense**: prompt = the instruction plus a newline (``"%s\\n"``; no Alpaca template);
  training target = ``"the correct answer is " + answer``; greedy, 32 new tokens; the prediction
  is the text after the first ``"the correct answer is "`` (stripped; none: empty), correct when
  it equals the stripped answer exactly (case-sensitive, so "Answer1" or "answer1." are wrong).
- **arithmetic**: the Alpaca prompt on the instruction as given (not stripped), target = the
  row's rationale, greedy, 512 new tokens; numbers: commas removed, the last match of
  ``-?\\d+\\.?\\d*`` (none: wrong), within 1e-3 of the answer; AQuA: the first of A-E anywhere in
  the response (LLM-Adapters' rule, which reads the article "A" as an answer).
"""

from __future__ import annotations

import dataclasses
import re

from bench.errors import UsageError
from tasks._base import ALPACA_PROMPT, TaskConfig, accuracy
from tasks.arithmetic import numeric_accuracy, parse_reference

TRIGGER = "the correct answer is "
"""LoReFT's commonsense trigger: training targets start with it, predictions are read after it."""
COMMONSENSE_NEW_TOKENS = 32
MATH_NEW_TOKENS = 512  # task_config.py's math generation_args (LLM-Adapters used 256)
_MATH_NUMBER = re.compile(r"-?\d+\.?\d*")


# ---------------------------------------------------------------------------------------------
# Extraction (pure)
# ---------------------------------------------------------------------------------------------
def after_trigger(response: str) -> str:
    """The text after the first :data:`TRIGGER`, stripped; empty when the trigger is missing."""
    start = response.find(TRIGGER)
    return "" if start < 0 else response[start + len(TRIGGER) :].strip()


def last_number(response: str) -> float | None:
    """LoReFT's ``extract_answer_number``: commas removed, the last ``-?\\d+\\.?\\d*``; None if none."""
    found = _MATH_NUMBER.findall(response.replace(",", ""))
    return float(found[-1]) if found else None


def first_letter(response: str) -> str:
    """LoReFT's ``extract_answer_letter``: the first A-E anywhere in the response, else empty."""
    found = re.findall(r"A|B|C|D|E", response.strip())
    return found[0] if found else ""


# ---------------------------------------------------------------------------------------------
# Formats
# ---------------------------------------------------------------------------------------------
def _instruction(row: dict) -> str:
    if row.get("input"):
        raise UsageError(f"row has a non-empty 'input' ({row['input'][:60]!r}); these tasks use the instruction only")
    return row["instruction"]


def commonsense_train(row: dict) -> dict:
    return {"prompt": _instruction(row) + "\n", "target": TRIGGER + row["answer"]}


def commonsense_eval(row: dict) -> dict:
    return {"prompt": _instruction(row) + "\n", "reference": row["answer"].strip()}


def math_train(row: dict) -> dict:
    return {"prompt": ALPACA_PROMPT.format(instruction=_instruction(row)), "target": row["output"]}


def math_numeric_eval(row: dict) -> dict:
    return {"prompt": ALPACA_PROMPT.format(instruction=_instruction(row)), "reference": parse_reference(row["answer"])}


def math_letter_eval(row: dict) -> dict:
    return {"prompt": ALPACA_PROMPT.format(instruction=_instruction(row)), "reference": row["answer"].strip()}


_COMMONSENSE = (
    "loreft: prompt = instruction + newline, target 'the correct answer is X', greedy, max_new_tokens=32; "
    "exact match of the stripped text after 'the correct answer is '"
)
_NUMERIC = (
    "loreft: alpaca prompt, greedy, max_new_tokens=512; commas removed, last -?\\d+\\.?\\d* of the "
    "response, correct when |pred - answer| <= 1e-3"
)
_LETTER = "loreft: alpaca prompt, greedy, max_new_tokens=512; the first of A-E in the response; exact match"


def with_protocol(task: TaskConfig, protocol: str) -> TaskConfig:
    """``task`` under ``protocol`` (``harness``: unchanged; ``loreft``: see the module docstring)."""
    if protocol == "harness":
        return task
    if protocol != "loreft":
        raise UsageError(f"unknown protocol '{protocol}'; use harness or loreft")
    if task.suite == "commonsense":
        return dataclasses.replace(
            task,
            to_train=commonsense_train,
            to_eval=commonsense_eval,
            extract=after_trigger,
            score=accuracy,
            train_required_fields=("instruction", "answer"),
            max_new_tokens=COMMONSENSE_NEW_TOKENS,
            protocol=_COMMONSENSE,
        )
    if task.suite == "arithmetic" and task.train_file == "math_10k/train.jsonl":
        letter = task.score is accuracy  # AQuA: option letters, scored by exact match
        return dataclasses.replace(
            task,
            to_train=math_train,
            to_eval=math_letter_eval if letter else math_numeric_eval,
            extract=first_letter if letter else last_number,
            score=accuracy if letter else numeric_accuracy,
            max_new_tokens=MATH_NEW_TOKENS,
            protocol=_LETTER if letter else _NUMERIC,
        )
    raise UsageError(
        f"task '{task.name}' has no loreft protocol (the official scripts cover the commonsense suite and "
        "the arithmetic suite trained on math_10k); use --protocol harness"
    )
