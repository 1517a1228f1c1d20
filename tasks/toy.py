"""Tiny synthetic tasks generated in code (no files, no network) for tests and CI.

One task per kind, each small enough that a 2-layer random-init model learns something in a
few steps: ``toy_sum`` (generate), ``toy_mc`` (multiple choice), ``toy_cls`` (classify).
``--tasks all`` leaves this suite out; name it (``--tasks toy``) to run it.
"""

from __future__ import annotations

import random
import re

from bench.registry import TASKS
from tasks._base import Split, TaskConfig, accuracy

_SIZES = {"train": 64, "eval": 32}


def _rng(task: str, split: Split) -> random.Random:
    # Fixed per (task, split) so every run, method and seed sees the same rows.
    return random.Random(f"{task}/{split}")


def _sum_rows(split: Split) -> list[dict]:
    rng = _rng("toy_sum", split)
    rows = []
    for _ in range(_SIZES[split]):
        a, b = rng.randint(0, 4), rng.randint(0, 4)
        rows.append({"question": f"{a}+{b}=", "answer": str(a + b)})
    return rows


def extract_first_integer(response: str) -> str | None:
    match = re.search(r"-?\d+", response)
    return match.group(0) if match else None


def _mc_rows(split: Split) -> list[dict]:
    rng = _rng("toy_mc", split)
    letters = "abcdefghijklmnopqrstuvwxy"
    rows = []
    for _ in range(_SIZES[split]):
        i = rng.randrange(len(letters))
        right = chr(ord(letters[i]) + 1)
        wrong = rng.sample([c for c in "abcdefghijklmnopqrstuvwxyz" if c != right], 2)
        choices = [right, *wrong]
        rng.shuffle(choices)
        rows.append({"letter": letters[i], "choices": choices, "gold": choices.index(right)})
    return rows


def _cls_rows(split: Split) -> list[dict]:
    rng = _rng("toy_cls", split)
    rows = []
    for _ in range(_SIZES[split]):
        n = rng.randint(3, 9)
        text = "".join(rng.choice("ab") for _ in range(n))
        rows.append({"sentence": text, "label": int(text.count("a") > text.count("b"))})
    return rows


TOY_SUM = TASKS.register(
    TaskConfig(
        name="toy_sum",
        display_name="toy_sum",
        suite="toy",
        kind="generate",
        version=1,
        metrics=("accuracy",),
        higher_is_better={"accuracy": True},
        generator=_sum_rows,
        to_train=lambda r: {"prompt": r["question"], "target": r["answer"]},
        to_eval=lambda r: {"prompt": r["question"], "reference": r["answer"]},
        extract=extract_first_integer,
        score=accuracy,
        default_model="tiny-llama",
        protocol="generate-greedy",
        max_new_tokens=3,
        description="single-digit sums, answered by greedy generation",
    )
)

TOY_MC = TASKS.register(
    TaskConfig(
        name="toy_mc",
        display_name="toy_mc",
        suite="toy",
        kind="multiple_choice",
        version=1,
        metrics=("accuracy",),
        higher_is_better={"accuracy": True},
        generator=_mc_rows,
        to_train=lambda r: {"prompt": f"after {r['letter']}:", "target": " " + r["choices"][r["gold"]]},
        to_eval=lambda r: {
            "context": f"after {r['letter']}:",
            "choices": [" " + c for c in r["choices"]],
            "gold": r["gold"],
        },
        score=accuracy,
        default_model="tiny-llama",
        protocol="loglik",
        description="the letter after a letter, scored by choice log-likelihood",
    )
)

TOY_CLS = TASKS.register(
    TaskConfig(
        name="toy_cls",
        display_name="toy_cls",
        suite="toy",
        kind="classify",
        version=1,
        metrics=("accuracy",),
        higher_is_better={"accuracy": True},
        generator=_cls_rows,
        to_train=lambda r: {"text": r["sentence"], "text_pair": None, "label": r["label"]},
        to_eval=lambda r: {"text": r["sentence"], "text_pair": None, "label": r["label"]},
        score=accuracy,
        default_model="tiny-bert",
        protocol="classify",
        num_labels=2,
        description="more a's than b's, sequence classification",
    )
)
