"""Determinism on CPU: the same seed gives identical metrics, losses and NeuroAda selections,
and a record holds everything needed to rerun it: its command reruns it, bit for bit.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

import methods
import tasks
from bench import records
from bench.config import budget_for, config_to_dict
from bench.models import tiny_llama, tiny_tokenizer
from bench.train import calibration_batches, encode_train
from methods.masked_sparse import INDICES

ROOT = Path(__file__).resolve().parents[2]
SAME = ("metrics", "losses", "final_loss", "n_eval", "samples_seen", "status")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "BENCH_DATA_DIR")}
    return {**env, **extra}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """A sweep whose thread count and data dir come from the environment ($CI, $BENCH_DATA_DIR)."""
    out = tmp_path_factory.mktemp("first")
    data = tmp_path_factory.mktemp("data")  # toy tasks read nothing; the path must still be recorded
    argv = ["run", "--methods", "neuroada,lora", "--tasks", "toy_cls", "--preset", "smoke", "--max-steps", "6"]
    argv += ["--output-dir", str(out), "--no-progress"]
    proc = subprocess.run(
        [sys.executable, "-m", "bench", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env=clean_env(CI="1", BENCH_DATA_DIR=str(data)),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, data


def test_record_holds_what_a_rerun_needs(first_run):
    out, data = first_run
    rec = records.load(out / "neuroada--toy_cls--seed0.json")
    run, env = rec.run, rec.env
    # the command with the environment's defaults spelled out
    assert f"--data-dir {data.resolve()}" in run["command"] and "--threads 1" in run["command"]
    assert run["method_config"] == config_to_dict(methods.get("neuroada").config_cls())
    assert run["budget"] == {**asdict(budget_for("smoke")), "max_steps": 6}
    assert (run["seed"], run["model"], run["evaluator"]) == (0, "tiny-bert", "native")
    assert run["task_version"] == tasks.get("toy_cls").version and run["preset"] == "smoke"
    assert run["threads"] == 1 and run["data_dir"] == str(data.resolve()) and run["device"] == "auto"
    assert run["trust_remote_code"] is False
    assert re.fullmatch(r"[0-9a-f]{40}", run["git_sha"]) and isinstance(run["git_dirty"], bool)
    for package in ("torch", "transformers", "peft"):
        assert env["packages"][package]
    assert env["python"] and env["device"] == "cpu" and env["threads"] == 1


def test_the_recorded_command_reruns_it_identically(first_run, tmp_path):
    out, _ = first_run
    first = {p.name: records.load(p) for p in sorted(out.glob("*.json"))}
    command = shlex.split(next(iter(first.values())).run["command"])
    assert command[:3] == ["python", "-m", "bench"]
    command[command.index("--output-dir") + 1] = str(tmp_path)
    # Another environment: no $CI, no $BENCH_DATA_DIR; the command alone must carry them.
    proc = subprocess.run(
        [sys.executable, *command[1:]], cwd=ROOT, capture_output=True, text=True, timeout=900, env=clean_env()
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    second = {p.name: records.load(p) for p in sorted(tmp_path.glob("*.json"))}
    assert set(second) == set(first) == {"neuroada--toy_cls--seed0.json", "lora--toy_cls--seed0.json"}
    for name, rec in first.items():
        again = second[name]
        assert {k: again.result.get(k) for k in SAME} == {k: rec.result.get(k) for k in SAME}, name
        assert len(rec.result["losses"]) == 6 and rec.result["metrics"]["accuracy"] >= 0
        for key in ("trainable_params", "total_params", "buffer_params", "breakdown"):
            assert again.cost[key] == rec.cost[key], (name, key)
        for key in ("method_config", "budget", "seed", "model", "threads", "data_dir"):
            assert again.run[key] == rec.run[key], (name, key)


def selection_digest() -> str:
    """SHA-256 of the NeuroAda indices of every target of tiny-llama, for each selection rule
    (gradient: from seeded calibration batches), and of masked sparse tuning's, which must be
    the same selection."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    task = tasks.get("toy_sum")
    budget = budget_for("smoke")
    examples = encode_train(task, tiny_tokenizer(), task.load("train", None), budget)
    calibration = calibration_batches(examples, budget, 0, False)
    neuroada, masked = methods.get("neuroada"), methods.get("masked_sparse")
    digest = hashlib.sha256()
    for selection in ("magnitude", "random", "reverse", "gradient"):
        for k in (1, 3):
            cfg = neuroada.config_cls(k=k, selection=selection, seed=7)
            model = neuroada.apply(tiny_llama(0), cfg, calibration=calibration)
            idx = {n: b for n, b in model.named_buffers() if n.endswith("neuroada_idx")}
            assert len(idx) == 14  # 7 projections x 2 layers
            other = masked.apply(
                tiny_llama(0), masked.config_cls(k=k, selection=selection, seed=7), calibration=calibration
            )
            for name, buf in sorted(idx.items()):
                digest.update(name.encode())
                digest.update(buf.to(torch.int64).numpy().tobytes())
                layer = other.get_submodule(name.rsplit(".", 1)[0])
                assert torch.equal(getattr(layer, INDICES).long(), buf.long()), (selection, k, name)
    return digest.hexdigest()


def test_neuroada_selection_is_identical_across_processes():
    here = selection_digest()
    assert selection_digest() == here  # the same process, twice
    code = "import sys; sys.path.insert(0, 'tests/bench'); import test_determinism as t; print(t.selection_digest())"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONHASHSEED": "12345"},  # no dict or set order may leak in
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == here
