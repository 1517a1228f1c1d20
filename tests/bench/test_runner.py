"""One job in named phases: the records it writes (run, result with per-item results and metric
directions, cost, env), a failure recorded instead of raised, the job process's exit code, and
library messages kept off the terminal."""

from __future__ import annotations

import io
import json
import logging
import sys
from dataclasses import replace

import pytest

from bench import runner
from bench.config import budget_for
from bench.plan import RunRequest, plan


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    request = RunRequest(
        methods="lora",
        tasks="toy_mc,toy_cls",
        budget=budget_for("smoke"),
        smoke=True,
        output_dir=str(out),
        device="cpu",
        threads=1,
        progress=False,
    )
    return plan(request)


@pytest.fixture(scope="module")
def mc_record(jobs):
    (rec,) = runner.run_one(jobs[0])
    return rec


def test_a_record_per_task_with_its_sections(mc_record, jobs):
    saved = json.loads(jobs[0].record_path.read_text())
    assert saved["result"] == json.loads(json.dumps(mc_record.result))
    run = mc_record.run
    assert (run["method"], run["task"], run["seed"], run["train_task"]) == ("lora", "toy_mc", 0, "toy_mc")
    assert run["task_version"] >= 1 and run["primary_metric"] == "accuracy" and run["dtype"] == "float32"
    assert run["started_at"] <= run["finished_at"]
    cost = mc_record.cost
    assert (
        cost["trainable_params"] > 0 and cost["trainable_fraction"] == cost["trainable_params"] / cost["total_params"]
    )
    assert "breakdown" in cost and mc_record.env["device"] == "cpu"


def test_metric_directions_and_per_item_results(mc_record):
    result = mc_record.result
    assert result["status"] == "ok" and result["training"] == "fine-tuned"
    assert result["higher_is_better"] == {"accuracy": True}
    items = result["items"]
    n = result["n_eval"]
    assert items["id"] == list(range(n)) and len(items["prediction"]) == len(items["reference"]) == n
    assert items["correct"] == [p == r for p, r in zip(items["prediction"], items["reference"], strict=True)]
    assert result["metrics"]["accuracy"] == pytest.approx(100 * sum(items["correct"]) / n)
    assert len(items["correct_norm"]) == n and result["items_hash"].startswith("sha256:")
    assert len(result["losses"]) == budget_for("smoke").max_steps


def test_a_failed_job_becomes_a_failed_record(jobs, tmp_path):
    broken = replace(jobs[1], method_config={**jobs[1].method_config, "r": -1}, output_dir=str(tmp_path))
    (rec,) = runner.run_one(broken)
    assert rec.status == "failed" and rec.result["metrics"] == {}
    assert "lora.r" in rec.result["error"] and "Traceback" in rec.result["traceback"]
    assert rec.run["finished_at"] and (tmp_path / broken.record_path.name).exists()


def test_main_reads_the_spec_and_exits_with_the_worst_status(jobs, tmp_path, monkeypatch):
    spec = replace(jobs[1], output_dir=str(tmp_path))
    monkeypatch.setattr(sys, "stdin", io.StringIO(spec.to_json()))
    assert runner.main([]) == 0
    assert json.loads(spec.record_path.read_text())["result"]["training"] == "fine-tuned"
    logging.basicConfig(force=True)  # undo quiet_libraries for the other tests


def test_library_messages_go_to_stdout_not_the_terminal(capsys):
    runner.quiet_libraries()
    from transformers.utils import logging as hf_logging

    hf_logging.get_logger("transformers.modeling_utils").warning("LOAD REPORT classifier.weight | MISSING")
    out, err = capsys.readouterr()
    assert "LOAD REPORT" not in err and "LOAD REPORT" in out  # stdout: the job's log
    logging.basicConfig(force=True)


def test_training_kind():
    assert runner.training_kind(0, 0) == "zero-shot"
    assert runner.training_kind(10, 10) == "linear-probe"
    assert runner.training_kind(11, 10) == "fine-tuned"


def test_steps_from_epochs_are_recorded_with_the_budget():
    run: dict = {}
    budget = runner.steps_from_epochs(run, budget_for("paper", "commonsense"), 1000)
    assert budget.max_steps == 3 * 63  # ceil(1000 / 16) per epoch
    assert run["budget"]["max_steps"] == 189 and run["budget"]["epochs"] == 3
    assert {k: run["epoch_steps"][k] for k in ("epochs", "n_train", "steps_per_epoch", "max_steps")} == {
        "epochs": 3,
        "n_train": 1000,
        "steps_per_epoch": 63,
        "max_steps": 189,
    }


def test_job_tasks_take_the_budgets_protocol(monkeypatch):
    monkeypatch.setattr("bench.hub.missing_data", lambda selected: None)  # planned only, never loaded
    spec = replace(
        plan(
            RunRequest(
                methods="lora",
                tasks="boolq,piqa",
                budget=budget_for("smoke"),
                output_dir="/tmp/x",
                model="tiny-llama",
                device="cpu",
            )
        )[0]
    )
    loreft = replace(spec, budget={**spec.budget, "protocol": "loreft"})
    train, evals = runner.job_tasks(loreft)
    assert [t.protocol.split(":")[0] for t in evals] == ["loreft", "loreft"]
    assert runner.job_tasks(spec)[0].protocol.startswith("generate-greedy")
