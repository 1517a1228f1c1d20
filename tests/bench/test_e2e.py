"""End to end through the real CLI: every method on the toy suite, records checked field by field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import methods
import tasks

ROOT = Path(__file__).resolve().parents[2]
TOY = tasks.suites()["toy"]


def bench(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *argv], cwd=cwd, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    proc = bench(
        "run",
        "--methods",
        "all",
        "--tasks",
        "toy",
        "--limit",
        "4",
        "--preset",
        "smoke",
        "--output-dir",
        str(out),
        "--threads",
        "1",
        "--no-progress",
    )
    return out, proc


def test_sweep_succeeds_and_prints_a_table(sweep):
    out, proc = sweep
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| method | task | seed | status |" in proc.stdout


def test_one_record_per_job(sweep):
    out, _ = sweep
    expected = {f"{m}--{t}--seed0.json" for m in methods.builtins() for t in TOY}  # all: the built-ins
    assert {p.name for p in out.glob("*.json")} == expected


@pytest.mark.parametrize("method", methods.builtins())
@pytest.mark.parametrize("task", TOY)
def test_record_fields(sweep, method, task):
    out, _ = sweep
    rec = json.loads((out / f"{method}--{task}--seed0.json").read_text())
    assert rec["schema_version"] == 1
    assert set(rec) == {"schema_version", "run", "result", "cost", "env"}
    run, result, cost, env = rec["run"], rec["result"], rec["cost"], rec["env"]
    assert (run["method"], run["task"], run["seed"], run["model"]) == (method, task, 0, tasks.get(task).default_model)
    assert run["smoke"] is True and run["budget"]["eval_limit"] == 4 and run["budget"]["max_steps"] == 2
    assert run["task_version"] == tasks.get(task).version and run["protocol"]
    assert run["method_config"]["lr"] > 0
    assert run["command"].startswith("python -m bench run")
    assert "git_sha" in run and "git_dirty" in run
    assert result["status"] == "ok", result.get("error")
    primary = tasks.get(task).primary_metric
    assert 0.0 <= result["metrics"][primary] <= 100.0
    assert result["n_eval"] == 4
    assert cost["trainable_fraction"] == pytest.approx(cost["trainable_params"] / cost["total_params"])
    assert cost["peak_memory_mb"] > 0 and cost["eval_seconds"] > 0
    if result["training"] == "zero-shot":  # base on a causal task: nothing trains, no training figures
        assert method == "base" and cost["trainable_params"] == 0 and "train_tokens_per_s" not in cost
        assert result["losses"] == [] and result["samples_seen"] == 0
        return
    assert 0 < cost["trainable_params"] <= cost["total_params"]
    assert cost["train_tokens_per_s"] > 0 and cost["train_seconds"] > 0
    assert env["packages"]["torch"] and env["device"] == "cpu" and env["threads"] == 1


def test_rerun_skips_finished_records(sweep):
    out, _ = sweep
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    proc = bench(
        "run",
        "--methods",
        "full_ft",
        "--tasks",
        "toy_sum",
        "--limit",
        "4",
        "--preset",
        "smoke",
        "--output-dir",
        str(out),
        "--no-progress",
    )
    assert proc.returncode == 0
    assert "record exists" in proc.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")} == before


def test_report_reads_the_records(sweep, tmp_path):
    out, _ = sweep
    proc = bench("report", "--records", str(out), "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "Smoke runs" in proc.stdout
