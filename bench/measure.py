"""Measurement: peak memory (process RSS on CPU; torch allocator and pynvml on CUDA),
parameter counts, and the environment of a run.

Written here rather than taken from a library because the numbers must be taken the same way
for every method: per job (each job is a fresh process), with the same sources, and with a
recorded reason whenever a source is unavailable instead of a crash.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import threading
import time
from importlib import metadata
from typing import Any

import torch

PACKAGES = ("torch", "transformers", "peft", "datasets", "lm_eval", "accelerate", "safetensors", "numpy")


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (Linux reports ru_maxrss in KiB)."""
    scale = 1 if sys.platform == "darwin" else 1024  # macOS reports bytes
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def cuda_reset() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def cuda_peaks() -> dict[str, float]:
    """torch allocator peaks in MiB since the last :func:`cuda_reset` (empty without CUDA)."""
    if not torch.cuda.is_available():
        return {}
    torch.cuda.synchronize()
    return {
        "torch_max_allocated_mb": torch.cuda.max_memory_allocated() / 2**20,
        "torch_max_reserved_mb": torch.cuda.max_memory_reserved() / 2**20,
    }


class NvmlSampler:
    """Samples the GPU's device-used memory (pynvml) in a background thread.

    ``baseline_mb`` is read at construction, before the model loads; results are reported
    net of it. Without pynvml, a driver or a GPU, ``reason`` says why and nothing is sampled.
    """

    def __init__(self, device_index: int = 0, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.samples: list[float] = []
        self.reason: str | None = None
        self.baseline_mb: float | None = None
        self.gpu_name: str | None = None
        self.driver: str | None = None
        self.other_processes: bool | None = None
        self._handle = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
            self.gpu_name = _text(pynvml.nvmlDeviceGetName(self._handle))
            self.driver = _text(pynvml.nvmlSystemGetDriverVersion())
            self.baseline_mb = self._used_mb()
            procs = pynvml.nvmlDeviceGetComputeRunningProcesses(self._handle)
            self.other_processes = any(p.pid != os.getpid() for p in procs)
        except ImportError:
            self.reason = "pynvml not installed (pip install nvidia-ml-py)"
        except Exception as err:  # NVMLError_LibraryNotFound, NVMLError_DriverNotLoaded, no GPU...
            self.reason = f"pynvml unavailable: {type(err).__name__}: {err}"
            self._handle = None

    def _used_mb(self) -> float:
        return self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used / 2**20

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self._used_mb())
            except Exception as err:  # a driver hiccup must not kill the job
                self.reason = f"sampling stopped: {err}"
                return
            self._stop.wait(self.interval_s)

    def __enter__(self) -> NvmlSampler:
        if self._handle is not None:
            self._thread = threading.Thread(target=self._loop, name="nvml-sampler", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def summary(self) -> dict[str, Any]:
        if not self.samples or self.baseline_mb is None:
            return {"nvml_reason": self.reason or "no samples taken"}
        ordered = sorted(self.samples)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        return {
            "nvml_max_mb": ordered[-1] - self.baseline_mb,
            "nvml_p99_mb": p99 - self.baseline_mb,
            "nvml_baseline_mb": self.baseline_mb,
            "nvml_samples": len(ordered),
            "gpu_name": self.gpu_name,
            "driver": self.driver,
            "other_processes": self.other_processes,
        }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


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
    if torch.cuda.is_available() and torch.cuda.is_initialized():
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
