"""Measurement: peak memory (process RSS on CPU; torch allocator and pynvml on CUDA), an exact
byte breakdown of one training step, parameter counts, and the environment of a run.

Written here rather than taken from a library because the numbers must be taken the same way
for every method: per job (each job is a fresh process), with the same sources, and with a
recorded reason whenever a source is unavailable instead of a crash.
"""

from __future__ import annotations

import copy
import gc
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Iterable
from importlib import metadata
from typing import Any

import torch
from torch import nn

PACKAGES = ("torch", "transformers", "peft", "datasets", "lm_eval", "accelerate", "safetensors", "numpy")
MiB = 2**20


# ---------------------------------------------------------------------------------------------
# Process memory (CPU)
# ---------------------------------------------------------------------------------------------
def _proc_status_kib(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (Linux only), e.g. ``VmHWM``; None elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB.

    Linux: ``VmHWM`` (which :func:`reset_peak_rss` can lower), else ``ru_maxrss``. ``ru_maxrss``
    is KiB on Linux and bytes on macOS.
    """
    hwm = _proc_status_kib("VmHWM")
    if hwm is not None:
        return hwm / 1024
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / MiB


def rss_mb() -> float | None:
    """Current resident set size in MiB (Linux ``VmRSS``); None where it cannot be read."""
    kib = _proc_status_kib("VmRSS")
    return None if kib is None else kib / 1024


def reset_peak_rss() -> bool:
    """Lower the peak RSS (``VmHWM``) to the current RSS, like :func:`cuda_reset` for the GPU.

    Linux >= 4.0 only (``echo 5 > /proc/self/clear_refs``); returns False where that is not
    possible, in which case :func:`peak_rss_mb` still counts everything since the process began.
    """
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return _proc_status_kib("VmHWM") is not None
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# CUDA: torch allocator peaks
# ---------------------------------------------------------------------------------------------
def _cuda_in_use() -> bool:
    """CUDA is present *and* this process has used it (a CPU job never creates a context)."""
    return torch.cuda.is_available() and torch.cuda.is_initialized()


def cuda_reset(device: torch.device | int | None = None) -> None:
    """Zero the allocator's peak counters (a no-op unless this process uses CUDA)."""
    if _cuda_in_use():
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def cuda_peaks(device: torch.device | int | None = None) -> dict[str, float]:
    """torch allocator peaks in MiB since the last :func:`cuda_reset`; empty unless CUDA is in use."""
    if not _cuda_in_use():
        return {}
    torch.cuda.synchronize(device)
    return {
        "torch_max_allocated_mb": torch.cuda.max_memory_allocated(device) / MiB,
        "torch_max_reserved_mb": torch.cuda.max_memory_reserved(device) / MiB,
    }


# ---------------------------------------------------------------------------------------------
# Exact bytes of one training step
# ---------------------------------------------------------------------------------------------
def _storage_key(t: torch.Tensor) -> tuple[str, int] | None:
    """Identity of ``t``'s storage (views share it), or None for storage-less tensors."""
    try:
        storage = t.untyped_storage()
    except (RuntimeError, NotImplementedError):  # e.g. sparse or wrapper subclasses
        return None
    if storage.nbytes() == 0:
        return None
    return (str(storage.device), storage.data_ptr())


def _storage_bytes(t: torch.Tensor) -> int:
    try:
        return t.untyped_storage().nbytes()
    except (RuntimeError, NotImplementedError):
        return t.numel() * t.element_size()


def tensor_bytes(tensors: Iterable[torch.Tensor], *, exclude: set | None = None) -> int:
    """Bytes of the distinct storages behind ``tensors`` (views and repeats counted once).

    A view keeps its whole storage alive, so the storage's size is what counts. Storages in
    ``exclude`` (keys from the same counting) are skipped.
    """
    seen: set = set(exclude or ())
    total = 0
    for t in tensors:
        key = _storage_key(t)
        if key is None:  # no countable storage: fall back to the tensor's own size
            total += t.numel() * t.element_size()
            continue
        if key in seen:
            continue
        seen.add(key)
        total += _storage_bytes(t)
    return total


def _keys(tensors: Iterable[torch.Tensor]) -> set:
    return {k for k in map(_storage_key, tensors) if k is not None}


def _tensors_in(obj: Any) -> list[torch.Tensor]:
    """Every tensor inside nested dicts, lists and tuples (optimizer state)."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors_in(v)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors_in(v)]
    return []


def _shapes(batch: Any) -> Any:
    if isinstance(batch, dict):
        return {k: list(v.shape) for k, v in batch.items() if isinstance(v, torch.Tensor)}
    return [list(t.shape) for t in _tensors_in(batch)]


def _default_loss(model: nn.Module, batch: Any) -> torch.Tensor:
    out = model(**batch) if isinstance(batch, dict) else model(*batch)
    return out.loss if hasattr(out, "loss") else out


def breakdown(
    model: nn.Module,
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    batch: Any,
    loss_fn: Callable[[nn.Module, Any], torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Exact bytes of one training step (forward, backward, ``optimizer.step()``), in bytes.

    Harmless by construction: the step runs on a deep copy of ``model`` with a fresh optimizer
    from ``make_optimizer(copy)``, under a forked RNG (dropout in the copy does not move the
    job's random stream); the copy is freed afterwards and, on CUDA, the allocator cache emptied.
    ``model``, its gradients and the RNG are untouched. Call it before the peaks are reset
    (:func:`cuda_reset`, :func:`reset_peak_rss`): the copy costs one more model's memory.

    ``batch``: one micro-batch on the model's device (a dict is passed as ``model(**batch)``);
    ``loss_fn(model, batch)`` defaults to ``model(**batch).loss``. The copy is put in train mode,
    as the training loop does. Keys (ints, bytes; every storage counted once):

    - ``param_bytes``: all parameters; ``trainable_param_bytes``: those with ``requires_grad``;
      ``buffer_bytes``: buffers (e.g. NeuroAda's indices);
    - ``grad_bytes``: parameter gradients after ``backward``;
    - ``optimizer_state_bytes``: tensors in ``optimizer.state`` after one ``step`` (AdamW: two
      moments plus a 4-byte ``step`` per parameter);
    - ``saved_bytes``: tensors autograd saved for backward during the forward pass (and the loss),
      split into ``saved_param_bytes`` (parameters and buffers, e.g. a frozen weight that
      ``F.linear`` saves: not new memory), ``saved_input_bytes`` (the batch's own tensors) and
      ``saved_activation_bytes`` (the rest: memory the forward pass adds);
    - ``total_bytes``: params + buffers + grads + optimizer state + saved inputs and activations,
      a lower bound of a step's resident tensors (no transient workspace or allocator slack).

    Limitation: under non-reentrant gradient checkpointing, tensors the checkpoint keeps by
    reference are not seen by ``saved_tensors_hooks``; recomputed activations never are.
    """
    loss_fn = loss_fn or _default_loss
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        clone = copy.deepcopy(model)
        done = False
        try:
            out = _one_step_bytes(clone, make_optimizer, batch, loss_fn)
            done = True
        finally:
            del clone
            if not done:  # a graph never run backward keeps cycles (output -> grad_fn -> output)
                gc.collect()
            if devices:
                torch.cuda.empty_cache()  # or max_memory_reserved keeps the copy's blocks
    return out


def _one_step_bytes(clone: nn.Module, make_optimizer, batch: Any, loss_fn) -> dict[str, Any]:
    """:func:`breakdown`'s step on ``clone``: forward under a saved-tensors hook, backward, step."""
    clone.train()
    for p in clone.parameters():
        p.grad = None
    params = list(clone.parameters())
    buffers = list(clone.buffers())
    trainable = [p for p in params if p.requires_grad]
    state_keys = _keys(params) | _keys(buffers)
    input_keys = _keys(_tensors_in(batch))
    saved: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn(clone, batch)
    saved_input_bytes = tensor_bytes([t for t in saved if _storage_key(t) in input_keys - state_keys])
    saved_activation_bytes = tensor_bytes(saved, exclude=state_keys | input_keys)
    out = {
        "saved_bytes": tensor_bytes(saved),
        "saved_param_bytes": tensor_bytes([t for t in saved if _storage_key(t) in state_keys]),
        "saved_input_bytes": saved_input_bytes,
        "saved_activation_bytes": saved_activation_bytes,
    }
    saved.clear()  # drop our references before backward frees the graph's
    loss.backward()
    del loss
    grad_bytes = tensor_bytes(p.grad for p in params if p.grad is not None)
    optimizer = make_optimizer(clone)
    optimizer.step()
    optimizer_state_bytes = tensor_bytes(
        [t for state in optimizer.state.values() for t in _tensors_in(state)], exclude=state_keys
    )
    out.update(
        param_bytes=tensor_bytes(params),
        trainable_param_bytes=tensor_bytes(trainable),
        buffer_bytes=tensor_bytes(buffers, exclude=_keys(params)),
        grad_bytes=grad_bytes,
        optimizer_state_bytes=optimizer_state_bytes,
        optimizer=type(optimizer).__name__,
        batch_shape=_shapes(batch),
    )
    out["total_bytes"] = (
        out["param_bytes"]
        + out["buffer_bytes"]
        + grad_bytes
        + optimizer_state_bytes
        + saved_input_bytes
        + saved_activation_bytes
    )
    return out


def breakdown_or_reason(
    model: nn.Module,
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    batch: Any,
    loss_fn: Callable[[nn.Module, Any], torch.Tensor] | None = None,
) -> dict[str, Any]:
    """:func:`breakdown`, or ``{"reason": ...}`` if it fails: a measurement never fails a job."""
    try:
        return breakdown(model, make_optimizer, batch, loss_fn)
    except Exception as err:  # e.g. a module that cannot be deep-copied, or out of memory
        reason = f"breakdown failed: {type(err).__name__}: {err}"
    # The traceback held the copy until here: free it now, or training inherits its memory.
    gc.collect()
    if _cuda_in_use():
        torch.cuda.empty_cache()
    return {"reason": reason}


# ---------------------------------------------------------------------------------------------
# Time and environment
# ---------------------------------------------------------------------------------------------
class Timer:
    """Wall-clock timer that synchronises CUDA so GPU work is counted where it happens."""

    def __enter__(self) -> Timer:
        _sync()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        _sync()
        self.seconds = time.perf_counter() - self.start


def _sync() -> None:
    if _cuda_in_use():
        torch.cuda.synchronize()


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, Any]:
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg.replace("_", "-"))
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    env: dict[str, Any] = {
        "packages": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    return env
