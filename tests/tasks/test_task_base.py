"""The task contract (``tasks/_base.py``): ``TaskConfig`` validation, loading from a generator,
a data folder or the hub (faked, no network), JSONL errors with file and line, and the shared
prompt and accuracy.
"""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

import tasks
from bench.errors import UsageError
from tasks import _base
from tasks._base import TaskConfig, accuracy, alpaca_prompt, read_jsonl

ROWS = [{"q": "1+1=", "a": "2"}, {"q": "2+2=", "a": "4"}]


def _config(**overrides) -> TaskConfig:
    """A minimal valid in-code task; ``overrides`` replace its fields."""
    fields = dict(
        name="tiny",
        suite="toy",
        kind="generate",
        version=1,
        metrics=("accuracy",),
        higher_is_better={"accuracy": True},
        to_train=lambda r: {"prompt": r["q"], "target": r["a"]},
        to_eval=lambda r: {"prompt": r["q"], "reference": r["a"]},
        score=accuracy,
        default_model="tiny-llama",
        generator=lambda split: ROWS[:1] if split == "train" else ROWS,
        extract=str.strip,
    )
    return TaskConfig(**{**fields, **overrides})


# ---------------------------------------------------------------------------------------------
# TaskConfig
# ---------------------------------------------------------------------------------------------
def test_a_valid_config_and_its_derived_fields():
    task = _config()
    assert (task.head, task.primary_metric, task.display_name) == ("causal_lm", "accuracy", "tiny")
    assert _config(display_name="Tiny").display_name == "Tiny"
    classify = _config(kind="classify", num_labels=2, extract=None)
    assert classify.head == "sequence_classification"
    assert _config(metrics=("f1", "accuracy"), higher_is_better={"f1": True, "accuracy": True}).primary_metric == "f1"


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"kind": "rank"}, r"task tiny: kind 'rank' must be one of \('generate', 'multiple_choice'"),
        ({"extract": None}, r"task tiny: a generate task needs an extract function"),
        ({"kind": "classify", "num_labels": 0}, r"task tiny: num_labels must be >= 1 for classify"),
        ({"kind": "regress"}, r"task tiny: num_labels must be >= 1 for regress"),
        ({"generator": None}, r"task tiny: give eval_file, hub or generator"),
        ({"metrics": ()}, r"task tiny: metrics is empty"),
        ({"higher_is_better": {}}, r"task tiny: metric 'accuracy' has no direction; add higher_is_better="),
        (
            {"metrics": ("accuracy", "loss"), "higher_is_better": {"accuracy": True}},
            r"metric 'loss' has no direction; add higher_is_better=\{'loss': True\} \(False if lower is better\)",
        ),
    ],
)
def test_invalid_configs_name_task_field_and_fix(overrides, match):
    with pytest.raises(ValueError, match=match):
        _config(**overrides)


def test_lower_is_better_is_a_direction_too():
    task = _config(metrics=("loss",), higher_is_better={"loss": False})
    assert task.higher_is_better == {"loss": False}


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
def test_generated_rows_need_no_folder():
    task = _config()
    assert task.load("eval", None) == ROWS
    assert task.load("train", "/nonexistent") == ROWS[:1]  # a generator ignores the data folder


def test_rows_from_the_data_folder(tmp_path):
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS) + "\n")
    task = _config(generator=None, eval_file="tiny/eval.jsonl", required_fields=("q", "a"))
    assert task.load("eval", tmp_path) == ROWS  # the blank last line is skipped
    with pytest.raises(UsageError, match="task 'tiny' has no local train file"):
        task.load("train", tmp_path)
    with pytest.raises(UsageError, match="task 'tiny' has no hub source; pass --data-dir"):
        task.load("eval", None)


def test_train_rows_check_their_own_required_fields(tmp_path):
    (tmp_path / "train.jsonl").write_text(json.dumps({"q": "1+1="}) + "\n")
    task = _config(generator=None, eval_file="eval.jsonl", train_file="train.jsonl", required_fields=("q", "a"))
    with pytest.raises(UsageError, match=r"train\.jsonl:1: missing field\(s\) a; each row needs q, a"):
        task.load("train", tmp_path)
    relaxed = dataclasses.replace(task, train_required_fields=("q",))
    assert relaxed.load("train", tmp_path) == [{"q": "1+1="}]


def test_read_jsonl_missing_and_empty_files(tmp_path):
    with pytest.raises(UsageError, match=r"data file '.*absent\.jsonl' not found; point --data-dir"):
        read_jsonl(tmp_path / "absent.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(UsageError, match=r"data file '.*empty\.jsonl' is empty"):
        read_jsonl(tmp_path / "empty.jsonl")


# ---------------------------------------------------------------------------------------------
# Shared prompt and metric
# ---------------------------------------------------------------------------------------------
def test_alpaca_prompt():
    assert alpaca_prompt("  What is 2+2?\n") == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\nWhat is 2+2?\n\n### Response:\n"
    )


def test_accuracy_in_percent():
    assert accuracy(["a", "b", None, "d"], ["a", "c", "c", "d"]) == {"accuracy": 50.0}
    assert accuracy([1], [1]) == {"accuracy": 100.0}
    assert accuracy([], []) == {"accuracy": 0.0}
    with pytest.raises(ValueError):  # zip(strict=True): a prediction per reference
        accuracy(["a"], ["a", "b"])


# ---------------------------------------------------------------------------------------------
# Hub loading (faked, no network) and JSONL errors, on the real tasks
# ---------------------------------------------------------------------------------------------
def test_hub_loading_picks_train_hub_and_checks_fields(monkeypatch):
    calls = []

    def fake_load_hub(hub, split):
        calls.append((hub.path, hub.name, hub.train_split if split == "train" else hub.eval_split))
        row = {
            "question": "Which gas do plants take in?",
            "choices": {"text": ["oxygen", "carbon dioxide", "helium"], "label": ["A", "B", "C"]},
            "answerKey": "B",
        }
        if hub.path == "json":  # the LLM-Adapters mixture already has the local field names
            return [{"instruction": "x", "input": "", "output": "the correct answer is answer1", "answer": "answer1"}]
        return [hub.convert(row)]

    monkeypatch.setattr(_base, "load_hub", fake_load_hub)
    task = tasks.get("arc_easy")
    (eval_row,) = task.load("eval", None)
    assert eval_row["answer"] == "answer2"
    assert eval_row["instruction"].endswith("Answer3: helium\n\nAnswer format: answer1/answer2/answer3")
    task.load("train", None)
    assert calls == [("allenai/ai2_arc", "ARC-Easy", "test"), ("json", None, "train")]
    assert tasks.get("arc_easy_mc").load("eval", None)[0]["answer"] == "answer2"

    monkeypatch.setattr(_base, "load_hub", lambda hub, split: [{"instruction": "no answer"}])
    with pytest.raises(UsageError, match="missing field"):
        task.load("eval", None)


def test_read_jsonl_broken_line(tmp_path):
    path = tmp_path / "eval.jsonl"
    path.write_text('{"instruction": "a", "answer": "true"}\n{"instruction": "b", \n')
    with pytest.raises(UsageError, match=rf"{re.escape(str(path))}:2: not valid JSON"):
        read_jsonl(path)


def test_read_jsonl_not_an_object(tmp_path):
    path = tmp_path / "eval.jsonl"
    path.write_text('{"a": 1}\n\n[1, 2]\n')
    with pytest.raises(UsageError, match=rf"{re.escape(str(path))}:3: expected a JSON object"):
        read_jsonl(path)


def test_task_load_missing_field_names_file_and_line(tmp_path, raw_rows):
    rows = raw_rows("gsm8k/eval.jsonl")[:3]
    broken = dict(rows[1])
    del broken["answer"]
    (tmp_path / "gsm8k").mkdir()
    path = tmp_path / "gsm8k" / "eval.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (rows[0], broken, rows[2])))
    with pytest.raises(UsageError, match=rf"{re.escape(str(path))}:2: missing field\(s\) answer"):
        tasks.get("gsm8k").load("eval", tmp_path)
    with pytest.raises(UsageError, match="not found"):
        tasks.get("gsm8k").load("train", tmp_path)


def test_a_metric_without_direction_is_refused():
    cola = tasks.get("glue_cola")
    with pytest.raises(ValueError, match=r"task glue_cola: metric 'matthews_corr' has no direction; add higher_is_b"):
        dataclasses.replace(cola, higher_is_better={"accuracy": True})
    assert dataclasses.replace(cola, display_name="").display_name == "glue_cola"
