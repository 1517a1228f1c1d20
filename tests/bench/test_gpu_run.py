"""Real runs on CUDA (``gpu``-marked: ``pytest -m gpu``; skipped without CUDA): ``bench run`` on the
toy tasks records the torch allocator's and NVML's peaks, trains in bf16 under the paper preset,
scores with lm-eval on the GPU as the native evaluator does, and runs one job on two GPUs (DDP)
when two are present. Tiny in-code models: each run takes seconds of GPU time.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tasks
from bench import evaluate, lm_eval_bridge, models

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ["--preset", "smoke", "--device", "cuda", "--no-progress"]


def bench(*argv: str, out: Path) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "run", *argv, "--output-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]


@pytest.fixture(scope="module")
def fp32_records(tmp_path_factory) -> list[dict]:
    return bench(
        "--methods", "neuroada,lora", "--tasks", "toy_sum,toy_cls", *SMOKE, out=tmp_path_factory.mktemp("fp32")
    )


def test_cuda_run_records_allocator_and_nvml_peaks(fp32_records):
    assert {(r["run"]["method"], r["run"]["task"]) for r in fp32_records} == {
        (m, t) for m in ("neuroada", "lora") for t in ("toy_sum", "toy_cls")
    }
    for rec in fp32_records:
        cost = rec["cost"]
        assert rec["result"]["status"] == "ok", rec["result"].get("error")
        assert (rec["env"]["device"], rec["run"]["dtype"]) == ("cuda", "float32")
        assert rec["env"]["gpu"] == torch.cuda.get_device_name(0)
        assert cost["memory_train"]["torch_max_allocated_mb"] > 0
        # the job's peak is the allocator's, over training and evaluation (reset before training)
        assert cost["peak_memory_mb"] == cost["memory"]["torch_max_allocated_mb"]
        assert cost["memory"]["torch_max_allocated_mb"] >= cost["memory_train"]["torch_max_allocated_mb"]
        assert cost["memory"]["torch_max_reserved_mb"] >= cost["memory"]["torch_max_allocated_mb"]
        nvml = cost["memory_nvml"]
        assert "nvml_reason" not in nvml, nvml
        assert nvml["nvml_samples"] >= 1 and nvml["nvml_matched_by"] in ("uuid", "index")
        assert nvml["nvml_max_mb"] >= nvml["nvml_p99_mb"] and nvml["gpu_name"]


def test_cuda_bf16_run_trains_fp32_values_on_a_bf16_base(tmp_path):
    if not torch.cuda.is_bf16_supported(including_emulation=False):
        pytest.skip("this GPU has no native bf16")
    # The paper preset trains in bf16 on CUDA; cut to the smoke budget's size.
    cut = ["--max-steps", "2", "--batch-size", "2", "--micro-batch-size", "2", "--max-length", "64"]
    cut += ["--limit", "4", "--eval-batch-size", "4", "--device", "cuda", "--no-progress"]
    (rec,) = bench("--methods", "neuroada", "--tasks", "toy_sum", "--preset", "paper", *cut, out=tmp_path)
    assert rec["result"]["status"] == "ok", rec["result"].get("error")
    assert rec["run"]["dtype"] == "bfloat16" and rec["run"]["method_config"]["value_dtype"] is None
    assert rec["result"]["samples_seen"] == 4 and math.isfinite(rec["result"]["final_loss"])
    assert rec["cost"]["memory_train"]["torch_max_allocated_mb"] > 0


@pytest.mark.parametrize("name", ["toy_mc", "toy_sum"])
def test_lm_eval_on_cuda_agrees_with_the_native_evaluator(name):
    task = tasks.get(name)
    rows = task.load("eval", None)[:16]
    model, tok = models.tiny_llama(0).cuda(), models.tiny_tokenizer()
    device = torch.device("cuda")
    native = evaluate.evaluate(task, model, tok, rows, batch_size=8, device=device, progress=False)
    bridged = lm_eval_bridge.evaluate(task, model, tok, rows, batch_size=8, device=device, progress=False)
    assert bridged.predictions == native.predictions
    assert bridged.metrics == native.metrics


def test_cuda_run_with_the_lm_eval_evaluator(tmp_path):
    (rec,) = bench("--methods", "neuroada", "--tasks", "toy_mc", "--evaluator", "lm-eval", *SMOKE, out=tmp_path)
    assert rec["result"]["status"] == "ok", rec["result"].get("error")
    assert (rec["result"]["evaluator"], rec["env"]["device"]) == ("lm-eval", "cuda")
    assert rec["result"]["n_eval"] == 4


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs for a two-process job")
def test_two_process_ddp_job_on_two_gpus(tmp_path):
    (rec,) = bench("--methods", "neuroada", "--tasks", "toy_sum", "--gpus-per-job", "2", *SMOKE, out=tmp_path)
    assert rec["result"]["status"] == "ok", rec["result"].get("error")
    assert (rec["env"]["world_size"], rec["env"]["device"]) == (2, "cuda:0")
    assert rec["result"]["samples_seen"] == 4  # the budget of one process: 2 steps of 2
