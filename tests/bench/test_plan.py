"""Planning: names resolved, tasks grouped by shared training, records named per task."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.config import budget_for
from bench.errors import UsageError
from bench.plan import RunRequest
from bench.plan import plan as plan_jobs

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.fixture(autouse=True)
def _hub_reachable(monkeypatch):
    """Hub tasks without --data-dir plan as if the hub answered (tests/bench/test_hub.py covers
    the offline check); no test touches the network."""
    monkeypatch.setattr("bench.hub.unreachable", lambda: None)


def plan(tasks: str, **kw):
    args = dict(
        methods="lora,full_ft",
        tasks=tasks,
        seeds=(0, 1),
        budget=budget_for("smoke"),
        preset="smoke",
        smoke=True,
        output_dir="/tmp/unused",
        threads=1,
        device="cpu",
    )
    args.update(kw)
    return plan_jobs(RunRequest(**args))


def test_tasks_sharing_a_training_set_train_once():
    jobs = plan("boolq,piqa,glue_sst2,glue_rte")
    groups = {j.tasks for j in jobs}
    assert groups == {("boolq", "piqa"), ("glue_sst2",), ("glue_rte",)}
    assert len(jobs) == 3 * 2 * 2  # groups x methods x seeds
    mixed = next(j for j in jobs if j.tasks == ("boolq", "piqa"))
    assert [p.name for p in mixed.record_paths] == [
        f"{mixed.label}--boolq--seed{mixed.seed}.json",
        f"{mixed.label}--piqa--seed{mixed.seed}.json",
    ]


def test_train_per_task_splits_groups():
    jobs = plan("boolq,piqa", train_per_task=True)
    assert {j.tasks for j in jobs} == {("boolq",), ("piqa",)}


def test_train_per_task_without_a_train_file_is_an_error():
    with pytest.raises(UsageError, match="svamp"):
        plan("svamp", train_per_task=True)


def test_every_job_has_the_same_budget():
    jobs = plan("toy")
    assert len({str(j.budget) for j in jobs}) == 1
    assert {j.method_config["lr"] for j in jobs if j.method == "lora"} != {
        j.method_config["lr"] for j in jobs if j.method == "full_ft"
    }


@pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data not found at {DATA}")
def test_data_dir_is_checked_for_every_task(tmp_path):
    (tmp_path / "glue_sst2").mkdir()
    (tmp_path / "glue_sst2" / "eval.jsonl").write_text('{"sentence": "a", "label": 0}\n')
    with pytest.raises(UsageError, match="no train file for task 'glue_sst2'"):
        plan("glue_sst2", data_dir=str(tmp_path))
    assert plan("glue_sst2", data_dir=str(DATA))


def test_budget_per_suite_same_for_every_method():
    jobs = plan("glue_sst2,toy_sum", budget=lambda task: budget_for("demo", task.suite))
    by_task = {}
    for job in jobs:
        by_task.setdefault(job.task, set()).add(str(job.budget))
    assert all(len(b) == 1 for b in by_task.values())  # identical across methods and seeds
    assert by_task["glue_sst2"] != by_task["toy_sum"]


def test_offline_without_data_stops_before_any_job(monkeypatch, tmp_path):
    monkeypatch.setattr("bench.hub.unreachable", lambda: "HF_HUB_OFFLINE=1 is set")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(UsageError) as err:
        plan("glue_sst2,toy_sum,boolq")
    assert str(err.value) == (
        "no data for task(s) glue_sst2, boolq: the hub is unreachable (HF_HUB_OFFLINE=1 is set) "
        f"and their data is not in the datasets cache ({tmp_path / 'empty-cache'}); pass --data-dir with a "
        "folder laid out like shared/data (or set BENCH_DATA_DIR)"
    )
    assert plan("toy_sum")  # in-code data needs no hub


def test_presets_and_peft_paths_plan_as_peft_config_jobs_labelled_by_name(tmp_path):
    import json

    import methods

    path = tmp_path / "my_vera.json"
    path.write_text(json.dumps({"peft_type": "VERA", "r": 16, "peft_bench": {"lr": 0.01}}))
    jobs = plan("toy_sum", methods=f"neuroada,ia3,peft:{path}", seeds=(0,), overrides={"ia3": {"lr": "1e-3"}})
    by_label = {j.label: j for j in jobs}
    assert list(by_label) == ["neuroada", "ia3@lr=1e-3", "my_vera"]
    ia3, vera = by_label["ia3@lr=1e-3"], by_label["my_vera"]
    assert (ia3.method, ia3.method_config["lr"]) == ("peft_config", 1e-3)
    assert ia3.method_config["peft"]["peft_type"] == "IA3"
    assert (vera.method, vera.method_config["lr"], vera.method_config["peft"]["r"]) == ("peft_config", 0.01, 16)
    assert vera.method_config["source"] == str(path.resolve())
    assert [p.name for p in vera.record_paths] == ["my_vera--toy_sum--seed0.json"]
    assert {j.label for j in plan("toy_sum", methods="all", seeds=(0,))} == set(methods.builtins())
    assert [j.label for j in plan("toy_sum", methods="peft", seeds=(0,))] == methods.presets()


def test_two_methods_of_one_name_are_an_error(tmp_path):
    (tmp_path / "shira.json").write_text('{"peft_type": "SHIRA", "r": 2}')
    with pytest.raises(UsageError, match="two methods are named 'shira'"):
        plan("toy_sum", methods=f"shira,peft:{tmp_path / 'shira.json'}")
