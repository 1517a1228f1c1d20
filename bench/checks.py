"""The machine checks of ``python -m bench doctor``: each returns a :class:`Check` (ok, missing or
failed, what was found, and the fix), and never raises.

``missing`` means something is not there (a CPU-only torch build, no GPU, Ray not installed);
``failed`` means it is there but does not work (NVML present but not answering, a kernel that does
not compile, a GPU check that disagrees). Whether a check must pass is the command's decision
(``bench.commands.doctor``); the GPU checks of ``--gpu`` are in ``bench.gpu_checks``.

To add a check: a function returning a :class:`Check`, and an entry in ``environment_checks``.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Literal

Status = Literal["ok", "missing", "failed"]
INSTALL = "bash .ci/install (or pip install -e '.[demo]')"
CUDA_TORCH = (
    "install a CUDA build of torch: pip install --force-reinstall torch --index-url "
    "https://download.pytorch.org/whl/cu126 (PyPI's Linux wheels are CUDA builds too)"
)


@dataclass(frozen=True)
class Check:
    """One line of ``bench doctor``."""

    name: str
    """Short name (``torch``, ``cuda``, ``nvml``, ...), also what the summary lists."""
    status: Status
    detail: str
    """What was found, e.g. ``2.13.0+cpu (CPU-only build)``."""
    fix: str = ""
    """How to get it (shown unless the status is ``ok``)."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def line(self) -> str:
        text = f"{self.status:<8} {self.name:<14} {self.detail}"
        return text + (f"; fix: {self.fix}" if self.fix and not self.ok else "")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


# ---------------------------------------------------------------------------------------------
# torch, CUDA, the GPUs, NVML, bf16
# ---------------------------------------------------------------------------------------------
def torch_check() -> Check:
    try:
        import torch
    except ImportError as err:
        return Check("torch", "missing", f"cannot import torch ({err})", INSTALL)
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
    if getattr(torch.version, "hip", None):
        build = f"ROCm {torch.version.hip} build"
    return Check("torch", "ok", f"{torch.__version__} ({build}), Python {platform.python_version()}")


def cuda_check() -> Check:
    import torch

    if not torch.version.cuda:
        return Check("cuda", "missing", f"torch {torch.__version__} is a CPU-only build", CUDA_TORCH)
    if not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        hidden = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
        return Check(
            "cuda",
            "missing",
            f"torch {torch.__version__} has CUDA {torch.version.cuda} but sees no GPU{hidden}",
            "check the driver with nvidia-smi and that CUDA_VISIBLE_DEVICES names a GPU",
        )
    return Check("cuda", "ok", f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s) visible")


def gpu_check() -> Check:
    """Name, memory and compute capability of every visible GPU."""
    import torch

    if not torch.cuda.is_available():
        return Check("gpu", "missing", "no GPU visible to torch", "see the cuda line")
    try:
        parts = []
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            parts.append(f"cuda:{i} {props.name}, {props.total_memory / 2**30:.1f} GiB, sm_{props.major}{props.minor}")
    except Exception as err:  # a GPU that fails to initialize (driver mismatch, MIG without access)
        return Check("gpu", "failed", f"{type(err).__name__}: {err}", "check nvidia-smi and the driver version")
    return Check("gpu", "ok", "; ".join(parts))


def nvml_check() -> Check:
    """pynvml answers for GPU 0 (what runs sample GPU memory with, ``bench.nvml``)."""
    from bench.nvml import NvmlSampler

    if _version("nvidia-ml-py") is None and importlib.util.find_spec("pynvml") is None:
        return Check("nvml", "missing", "pynvml is not installed", "pip install nvidia-ml-py")
    sampler = NvmlSampler(0)
    try:
        if sampler.reason is not None:
            return Check("nvml", "missing", sampler.reason, "an NVIDIA driver (libnvidia-ml) and a GPU")
        return Check(
            "nvml", "ok", f"{sampler.gpu_name}, driver {sampler.driver}, {sampler.baseline_mb:.0f} MiB in use"
        )
    finally:
        sampler.__exit__(None, None, None)


def bf16_check() -> Check:
    import torch

    if not torch.cuda.is_available():
        return Check("bf16", "missing", "no GPU (runs on CPU stay fp32)", "see the cuda line")
    if torch.cuda.is_bf16_supported(including_emulation=False):
        return Check("bf16", "ok", "native bfloat16 (the paper preset trains in bf16)")
    return Check(
        "bf16",
        "missing",
        "this GPU has no native bfloat16 (compute capability < 8.0); bf16 runs are emulated and slow",
        "use a GPU of compute capability 8.0 or later for --preset paper, or a preset that trains in fp32",
    )


# ---------------------------------------------------------------------------------------------
# Compiler and kernels, models, data, optional packages
# ---------------------------------------------------------------------------------------------
def kernels_check() -> Check:
    """The C compiler and NeuroAda's CPU kernels (built once per machine; torch ops without them)."""
    from methods import _kernels, _sparse_ops

    if not _kernels.enabled("BENCH_NEUROADA_KERNEL"):
        return Check("kernels", "missing", "turned off (BENCH_NEUROADA_KERNEL=0)", "unset BENCH_NEUROADA_KERNEL")
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _sparse_ops._kernel.cache_clear()
        lib = _sparse_ops._kernel()
    if lib is not None:
        return Check("kernels", "ok", f"NeuroAda CPU kernels built with {cc or 'a cached build'} ({lib._name})")
    why = str(caught[-1].message) if caught else "not built"
    if cc is None:
        return Check(
            "kernels", "missing", "no C compiler (cc or gcc): NeuroAda on CPU uses torch ops (slower)", "install gcc"
        )
    return Check("kernels", "failed", why, "check that $CC (else cc) compiles C with -shared -fPIC")


def models_check() -> Check:
    """The packaged demo models (SmolLM2 converts once on first use, then comes from the cache)."""
    from bench import models
    from bench.errors import UsageError

    found, problems = [], []
    for alias in ("smollm2-135m", "minilm-l6"):
        try:
            models.check(alias)
        except UsageError as err:
            problems.append(f"{alias}: {err}")
            continue
        if alias == "smollm2-135m" and not (models.cache_dir() / "smollm2-135m-instruct" / "config.json").exists():
            alias += " (converted to fp32 on its first job)"
        found.append(alias)
    if problems:
        return Check("models", "missing", "; ".join(problems), INSTALL)
    return Check("models", "ok", ", ".join(found))


def data_check(data_dir: str | None) -> Check:
    """``--data-dir`` laid out like shared/data, or (without it) the hub or the datasets cache."""
    import tasks
    from bench import hub

    needing = [t for t in tasks.select("all") if t.generator is None]
    if data_dir is not None:
        root = Path(data_dir)
        if not root.is_dir():
            return Check("data", "failed", f"--data-dir '{data_dir}' is not a folder", "point it at shared/data")
        laid_out = [
            t.name for t in needing if all((root / f).is_file() for f in (t.eval_file, t.train_file) if f is not None)
        ]
        if not laid_out:
            return Check(
                "data", "failed", f"'{data_dir}' has no <task>/eval.jsonl files", "point --data-dir at shared/data"
            )
        missing = [t.name for t in needing if t.name not in laid_out]
        rest = f"; no files for {', '.join(missing)}" if missing else ""
        return Check("data", "ok", f"{data_dir}: {len(laid_out)} of {len(needing)} tasks laid out{rest}")
    why = hub.unreachable()
    if why is None:
        return Check("data", "ok", f"no --data-dir: tasks load from the hub ({hub.endpoint()} answers)")
    cached = [t.name for t in needing if hub.task_cached(t)]
    fix = "pass --data-dir ../shared/data (or set BENCH_DATA_DIR) to a folder laid out like shared/data"
    if not cached:
        return Check("data", "missing", f"no --data-dir, the hub is unreachable ({why}) and no task is cached", fix)
    return Check("data", "ok", f"no --data-dir, hub unreachable ({why}); cached: {', '.join(cached)}", fix)


def package_check(name: str, module: str, dist: str, fix: str, role: str) -> Check:
    """An optional package: installed (with its version) or missing."""
    if importlib.util.find_spec(module) is None:
        return Check(name, "missing", f"not installed ({role})", fix)
    return Check(name, "ok", f"{dist} {_version(dist) or '(version unknown)'} ({role})")


def environment_checks(data_dir: str | None) -> list[Check]:
    """Every check of a plain ``bench doctor``, in the order printed."""
    from bench.executors import EXTRAS

    out = [torch_check()]
    if not out[0].ok:
        return out
    out += [cuda_check(), gpu_check(), nvml_check(), bf16_check(), kernels_check(), models_check()]
    out.append(data_check(data_dir))
    out.append(package_check("lm-eval", "lm_eval", "lm-eval", "pip install 'lm-eval[hf]'", "for --evaluator lm-eval"))
    out.append(package_check("ray", "ray", "ray", EXTRAS["ray"][1], "for --executor ray"))
    out.append(package_check("submitit", "submitit", "submitit", EXTRAS["slurm"][1], "for --executor slurm"))
    return out
