"""The checks of ``bench doctor --gpu``, run on CPU: they pass on correct code, and each names what
a broken layer, record or run gets wrong (``bench run`` is stubbed: tests/bench/test_e2e.py runs
it for real; the ``gpu``-marked tests run the same checks on CUDA)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bench import gpu_checks
from methods import _neuroada_layer, neuroada


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("k", [1, 20])  # the in-place W + S patch, and the transient copy (k > 16)
def test_neuroada_equals_the_dense_layer_on_cpu(dtype, k):
    assert gpu_checks.neuroada_problems("cpu", dtype, k=k) == []


def test_a_wrong_value_gradient_is_named(monkeypatch):
    real = _neuroada_layer.value_grad
    monkeypatch.setattr(_neuroada_layer, "value_grad", lambda *args: real(*args) * 2)
    problems = gpu_checks.neuroada_problems("cpu", torch.float32)
    assert len(problems) == 1 and problems[0].startswith("value gradient differs from the dense layer's: ")


def test_an_unmerge_that_does_nothing_is_named(monkeypatch):
    monkeypatch.setattr(neuroada.NeuroAdaLinear, "unmerge", lambda self: None)
    assert gpu_checks.neuroada_problems("cpu", torch.float32) == ["unmerge() did not restore W bit for bit"]


def record(**cost) -> dict:
    nvml = {"nvml_max_mb": 10.0, "nvml_p99_mb": 9.0}
    base = {"memory": {"torch_max_allocated_mb": 5.0}, "memory_train": {"torch_max_allocated_mb": 4.0}}
    return {
        "run": {"method": "neuroada", "task": "toy_sum", "dtype": "bfloat16"},
        "result": {"status": "ok"},
        "env": {"device": "cuda"},
        "cost": {**base, "memory_nvml": nvml, **cost},
    }


def test_record_problems_name_what_a_gpu_record_lacks():
    assert gpu_checks.record_problems(record(), cuda=True, dtype="bfloat16") == []
    assert gpu_checks.record_problems(record(), cuda=True, dtype="float32") == [
        "neuroada--toy_sum: trained in bfloat16, not float32"
    ]
    lacking = record(memory_train={}, memory_nvml={"nvml_reason": "pynvml not installed"})
    assert gpu_checks.record_problems(lacking, cuda=True, dtype="bfloat16") == [
        "neuroada--toy_sum: no torch allocator peak in cost.memory_train",
        "neuroada--toy_sum: no NVML peak (pynvml not installed)",
    ]
    failed = {**record(), "result": {"status": "failed", "error": "RuntimeError: CUDA error"}}
    assert gpu_checks.record_problems(failed, cuda=True, dtype="bfloat16") == [
        "neuroada--toy_sum: failed: RuntimeError: CUDA error"
    ]


def fake_bench(monkeypatch, written: list[dict], *, code: int = 0, stderr: str = "", timeout: bool = False):
    """``subprocess.run`` of ``bench run`` replaced: it writes ``written`` into --output-dir."""
    calls = []

    def run(command, **kwargs):
        calls.append(command)
        if timeout:
            raise subprocess.TimeoutExpired(command, kwargs["timeout"])
        out = Path(command[command.index("--output-dir") + 1])
        for i, rec in enumerate(written):
            (out / f"r{i}.json").write_text(json.dumps(rec))
        return subprocess.CompletedProcess(command, code, "", stderr)

    monkeypatch.setattr(gpu_checks.subprocess, "run", run)
    return calls


def test_run_problems_reads_every_record_the_run_wrote(monkeypatch):
    nvml_less = record(memory_nvml={"nvml_reason": "no driver"})
    calls = fake_bench(monkeypatch, [record(), nvml_less])
    assert gpu_checks.run_problems(["--tasks", "toy_sum"], cuda=True, dtype="bfloat16") == [
        "neuroada--toy_sum: no NVML peak (no driver)"
    ]
    (command,) = calls
    assert command[1:6] == ["-m", "bench", "run", "--tasks", "toy_sum"] and command[-1] == "--no-progress"


def test_run_problems_says_why_a_run_wrote_nothing(monkeypatch):
    fake_bench(monkeypatch, [], code=2, stderr="4 job(s)\nerror: unknown task 'toy_summ'\n")
    assert gpu_checks.run_problems(["--tasks", "toy_summ"], cuda=True, dtype="float32") == [
        "`bench run --tasks toy_summ` wrote no record (exit 2): error: unknown task 'toy_summ'"
    ]
    fake_bench(monkeypatch, [], timeout=True)
    assert gpu_checks.run_problems(["--tasks", "toy_sum"], cuda=True, dtype="float32", timeout=5) == [
        "`bench run --tasks toy_sum` did not finish within 5s"
    ]


def test_lm_eval_agrees_with_the_native_evaluator_on_cpu():
    assert gpu_checks.lm_eval_problems("cpu") == []


def test_a_check_that_raises_is_failed():
    def boom():
        raise RuntimeError("CUDA error: an illegal memory access")

    check = gpu_checks._check("x", "fine", boom, "report it")
    assert (check.status, check.fix) == ("failed", "report it")
    assert check.detail.startswith("RuntimeError: CUDA error: an illegal memory access (")
    assert gpu_checks._check("x", "fine", lambda: [], "").detail.startswith("fine (")


def test_gpu_checks_run_each_check_once(monkeypatch):
    runs = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # no bf16 and no second GPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(gpu_checks, "neuroada_problems", lambda device, dtype: [])
    monkeypatch.setattr(gpu_checks, "run_problems", lambda argv, **kw: runs.append((argv, kw)) or [])
    monkeypatch.setattr(gpu_checks, "BUDGET_S", 100)  # below RUN_TIMEOUT_S: the budget bounds the run
    clock = SimpleNamespace(monotonic=lambda: 5000.0, time=time.time)  # no time passes for the budget
    monkeypatch.setattr(gpu_checks, "time", clock)
    monkeypatch.setattr(gpu_checks, "lm_eval_problems", lambda device: ["toy_mc: differs"])
    out = gpu_checks.gpu_checks("cuda:0")
    assert [(c.name, c.status) for c in out] == [
        ("neuroada fp32", "ok"),
        ("neuroada bf16", "missing"),
        ("run fp32", "ok"),
        ("lm-eval", "failed"),
        ("ddp", "missing"),
    ]
    toy = ["--tasks", "toy_sum,toy_cls", "--device", "cuda:0"]
    ((argv, kw),) = runs
    assert argv == [*gpu_checks.SMOKE, *toy]
    assert kw == {"cuda": True, "dtype": "float32", "timeout": 100}
