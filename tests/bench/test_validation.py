"""The validation split of learning-rate trials: disjoint from the final training rows, the same
for every method and seed, never an eval item; and how a trial is scored on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tasks
from bench import validation
from bench.errors import UsageError

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def test_split_is_disjoint_complete_and_fixed():
    rows = [{"i": i} for i in range(50)]
    train, val = validation.split_train(rows, 10)
    assert len(val) == 10 and len(train) == 40
    assert {r["i"] for r in train}.isdisjoint({r["i"] for r in val})
    assert sorted(r["i"] for r in train + val) == list(range(50))
    assert [r["i"] for r in train] == sorted(r["i"] for r in train)  # file order kept
    assert validation.split_train(rows, 10) == (train, val)  # same rows for every method and seed
    assert validation.split_train(rows, 0) == (rows, [])


def test_a_split_that_leaves_nothing_to_train_is_refused():
    with pytest.raises(UsageError, match="leaves no training rows"):
        validation.split_train([{"i": 1}, {"i": 2}], 2)


@pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data not found at {DATA}")
@pytest.mark.parametrize("name", ["glue_sst2", "boolq", "arc_easy"])
def test_validation_rows_are_never_eval_items(name):
    task = tasks.per_task_train(tasks.get(name)) if tasks.get(name).suite == "commonsense" else tasks.get(name)
    _, val = validation.split_train(task.load("train", str(DATA)), 200)
    evals = {json.dumps(r, sort_keys=True) for r in task.load("eval", str(DATA))}
    assert not [r for r in val if json.dumps(r, sort_keys=True) in evals]


@pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data not found at {DATA}")
def test_criterion_is_the_metric_on_own_data_else_the_loss():
    sst2 = tasks.get("glue_sst2")
    assert validation.validation_criterion(sst2, sst2.load("train", str(DATA))[:5]) == "metric"
    boolq = tasks.per_task_train(tasks.get("boolq"))
    assert validation.validation_criterion(boolq, boolq.load("train", str(DATA))[:5]) == "metric"
    mixture = tasks.get("boolq")  # trains on the commonsense mixture: other tasks' rows too
    assert validation.validation_criterion(mixture, mixture.load("train", str(DATA))[:5]) == "loss"
    mc = tasks.get("arc_easy_mc")  # scored by log-likelihood on LLM-Adapters' rows, the format it trains on
    assert validation.validation_criterion(mc, mc.load("train", str(DATA))[:5]) == "metric"
    math = tasks.get("gsm8k")  # trains on math_10k, evaluated on its own file
    assert validation.validation_criterion(math, math.load("train", str(DATA))[:5]) == "loss"
