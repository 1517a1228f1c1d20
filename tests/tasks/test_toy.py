"""The toy suite (``tasks/toy.py``): rows generated in code, fixed per task and split, one task per
kind; golden first rows pin the generators (a change must bump the task's version)."""

from __future__ import annotations

import pytest

import tasks
from tasks import toy

SIZES = {"train": 64, "eval": 32}
FIRST_EVAL_ROWS = {
    "toy_sum": [{"question": "1+3=", "answer": "4"}, {"question": "3+0=", "answer": "3"}],
    "toy_mc": [
        {"letter": "e", "choices": ["f", "z", "m"], "gold": 0},
        {"letter": "g", "choices": ["c", "h", "l"], "gold": 1},
    ],
    "toy_cls": [{"sentence": "bbb", "label": 0}, {"sentence": "abbbb", "label": 0}],
}


def test_the_suite():
    assert [t.name for t in tasks.select("toy")] == ["toy_sum", "toy_mc", "toy_cls"]
    assert [t.kind for t in tasks.select("toy")] == ["generate", "multiple_choice", "classify"]
    assert "toy" in tasks.NOT_IN_ALL
    assert all(t.version == 1 and t.higher_is_better == {"accuracy": True} for t in tasks.select("toy"))


@pytest.mark.parametrize("name", FIRST_EVAL_ROWS)
def test_rows_are_fixed_per_task_and_split(name):
    task = tasks.get(name)
    for split, size in SIZES.items():
        rows = task.load(split, None)
        assert len(rows) == size
        assert rows == task.load(split, None)  # the same rows for every run, method and seed
    assert task.load("eval", None)[:2] == FIRST_EVAL_ROWS[name]
    assert task.load("train", None)[:2] != task.load("eval", None)[:2]


def test_sum_rows_are_correct_and_formatted():
    rows = toy.TOY_SUM.load("eval", None)
    assert all(int(r["question"][0]) + int(r["question"][2]) == int(r["answer"]) for r in rows)
    assert toy.TOY_SUM.to_train(rows[0]) == {"prompt": "1+3=", "target": "4"}
    assert toy.TOY_SUM.to_eval(rows[0]) == {"prompt": "1+3=", "reference": "4"}
    assert toy.TOY_SUM.score(["4", "2"], ["4", "3"]) == {"accuracy": 50.0}


@pytest.mark.parametrize(
    ("response", "expected"), [("4", "4"), (" 12 and 3", "12"), ("-3", "-3"), ("x=7.", "7"), ("none", None)]
)
def test_extract_first_integer(response, expected):
    assert toy.extract_first_integer(response) == expected
    assert toy.TOY_SUM.extract(response) == expected


def test_mc_rows_have_the_next_letter_as_gold():
    rows = toy.TOY_MC.load("train", None)
    assert all(r["choices"][r["gold"]] == chr(ord(r["letter"]) + 1) and len(set(r["choices"])) == 3 for r in rows)
    row = FIRST_EVAL_ROWS["toy_mc"][0]
    assert toy.TOY_MC.to_eval(row) == {"context": "after e:", "choices": [" f", " z", " m"], "gold": 0}
    assert toy.TOY_MC.to_train(row) == {"prompt": "after e:", "target": " f"}


def test_cls_label_is_more_as_than_bs():
    rows = toy.TOY_CLS.load("eval", None)
    assert all(r["label"] == int(r["sentence"].count("a") > r["sentence"].count("b")) for r in rows)
    assert sum(r["label"] for r in rows) == 14  # of 32: both classes occur
    assert toy.TOY_CLS.to_eval({"sentence": "aab", "label": 1}) == {"text": "aab", "text_pair": None, "label": 1}
    assert toy.TOY_CLS.num_labels == 2
