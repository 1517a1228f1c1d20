"""The machine checks of ``bench doctor`` on this (CPU) machine and on prepared folders: each line's
status and fix, without the network (the conftest sets HF_HUB_OFFLINE)."""

from __future__ import annotations

import pytest
import torch

import tasks
from bench import checks
from bench.checks import Check
from methods import _sparse_ops

HUB_TASKS = [t for t in tasks.select("all") if t.generator is None]


def test_a_line_shows_the_fix_unless_ok():
    assert Check("ray", "ok", "ray 2.0", "pip install ray").line() == "ok       ray            ray 2.0"
    assert Check("ray", "missing", "not installed", "pip install ray").line() == (
        "missing  ray            not installed; fix: pip install ray"
    )


def test_torch_names_its_build():
    check = checks.torch_check()
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
    assert (check.status, check.detail.split(", Python")[0]) == ("ok", f"{torch.__version__} ({build})")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_without_cuda_the_gpu_lines_are_missing_with_a_fix():
    cuda, gpu, bf16 = checks.cuda_check(), checks.gpu_check(), checks.bf16_check()
    assert [c.status for c in (cuda, gpu, bf16)] == ["missing"] * 3
    if not torch.version.cuda:
        assert cuda.detail == f"torch {torch.__version__} is a CPU-only build"
        assert cuda.fix == checks.CUDA_TORCH
    assert gpu.detail == "no GPU visible to torch"


def test_a_cuda_build_that_sees_no_gpu_names_cuda_visible_devices(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", "12.6")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    check = checks.cuda_check()
    assert check.status == "missing"
    assert check.detail == f"torch {torch.__version__} has CUDA 12.6 but sees no GPU (CUDA_VISIBLE_DEVICES='')"


def test_nvml_without_pynvml_is_missing(monkeypatch):
    monkeypatch.setattr(checks, "_version", lambda dist: None)
    monkeypatch.setattr(checks.importlib.util, "find_spec", lambda name: None)
    assert checks.nvml_check() == Check("nvml", "missing", "pynvml is not installed", "pip install nvidia-ml-py")


def test_kernels_turned_off_are_missing(monkeypatch):
    monkeypatch.setenv("BENCH_NEUROADA_KERNEL", "0")
    check = checks.kernels_check()
    assert (check.status, check.detail) == ("missing", "turned off (BENCH_NEUROADA_KERNEL=0)")


def test_kernels_without_a_compiler_are_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))  # nothing built yet
    monkeypatch.setattr("shutil.which", lambda name: None)
    try:
        check = checks.kernels_check()
    finally:
        _sparse_ops._kernel.cache_clear()  # the next caller builds (or finds) the real kernels
    assert (check.status, check.fix) == ("missing", "install gcc")


def test_data_dir_counts_the_tasks_laid_out(tmp_path):
    assert checks.data_check(str(tmp_path / "nope")).status == "failed"
    assert checks.data_check(str(tmp_path)).status == "failed"  # a folder without task files
    (tmp_path / "glue_sst2").mkdir()
    for name in ("train.jsonl", "eval.jsonl"):
        (tmp_path / "glue_sst2" / name).write_text('{"sentence": "a", "label": 0}\n')
    check = checks.data_check(str(tmp_path))
    assert check.status == "ok"
    assert check.detail.startswith(f"{tmp_path}: 1 of {len(HUB_TASKS)} tasks laid out; no files for boolq, piqa")


def test_no_data_dir_offline_and_nothing_cached_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path))
    check = checks.data_check(None)
    assert check.status == "missing"
    assert check.detail == "no --data-dir, the hub is unreachable (HF_HUB_OFFLINE=1 is set) and no task is cached"
    assert check.fix.startswith("pass --data-dir")


def test_no_data_dir_with_a_reachable_hub_is_ok(monkeypatch):
    monkeypatch.setattr("bench.hub.unreachable", lambda: None)
    assert checks.data_check(None).status == "ok"


def test_an_optional_package_is_missing_or_has_a_version():
    assert checks.package_check("x", "no_such_module_here", "x", "pip install x", "for y") == Check(
        "x", "missing", "not installed (for y)", "pip install x"
    )
    check = checks.package_check("torch", "torch", "torch", "", "the engine")
    assert (check.status, check.detail) == ("ok", f"torch {torch.__version__} (the engine)")


def test_environment_checks_are_one_of_each():
    names = [c.name for c in checks.environment_checks(None)]
    assert names == ["torch", "cuda", "gpu", "nvml", "bf16", "kernels", "models", "data", "lm-eval", "ray", "submitit"]
