"""The GPU checks of ``python -m bench doctor --gpu``: the CUDA paths, run once in a few minutes.

- ``neuroada fp32`` / ``neuroada bf16``: a NeuroAda layer (fp32 values) on an fp32 or bf16 base
  weight gives the forward of the dense layer ``W + S``, the value gradient of the dense
  ``dL/dW`` gathered at its indices, the input gradient of the dense layer, leaves ``W``
  bit-for-bit unchanged, and merges and unmerges bit-exactly (:func:`neuroada_problems`).
- ``run fp32`` / ``run bf16``: a real ``bench run`` (NeuroAda on the toy tasks, tiny models) whose
  records are ``ok`` and carry the torch allocator's and NVML's peaks and the training dtype.
- ``lm-eval``: lm-evaluation-harness and the native evaluator score the same items alike on the GPU.
- ``ddp``: a two-process job (``--gpus-per-job 2``), when two GPUs are present.

Every function takes the device, so that the same checks run on CPU in the tests
(``tests/bench/test_gpu_checks.py``); the ``gpu``-marked tests check the same on CUDA.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.checks import Check

RUN_TIMEOUT_S = 150  # one tiny `bench run` takes ~20-40 s on a GPU, mostly imports and CUDA start-up
BUDGET_S = 200  # runs share this, so all of --gpu (plus ~30 s of in-process checks) stays under 4 minutes
# Value and input gradients: fp32 sums over 64 tokens taken in another order than the dense
# reference's GEMM (bf16 inputs are exact in fp32, so the same tolerance holds for a bf16 base).
GRAD_TOL = {"rtol": 1e-4, "atol": 1e-4}


# ---------------------------------------------------------------------------------------------
# NeuroAda against the dense W + S layer
# ---------------------------------------------------------------------------------------------
def neuroada_problems(
    device: torch.device | str, base_dtype: torch.dtype, *, d_in: int = 96, d_out: int = 80, k: int = 3
) -> list[str]:
    """What differs between a NeuroAda layer and the dense ``W + S`` layer (empty: nothing)."""
    from methods.neuroada import NeuroAdaLinear

    gen = torch.Generator().manual_seed(0)
    linear = nn.Linear(d_in, d_out)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(d_out, d_in, generator=gen))
        linear.bias.copy_(torch.randn(d_out, generator=gen))
    linear = linear.to(device=device, dtype=base_dtype).requires_grad_(False)
    idx = torch.rand(d_out, d_in, generator=gen).argsort(dim=1)[:, :k]  # k distinct columns per row
    layer = NeuroAdaLinear(linear, idx, value_dtype=torch.float32)
    with torch.no_grad():
        layer.neuroada_values.copy_(torch.randn(d_out, k, generator=gen))
    x = torch.randn(4, 16, d_in, generator=gen).to(device=device, dtype=base_dtype).requires_grad_(True)
    r = torch.randn(4, 16, d_out, generator=gen).to(device)  # the loss's weights: dL/dy = r (in y's dtype)
    w0 = linear.weight.detach().clone()
    cols = layer.neuroada_idx.long()
    # The dense W + S in the base dtype, as merge() writes it: W[i, c] + v rounded once.
    dense = w0.clone().scatter_(1, cols, w0.gather(1, cols) + layer.neuroada_values.detach().to(base_dtype))

    problems: list[str] = []
    y = layer(x)
    (y.float() * r).sum().backward()
    _compare(problems, "forward", y, F.linear(x.detach(), dense, linear.bias))
    g = r.to(base_dtype).float().reshape(-1, d_out)  # the gradient reaching the layer: r cast to y's dtype
    x2 = x.detach().float().reshape(-1, d_in)
    _compare(problems, "value gradient", layer.neuroada_values.grad, (g.t() @ x2).gather(1, cols), **GRAD_TOL)
    _compare(problems, "input gradient", x.grad.float(), (g @ dense.float()).view_as(x), **_input_tol(base_dtype))
    if not torch.equal(linear.weight, w0):
        problems.append("W changed after forward and backward (the W + S patch was not restored)")
    layer.merge()
    if not torch.equal(linear.weight, dense):
        problems.append("merge() is not the dense W + S bit for bit")
    layer.unmerge()
    if not torch.equal(linear.weight, w0):
        problems.append("unmerge() did not restore W bit for bit")
    return problems


def _input_tol(dtype: torch.dtype) -> dict[str, float]:
    # bf16: grad_x is a bf16 GEMM (8-bit mantissa; cuBLAS may also reduce partial sums in bf16)
    # over 80 products of N(0, 1) entries (sums ~9), against an fp32 reference: ~2^-8 of 9.
    return {"rtol": 1.6e-2, "atol": 6e-2} if dtype == torch.bfloat16 else GRAD_TOL


def _compare(problems: list[str], what: str, got: torch.Tensor, expected: torch.Tensor, **tol: float) -> None:
    try:
        torch.testing.assert_close(got, expected.to(got.dtype), **tol)
    except AssertionError as err:
        problems.append(f"{what} differs from the dense layer's: {' '.join(str(err).split())[:240]}")


# ---------------------------------------------------------------------------------------------
# Real runs: records with allocator and NVML peaks
# ---------------------------------------------------------------------------------------------
def record_problems(record: dict, *, cuda: bool, dtype: str) -> list[str]:
    """What a ``bench run`` record on the GPU lacks: status ok, the device, the dtype, the peaks."""
    name = f"{record['run'].get('method')}--{record['run'].get('task')}"
    if record["result"]["status"] != "ok":
        return [f"{name}: {record['result']['status']}: {record['result'].get('error')}"]
    problems = []
    device, cost = record["env"]["device"], record["cost"]
    if device.startswith("cuda") != cuda:
        problems.append(f"{name}: ran on {device}")
    if record["run"].get("dtype") != dtype:
        problems.append(f"{name}: trained in {record['run'].get('dtype')}, not {dtype}")
    if cuda:
        for section in ("memory", "memory_train"):
            if not cost.get(section, {}).get("torch_max_allocated_mb", 0) > 0:
                problems.append(f"{name}: no torch allocator peak in cost.{section}")
        nvml = cost.get("memory_nvml", {})
        if "nvml_max_mb" not in nvml:
            problems.append(f"{name}: no NVML peak ({nvml.get('nvml_reason', 'cost.memory_nvml absent')})")
    return problems


def run_problems(argv: list[str], *, cuda: bool, dtype: str, timeout: float = RUN_TIMEOUT_S) -> list[str]:
    """Run ``python -m bench run ARGV`` into a temporary folder and check its records."""
    with tempfile.TemporaryDirectory(prefix="bench-doctor-") as out:
        command = [sys.executable, "-m", "bench", "run", *argv, "--output-dir", out, "--no-progress"]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=dict(os.environ))
        except subprocess.TimeoutExpired:
            return [f"`bench run {' '.join(argv)}` did not finish within {timeout:g}s"]
        paths = sorted(Path(out).glob("*.json"))
        if not paths:
            tail = " ".join(proc.stderr.strip().splitlines()[-1:])[:300]
            return [f"`bench run {' '.join(argv)}` wrote no record (exit {proc.returncode}): {tail}"]
        return [p for path in paths for p in record_problems(json.loads(path.read_text()), cuda=cuda, dtype=dtype)]


SMOKE = ["--methods", "neuroada", "--preset", "smoke"]
# The paper preset trains in bf16 on CUDA; cut to the smoke budget's size.
BF16 = ["--methods", "neuroada", "--preset", "paper", "--max-steps", "2", "--batch-size", "2"]
BF16 += ["--micro-batch-size", "2", "--max-length", "64", "--limit", "4", "--eval-batch-size", "4"]


# ---------------------------------------------------------------------------------------------
# lm-eval on the device
# ---------------------------------------------------------------------------------------------
def lm_eval_problems(device: torch.device | str) -> list[str]:
    """lm-eval and the native evaluator disagree on the tiny LLaMA's predictions for the toy tasks."""
    import tasks
    from bench import evaluate, lm_eval_bridge, models

    device = torch.device(device)
    model, tok = models.tiny_llama(0).to(device), models.tiny_tokenizer()
    problems = []
    for name in ("toy_mc", "toy_sum"):
        task = tasks.get(name)
        rows = task.load("eval", None)[:16]
        native = evaluate.evaluate(task, model, tok, rows, batch_size=8, device=device, progress=False)
        bridged = lm_eval_bridge.evaluate(task, model, tok, rows, batch_size=8, device=device, progress=False)
        if native.predictions != bridged.predictions or native.metrics != bridged.metrics:
            problems.append(f"{name}: native {native.metrics} != lm-eval {bridged.metrics}")
    return problems


# ---------------------------------------------------------------------------------------------
# All of them
# ---------------------------------------------------------------------------------------------
def _check(name: str, what: str, find: Callable[[], list[str]], fix: str) -> Check:
    """``find()``'s problems as one check line (an exception is a failure too), with its time."""
    started = time.time()
    try:
        problems = find()
    except Exception as err:  # the check itself crashed: that is what it found
        last = traceback.format_exception_only(type(err), err)[-1].strip()
        problems = [last[:300]]
    took = f" ({time.time() - started:.0f}s)"
    if problems:
        return Check(name, "failed", "; ".join(problems) + took, fix)
    return Check(name, "ok", what + took)


def gpu_checks(device: str = "cuda") -> list[Check]:
    """The ``--gpu`` checks on ``device`` (about two minutes on one GPU, at most :data:`BUDGET_S`
    seconds of runs; DDP only with two GPUs)."""
    fix = "a bug in peft-bench's CUDA path: report it with this line and the output of bench doctor"
    deadline = time.monotonic() + BUDGET_S

    def left() -> float:  # the time limit of the next run: what is left of the budget
        return max(1.0, min(RUN_TIMEOUT_S, deadline - time.monotonic()))

    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    out = [
        _check(
            "neuroada fp32",
            "forward, value and input gradients equal the dense W + S layer's; merge/unmerge bit-exact",
            lambda: neuroada_problems(device, torch.float32),
            fix,
        )
    ]
    if bf16:
        out.append(
            _check(
                "neuroada bf16",
                "bf16 base, fp32 values: equal to the dense layer's; merge/unmerge bit-exact",
                lambda: neuroada_problems(device, torch.bfloat16),
                fix,
            )
        )
    else:
        out.append(Check("neuroada bf16", "missing", "no native bf16 on this GPU: skipped"))
    toy = ["--tasks", "toy_sum,toy_cls", "--device", device]
    out.append(
        _check(
            "run fp32",
            "bench run (neuroada, toy_sum and toy_cls): records ok with allocator and NVML peaks",
            lambda: run_problems([*SMOKE, *toy], cuda=True, dtype="float32", timeout=left()),
            fix,
        )
    )
    if bf16:
        out.append(
            _check(
                "run bf16",
                "bench run --preset paper (bf16), cut to 2 steps: records ok with the peaks",
                lambda: run_problems([*BF16, *toy], cuda=True, dtype="bfloat16", timeout=left()),
                fix,
            )
        )
    out.append(
        _check("lm-eval", "lm-eval and the native evaluator agree on the GPU", lambda: lm_eval_problems(device), fix)
    )
    if torch.cuda.device_count() >= 2:
        ddp = [*SMOKE, "--tasks", "toy_sum", "--device", "cuda", "--gpus-per-job", "2"]
        out.append(
            _check(
                "ddp",
                "a two-process job (--gpus-per-job 2) records ok",
                lambda: run_problems(ddp, cuda=True, dtype="float32", timeout=left()),
                fix,
            )
        )
    else:
        out.append(Check("ddp", "missing", f"{torch.cuda.device_count()} GPU(s): the two-process check needs two"))
    return out
