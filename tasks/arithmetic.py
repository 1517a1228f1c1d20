"""Arithmetic reasoning: the seven math word-problem tasks of LLM-Adapters, LoReFT and NeuroAda.

Suite ``arithmetic`` (NeuroAda's column order): multiarith, gsm8k, addsub, aqua, singleeq, svamp,
mawps.

- **Training** follows the papers: math_10k (``math_10k/train.jsonl``; LLM-Adapters'
  ``ft-training_set/math_10k.json`` from the hub), the Alpaca prompt on ``instruction``, target
  = ``output`` (a rationale ending in the answer). GSM8K can instead train on its own train
  split (``gsm8k/train_orig.jsonl``, ``question``/``answer`` with ``#### N``): see
  :data:`PER_TASK_TRAIN` and :func:`per_task_train`.
- **Evaluation** ("generate-greedy"): LLM-Adapters' test files (``instruction``/``input``/
  ``output``/``answer``; their ``output`` is a model-written rationale, not a reference, and
  MAWPS has none), Alpaca prompt, greedy, 256 new tokens (LLM-Adapters). Numbers: commas
  removed, the last number of the response (``a/b`` read as a fraction), correct when within
  1e-3 of ``answer``. AQuA: the option letter of the first explicit statement ("the answer is
  (C)", "Answer: C", "correct option is C"), else the last standalone letter A-E; not
  LLM-Adapters' "first capital A-E anywhere", which reads the article "A" as an answer.
- **Contamination**: math_10k was built from the train problems of GSM8K, AQuA and MAWPS, and
  AddSub, MultiArith and SingleEq are parts of MAWPS; their test problems occur verbatim in
  math_10k. Exact-instruction overlap of the local 1,000-row math_10k sample with the local eval
  files: addsub 51/300, multiarith 44/300, singleeq 51/300, mawps 18/238; gsm8k, svamp and
  aqua 0. Those four tasks carry ``contaminated_by=("math_10k/train.jsonl",)``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from typing import Any

from bench.errors import UsageError
from bench.registry import TASKS as REGISTRY
from tasks._base import HubSource, TaskConfig, accuracy, alpaca_prompt

VERSION = 1
MODEL = "smollm2-135m"
MAX_NEW_TOKENS = 256  # LLM-Adapters' math evaluation; rationales run to a few hundred tokens
TOLERANCE = 1e-3  # LLM-Adapters: |prediction - answer| <= 0.001
MATH_TRAIN = "math_10k/train.jsonl"
GSM8K_ORIG_TRAIN = "gsm8k/train_orig.jsonl"
PER_TASK_TRAIN = {"gsm8k": GSM8K_ORIG_TRAIN}
"""Tasks with their own train file, an alternative to math_10k (see :func:`per_task_train`)."""

# LLM-Adapters' files, pinned to the commit our local data was copied from.
_LLM_ADAPTERS = (
    "https://raw.githubusercontent.com/AGI-Edgerunners/LLM-Adapters/816657208af4db747803f87ba40a4c71383fed7a"
)
MATH_HUB = HubSource(
    "json", train_split="train", data_files={"train": f"{_LLM_ADAPTERS}/ft-training_set/math_10k.json"}
)


# ---------------------------------------------------------------------------------------------
# Answer extraction (pure)
# ---------------------------------------------------------------------------------------------
# A number not glued to a preceding digit or point (so "10-3" yields 10 and 3, not -3), with an
# optional decimal part and an optional "/denominator".
_NUMBER = re.compile(r"(?<![\d.])-?(?:\d+(?:\.\d+)?|\.\d+)(?:/\d+(?:\.\d+)?)?")


def _to_float(token: str) -> float | None:
    if "/" in token:
        numerator, denominator = token.split("/")
        return float(numerator) / float(denominator) if float(denominator) != 0 else None
    return float(token)


def extract_number(response: str) -> float | None:
    """The last number in ``response``, commas removed; ``3/4`` is 0.75; ``None`` if none."""
    text = response.replace(",", "").replace("\u2212", "-")  # U+2212 is the typographic minus
    matches = _NUMBER.findall(text)
    return _to_float(matches[-1]) if matches else None


def parse_reference(answer: Any) -> float:
    """A reference answer as a float: ``"576.0"``, ``"1,234"``, ``-15`` or a GSM8K ``"... #### 72"``."""
    text = str(answer).split("####")[-1].strip().replace(",", "")
    try:
        return float(text)
    except ValueError:
        value = extract_number(text)
        if value is None:
            raise UsageError(f"reference answer {answer!r} is not a number") from None
        return value


def numbers_match(prediction: float | None, reference: float, tolerance: float = TOLERANCE) -> bool:
    return prediction is not None and math.isfinite(prediction) and abs(prediction - reference) <= tolerance


def numeric_accuracy(predictions: Sequence[float | None], references: Sequence[float]) -> dict[str, float]:
    """Percent of predictions within :data:`TOLERANCE` of the reference; ``None`` is wrong."""
    if not references:
        return {"accuracy": 0.0}
    hits = sum(numbers_match(p, r) for p, r in zip(predictions, references, strict=True))
    return {"accuracy": 100.0 * hits / len(references)}


_LETTER = r"[\(\[]?(?P<letter>[A-E])(?![A-Za-z0-9])"
# "the answer is (C)", "answer: C", "the answer is option C", "the correct option is C", ...
_STATEMENT = re.compile(
    r"(?i:answer|correct\s+option|correct\s+choice)(?:\s+(?i:choice|option))?"
    r"(?:\s+(?i:is|would\s+be|should\s+be|will\s+be))?\s*[:=]?\s*(?:(?i:option|choice)\s*)?" + _LETTER
)
_STANDALONE = re.compile(r"(?<![A-Za-z0-9'])" + _LETTER)


def extract_option_letter(response: str) -> str | None:
    """AQuA's option letter: the first explicit answer statement, else the last standalone A-E.

    The article "A" (as in "A train leaves ...") is not an option letter.
    """
    statement = _STATEMENT.search(response)
    if statement:
        return statement["letter"]
    letters = []
    for match in _STANDALONE.finditer(response):
        bracketed = match.group(0).startswith(("(", "[")) or response[match.end() : match.end() + 1] in (")", "]")
        is_article = match["letter"] == "A" and not bracketed and re.match(r"\s+[a-z]", response[match.end() :])
        if not is_article:
            letters.append(match["letter"])
    return letters[-1] if letters else None


# ---------------------------------------------------------------------------------------------
# Formats
# ---------------------------------------------------------------------------------------------
def _instruction(row: dict) -> str:
    if row.get("input"):
        raise UsageError(f"row has a non-empty 'input' ({row['input'][:60]!r}); these tasks use the instruction only")
    return row["instruction"]


def gsm8k_rationale(answer: str) -> str:
    """A GSM8K train answer as a target: calculator marks ``<<...>>`` dropped and the final
    ``#### N`` turned into "The answer is N." (the form math_10k's rationales end with)."""
    body, _, final = answer.rpartition("####")
    body = re.sub(r"<<[^>]*>>", "", body).strip()
    return f"{body}\nThe answer is {final.strip()}."


def to_train(row: dict) -> dict:
    """math_10k / LLM-Adapters rows (instruction, output) or GSM8K's own rows (question, answer)."""
    if "instruction" in row:
        return {"prompt": alpaca_prompt(_instruction(row)), "target": row["output"]}
    return {"prompt": alpaca_prompt(row["question"]), "target": gsm8k_rationale(row["answer"])}


def numeric_to_eval(row: dict) -> dict:
    return {"prompt": alpaca_prompt(_instruction(row)), "reference": parse_reference(row["answer"])}


def letter_to_eval(row: dict) -> dict:
    return {"prompt": alpaca_prompt(_instruction(row)), "reference": row["answer"].strip()}


# Hub rows -> LLM-Adapters rows.
def gsm8k_to_llm_adapters(row: dict) -> dict:
    """``openai/gsm8k`` main (question, answer with ``#### N``)."""
    final = row["answer"].split("####")[-1].strip().replace(",", "")
    return {"instruction": row["question"], "input": "", "output": gsm8k_rationale(row["answer"]), "answer": final}


def aqua_to_llm_adapters(row: dict) -> dict:
    """``deepmind/aqua_rat`` raw (question, options ``["A)21", ...]``, rationale, correct)."""
    options = " ".join(re.sub(r"^\s*([A-E])\)\s*", r"(\1) ", o) for o in row["options"])
    return {
        "instruction": f"{row['question']} Answer Choices: {options}",
        "input": "",
        "output": row["rationale"],
        "answer": row["correct"].strip(),
    }


def _llm_adapters_test(folder: str) -> HubSource:
    return HubSource("json", eval_split="test", data_files={"test": f"{_LLM_ADAPTERS}/dataset/{folder}/test.json"})


# ---------------------------------------------------------------------------------------------
# Task configs
# ---------------------------------------------------------------------------------------------
_NUMERIC_PROTOCOL = (
    "generate-greedy: alpaca prompt (as in training), greedy, max_new_tokens=256; commas removed, "
    "last number of the response (a/b read as a fraction), correct when |pred - answer| <= 1e-3"
)
_LETTER_PROTOCOL = (
    "generate-greedy: alpaca prompt (as in training), greedy, max_new_tokens=256; option letter = "
    "first explicit statement ('answer is (X)', 'answer: X', 'correct option is X'), else the last "
    "standalone A-E (not the article 'A'); exact match"
)
_CONTAMINATED = (MATH_TRAIN,)
DISPLAY_NAMES = {
    "gsm8k": "GSM8K",
    "svamp": "SVAMP",
    "aqua": "AQuA",
    "mawps": "MAWPS",
    "addsub": "AddSub",
    "multiarith": "MultiArith",
    "singleeq": "SingleEq",
}
"""Table labels (the papers' spelling)."""


def _task(name: str, hub: HubSource, description: str, *, letter: bool = False, contaminated: bool = False):
    return TaskConfig(
        name=name,
        suite="arithmetic",
        kind="generate",
        version=VERSION,
        metrics=("accuracy",),
        to_train=to_train,
        to_eval=letter_to_eval if letter else numeric_to_eval,
        score=accuracy if letter else numeric_accuracy,
        default_model=MODEL,
        eval_file=f"{name}/eval.jsonl",
        train_file=MATH_TRAIN,
        required_fields=("instruction", "answer"),
        train_required_fields=("instruction", "output"),
        hub=hub,
        train_hub=MATH_HUB,
        extract=extract_option_letter if letter else extract_number,
        protocol=_LETTER_PROTOCOL if letter else _NUMERIC_PROTOCOL,
        max_new_tokens=MAX_NEW_TOKENS,
        higher_is_better={"accuracy": True},
        description=description,
        display_name=DISPLAY_NAMES[name],
        contaminated_by=_CONTAMINATED if contaminated else (),
    )


def per_task_train(task: TaskConfig) -> TaskConfig:
    """``task`` trained on its own train split instead of math_10k (GSM8K only)."""
    if task.name != "gsm8k":
        raise UsageError(f"task '{task.name}' has no per-task train file; those that do: {', '.join(PER_TASK_TRAIN)}")
    return dataclasses.replace(
        task,
        train_file=GSM8K_ORIG_TRAIN,
        train_required_fields=("question", "answer"),
        train_hub=HubSource("openai/gsm8k", "main", train_split="train"),
    )


MULTIARITH = REGISTRY.register(
    _task(
        "multiarith",
        _llm_adapters_test("MultiArith"),
        "MultiArith multi-step word problems, numeric answer (in math_10k: contaminated)",
        contaminated=True,
    )
)
GSM8K = REGISTRY.register(
    _task(
        "gsm8k",
        HubSource("openai/gsm8k", "main", eval_split="test", convert=gsm8k_to_llm_adapters),
        "GSM8K grade-school math, numeric answer",
    )
)
ADDSUB = REGISTRY.register(
    _task(
        "addsub",
        _llm_adapters_test("AddSub"),
        "AddSub addition/subtraction word problems, numeric answer (in math_10k: contaminated)",
        contaminated=True,
    )
)
AQUA = REGISTRY.register(
    _task(
        "aqua",
        HubSource("deepmind/aqua_rat", "raw", eval_split="test", convert=aqua_to_llm_adapters),
        "AQuA-RAT algebra with five options, answered by letter A-E",
        letter=True,
    )
)
SINGLEEQ = REGISTRY.register(
    _task(
        "singleeq",
        _llm_adapters_test("SingleEq"),
        "SingleEq single-equation word problems, numeric answer (in math_10k: contaminated)",
        contaminated=True,
    )
)
SVAMP = REGISTRY.register(
    _task("svamp", _llm_adapters_test("SVAMP"), "SVAMP perturbed one-step word problems, numeric answer")
)
MAWPS = REGISTRY.register(
    _task(
        "mawps",
        _llm_adapters_test("mawps"),
        "MAWPS word problems, numeric answer (in math_10k: contaminated)",
        contaminated=True,
    )
)
TASKS = [MULTIARITH, GSM8K, ADDSUB, AQUA, SINGLEEQ, SVAMP, MAWPS]
