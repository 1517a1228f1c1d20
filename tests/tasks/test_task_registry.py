"""The task registry (``tasks/__init__.py``): selection, suites, labels and order, and every
registered task's config, plus the checks that run over all tasks on the offline data (those skip,
with the reason, only when the data folder is absent). Suite-specific tests live in
``test_<suite>.py``, the task contract in ``test_task_base.py``.
"""

from __future__ import annotations

import dataclasses
import re

import pytest

import tasks
from bench import models
from bench.errors import UsageError
from bench.registry import TASKS as REGISTRY
from tasks import arithmetic, commonsense, glue
from tasks._base import HubSource

COMMONSENSE = ["boolq", "piqa", "siqa", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "openbookqa"]
ARITHMETIC = ["multiarith", "gsm8k", "addsub", "aqua", "singleeq", "svamp", "mawps"]  # NeuroAda's columns
GLUE = ["glue_cola", "glue_sst2", "glue_mrpc", "glue_qqp", "glue_stsb", "glue_mnli", "glue_qnli", "glue_rte"]
PAPER_ORDER = COMMONSENSE + ARITHMETIC + GLUE
COMMONSENSE_MC = ["boolq_mc", "piqa_mc", "winogrande_mc", "arc_easy_mc", "arc_challenge_mc", "openbookqa_mc"]
ALL_TASKS = PAPER_ORDER + COMMONSENSE_MC
CONTAMINATED = {"addsub", "multiarith", "singleeq", "mawps"}


# ---------------------------------------------------------------------------------------------
# Registry and selection
# ---------------------------------------------------------------------------------------------
def test_all_is_the_23_paper_tasks_in_paper_order():
    assert [t.name for t in tasks.select("all")] == PAPER_ORDER
    assert len(PAPER_ORDER) == 23


def test_suites():
    assert [t.name for t in tasks.select("commonsense")] == COMMONSENSE
    assert [t.name for t in tasks.select("arithmetic")] == ARITHMETIC
    assert [t.name for t in tasks.select("glue")] == GLUE
    assert [t.name for t in tasks.select("commonsense_mc")] == COMMONSENSE_MC
    assert {t.suite for t in tasks.select("toy")} == {"toy"}
    assert set(tasks.NOT_IN_ALL) == {"toy", "commonsense_mc"}
    # module lists (STYLE: a TASKS list per suite file) match the registry
    assert [t.name for t in commonsense.TASKS] == COMMONSENSE
    assert [t.name for t in commonsense.MC_TASKS] == COMMONSENSE_MC
    assert [t.name for t in arithmetic.TASKS] == ARITHMETIC
    assert [t.name for t in glue.TASKS] == GLUE


def test_select_combines_without_duplicates():
    assert [t.name for t in tasks.select("gsm8k,all")] == ["gsm8k", *[n for n in PAPER_ORDER if n != "gsm8k"]]
    assert [t.name for t in tasks.select("all,commonsense_mc")] == ALL_TASKS
    assert [t.name for t in tasks.select("glue_rte,arc_easy_mc,glue_rte")] == ["glue_rte", "arc_easy_mc"]


def test_select_unknown_name_suggests():
    with pytest.raises(UsageError, match="did you mean 'arc_easy'"):
        tasks.select("arc_esay")


@pytest.mark.parametrize("name", ALL_TASKS)
def test_task_config_is_complete(name):
    task = tasks.get(name)
    assert task.version >= 1
    assert task.description and "\n" not in task.description
    assert task.protocol and task.metrics
    assert all(task.higher_is_better.get(m) is True for m in task.metrics)
    assert task.default_model in models.ALIASES
    assert task.eval_file and task.train_file and task.required_fields and task.train_required_fields
    assert isinstance(task.hub, HubSource)
    assert task.hub.convert is None or callable(task.hub.convert)
    assert task.contaminated_by == (("math_10k/train.jsonl",) if name in CONTAMINATED else ())
    if task.suite in ("commonsense", "commonsense_mc"):
        assert task.default_model == "smollm2-135m"
    if task.suite == "commonsense":
        assert (task.kind, task.max_new_tokens, task.train_file) == ("generate", 32, "commonsense_mix/train.jsonl")
        assert task.protocol.startswith("generate-greedy")
    if task.suite == "commonsense_mc":
        assert (task.kind, task.train_file) == ("multiple_choice", f"{name[:-3]}/train.jsonl")
        assert task.protocol.startswith("loglik")
    if task.suite == "arithmetic":
        assert (task.kind, task.max_new_tokens, task.train_file) == ("generate", 256, "math_10k/train.jsonl")
        assert task.default_model == "smollm2-135m"
    if task.suite == "glue":
        assert task.default_model == "minilm-l6"
        assert task.kind == ("regress" if name == "glue_stsb" else "classify")
        assert task.num_labels == {"glue_stsb": 1, "glue_mnli": 3}.get(name, 2)
        assert task.hub.path == "nyu-mll/glue"
        assert task.hub.eval_split == ("validation_matched" if name == "glue_mnli" else "validation")


# The papers' column labels (bench/report.py's TASK_TEX before it read them from the tasks).
DISPLAY_NAMES = {
    **{"boolq": "BoolQ", "piqa": "PIQA", "siqa": "SIQA", "hellaswag": "HellaS.", "winogrande": "WinoG."},
    **{"arc_easy": "ARC-e", "arc_challenge": "ARC-c", "openbookqa": "OBQA"},
    **{"gsm8k": "GSM8K", "svamp": "SVAMP", "aqua": "AQuA", "mawps": "MAWPS", "addsub": "AddSub"},
    **{"multiarith": "MultiArith", "singleeq": "SingleEq"},
    **{"glue_cola": "CoLA", "glue_sst2": "SST-2", "glue_mrpc": "MRPC", "glue_qqp": "QQP", "glue_stsb": "STS-B"},
    **{"glue_mnli": "MNLI", "glue_qnli": "QNLI", "glue_rte": "RTE"},
}


@pytest.mark.parametrize("name", REGISTRY.names())
def test_every_task_has_a_display_name_and_metric_directions(name):
    task = tasks.get(name)
    assert task.display_name == DISPLAY_NAMES.get(name, name)
    assert tasks.display_name(name) == task.display_name
    assert set(task.metrics) <= set(task.higher_is_better)


def test_metric_directions():
    assert tasks.get("glue_cola").higher_is_better == {"matthews_corr": True, "accuracy": True}
    assert tasks.get("glue_stsb").higher_is_better == {"pearson": True, "spearman": True}
    assert tasks.get("glue_mrpc").higher_is_better == {"f1": True, "accuracy": True}
    assert tasks.get("toy_sum").higher_is_better == {"accuracy": True}


def test_suite_titles_and_order():
    assert tasks.SUITE_TITLES == {
        "commonsense": "Commonsense reasoning",
        "arithmetic": "Arithmetic reasoning",
        "glue": "GLUE",
    }
    assert tasks.suite_order() == ["commonsense", "arithmetic", "glue", "toy", "commonsense_mc"]
    assert [tasks.suite_title(s) for s in ("glue", "toy")] == ["GLUE", "toy"]
    assert tasks.display_name("not_a_task") == "not_a_task"


def test_paper_order():
    # LoReFT's arithmetic columns; the registry (and --tasks all) keeps NeuroAda's
    arithmetic_paper = ["gsm8k", "svamp", "aqua", "mawps", "addsub", "multiarith", "singleeq"]
    assert tasks.paper_order() == COMMONSENSE + arithmetic_paper + GLUE
    assert sorted(tasks.paper_order()) == sorted(PAPER_ORDER)


def test_task_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        tasks.get("gsm8k").version = 2  # type: ignore[misc]
    assert REGISTRY.get("glue_cola") is glue.GLUE_COLA


# ---------------------------------------------------------------------------------------------
# Every task on the real data
# ---------------------------------------------------------------------------------------------
def _check_item(task, item, split):
    if split == "train" and task.kind in ("generate", "multiple_choice"):
        assert set(item) == {"prompt", "target"}
        assert isinstance(item["prompt"], str) and item["prompt"].strip()
        assert isinstance(item["target"], str) and item["target"].strip()
        if task.kind == "multiple_choice":
            assert item["target"].startswith(" ") and not item["prompt"].endswith(" ")
    elif task.kind == "generate":
        assert set(item) == {"prompt", "reference"}
        assert item["prompt"].endswith("### Response:\n")
        if task.suite == "commonsense":
            assert item["reference"] in commonsense.LABELS[task.name]
        elif task.name == "aqua":
            assert item["reference"] in ("A", "B", "C", "D", "E")
        else:
            assert isinstance(item["reference"], float)
    elif task.kind == "multiple_choice":
        if "contexts" in item:
            assert set(item) == {"contexts", "continuation", "gold"}
            options, continuation = item["contexts"], item["continuation"]
            assert continuation.startswith(" ") and continuation.strip()
        else:
            assert set(item) == {"context", "choices", "gold"}
            options = item["choices"]
            assert isinstance(item["context"], str) and item["context"].strip()
            assert all(c.startswith(" ") and c.strip() for c in options)
        assert len(options) >= 2 and all(isinstance(o, str) for o in options)
        assert isinstance(item["gold"], int) and 0 <= item["gold"] < len(options)
    else:
        assert set(item) == {"text", "text_pair", "label"}
        assert isinstance(item["text"], str) and item["text"].strip()
        assert item["text_pair"] is None or isinstance(item["text_pair"], str)
        if task.kind == "regress":
            assert isinstance(item["label"], float) and 0.0 <= item["label"] <= 5.0
        else:
            assert isinstance(item["label"], int) and 0 <= item["label"] < task.num_labels


@pytest.mark.parametrize("split", ["eval", "train"])
@pytest.mark.parametrize("name", ALL_TASKS)
def test_every_row_loads_and_formats(name, split, data_dir):
    task = tasks.get(name)
    rows = task.load(split, data_dir)
    assert len(rows) >= 200
    to_item = task.to_eval if split == "eval" else task.to_train
    for i, row in enumerate(rows, 1):
        try:
            _check_item(task, to_item(row), split)
        except Exception as err:
            raise AssertionError(f"{name} {split} row {i}: {err!r}") from err


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text).strip().lower()


@pytest.mark.parametrize("name", ARITHMETIC + COMMONSENSE)
def test_contamination_is_flagged(name, raw_rows):
    """An eval problem found verbatim in the train file must be flagged (the local train files
    are samples, so a flagged task may show no overlap here)."""
    task = tasks.get(name)
    train = {_norm(r["instruction"]) for r in raw_rows(task.train_file)}
    overlap = sum(_norm(r["instruction"]) in train for r in raw_rows(task.eval_file))
    if overlap:
        assert task.train_file in task.contaminated_by, f"{name}: {overlap} eval problems in {task.train_file}"
