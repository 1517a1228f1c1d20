"""GPU device memory sampled with pynvml during a job (``nvidia-ml-py`` provides ``pynvml``).

Results are net of a baseline read before the model loads; without pynvml, a driver or a GPU the
sampler records why and samples nothing. The torch allocator's exact figures are in
``bench.measure``.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable
from typing import Any

import torch

MiB = 2**20


class NvmlSampler:
    """Samples the GPU's device-used memory (pynvml) in a background thread.

    ``baseline_mb`` is read at construction: construct it before the model loads (after the
    CUDA context exists, which :func:`environment` creates), and results are reported net of it.
    Samples every ``interval_s``, so spikes shorter than that can be missed; the torch figures
    from :func:`cuda_peaks` are exact for tensors. NVML sees the whole device: ``other_processes``
    (checked at start and at exit) says whether another process shared it, which would make the
    NVML figures wrong. Without pynvml, a driver or a GPU, ``reason`` says why and nothing is
    sampled; no pynvml failure ever raises.
    """

    def __init__(self, device_index: int = 0, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.samples: list[float] = []
        self.reason: str | None = None
        self.baseline_mb: float | None = None
        self.gpu_name: str | None = None
        self.driver: str | None = None
        self.matched_by: str | None = None
        """How the torch device was found in NVML: ``uuid`` (exact) or ``index`` (assumes no
        ``CUDA_VISIBLE_DEVICES`` remapping)."""
        self.other_processes: bool | None = None
        self.notes: list[str] = []
        self._nvml: Any = None
        self._handle: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            with warnings.catch_warnings():  # the deprecated `pynvml` shim warns on import
                warnings.simplefilter("ignore")
                import pynvml
        except ImportError:
            self.reason = "pynvml not installed (pip install nvidia-ml-py)"
            return
        try:
            pynvml.nvmlInit()
        except Exception as err:  # NVMLError_LibraryNotFound, NVMLError_DriverNotLoaded, ...
            self.reason = f"pynvml unavailable: {type(err).__name__}: {err}"
            return
        self._nvml = pynvml
        try:
            self._handle = self._find_handle(device_index)
            self.baseline_mb = self._used_mb()
        except Exception as err:  # no such GPU, MIG without access, ...
            self.reason = f"pynvml cannot read GPU {device_index}: {type(err).__name__}: {err}"
            self._handle = None
            self._shutdown()
            return
        # Descriptive extras: a failure here is noted, never fatal to the memory readings.
        self.gpu_name = self._optional("name", lambda: _text(pynvml.nvmlDeviceGetName(self._handle)))
        self.driver = self._optional("driver", lambda: _text(pynvml.nvmlSystemGetDriverVersion()))
        self.other_processes = self._optional("processes", self._others_present)

    def _find_handle(self, device_index: int) -> Any:
        # NVML numbers GPUs physically and ignores CUDA_VISIBLE_DEVICES; torch's uuid is exact.
        uuid = None
        if torch.cuda.is_available():
            try:
                uuid = getattr(torch.cuda.get_device_properties(device_index), "uuid", None)
            except Exception:  # noqa: BLE001 - fall back to the index
                uuid = None
        if uuid is not None:
            text = str(uuid)
            text = text if text.startswith(("GPU-", "MIG-")) else f"GPU-{text}"  # NVML's spelling
            try:
                handle = self._nvml.nvmlDeviceGetHandleByUUID(text.encode())
                self.matched_by = "uuid"
                return handle
            except Exception as err:  # MIG instances have MIG- uuids; fall back
                self.notes.append(f"uuid lookup failed ({type(err).__name__}); matched by index")
        self.matched_by = "index"
        return self._nvml.nvmlDeviceGetHandleByIndex(device_index)

    def _optional(self, what: str, read: Callable[[], Any]) -> Any:
        try:
            return read()
        except Exception as err:
            self.notes.append(f"{what}: {type(err).__name__}: {err}")
            return None

    def _others_present(self) -> bool:
        # In a container the PIDs NVML reports are the host's, so ours may not be among them:
        # then every listed process counts, ours included, and the answer can be a false alarm.
        pids = {p.pid for p in self._nvml.nvmlDeviceGetComputeRunningProcesses(self._handle)}
        mine = os.getpid()
        if pids and mine not in pids:
            self.notes.append(
                "this process is not in NVML's process list (PID namespace?); other_processes may be a false alarm"
            )
            return len(pids) > 1
        return bool(pids - {mine})

    def _used_mb(self) -> float:
        return self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used / MiB

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self._used_mb())
            except Exception as err:  # a driver hiccup must not kill the job
                self.reason = f"sampling stopped after {len(self.samples)} samples: {type(err).__name__}: {err}"
                return
            self._stop.wait(self.interval_s)

    def _shutdown(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001 - nothing useful to do
                pass
            self._nvml = None

    def __enter__(self) -> NvmlSampler:
        if self._handle is not None and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="nvml-sampler", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            if self._thread.is_alive():
                self.notes.append("sampler thread did not stop within 2 s")
        if self._handle is not None and self._nvml is not None:
            later = self._optional("processes", self._others_present)
            if later:
                self.other_processes = True
            self._handle = None
            self._shutdown()

    def summary(self) -> dict[str, Any]:
        """``nvml_max_mb`` and ``nvml_p99_mb`` net of the baseline, or ``nvml_reason``."""
        if not self.samples or self.baseline_mb is None:
            out: dict[str, Any] = {"nvml_reason": self.reason or "no samples taken (sampler never entered?)"}
            if self.notes:
                out["nvml_notes"] = list(dict.fromkeys(self.notes))
            return out
        ordered = sorted(self.samples)
        p99 = ordered[max(0, -(-99 * len(ordered) // 100) - 1)]  # nearest-rank 99th percentile
        out = {
            "nvml_max_mb": ordered[-1] - self.baseline_mb,
            "nvml_p99_mb": p99 - self.baseline_mb,
            "nvml_baseline_mb": self.baseline_mb,
            "nvml_samples": len(ordered),
            "nvml_interval_s": self.interval_s,
            "nvml_matched_by": self.matched_by,
            "gpu_name": self.gpu_name,
            "driver": self.driver,
            "other_processes": self.other_processes,
        }
        if self.reason:
            out["nvml_reason"] = self.reason
        if self.notes:
            out["nvml_notes"] = list(dict.fromkeys(self.notes))
        return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
