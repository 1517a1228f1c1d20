"""The C kernel loader (``methods/_kernels.py``): compile once into the cache, hit the cache after,
fall back (``None``) when disabled by either environment name, or with a warning when it cannot build.

A one-function C file keeps the builds fast; the last tests load NeuroAda's real kernels.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

from methods import _kernels, _sparse_ops

TINY_SOURCE = "int tiny_add3(int a) { return a + 3; }\n"
ARGTYPES = {"tiny_add3": [ctypes.c_int]}
SWITCH = "BENCH_TINY_KERNEL"
REPO = Path(__file__).resolve().parents[2]
needs_cc = pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler (cc or gcc) on PATH"
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty kernel cache, and no kernel switches from the caller's environment."""
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    for var in (SWITCH, f"PEFT_{SWITCH}", "BENCH_NEUROADA_KERNEL", "PEFT_BENCH_NEUROADA_KERNEL"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "cache" / "kernels"


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "tiny_kernels.c"
    path.write_text(TINY_SOURCE)
    return path


def _no_compiler_call(*args, **kwargs):
    raise AssertionError(f"the compiler ran: {args}")


@needs_cc
def test_compiles_once_into_the_cache(cache, source):
    lib = _kernels.load(source, ARGTYPES, switch=SWITCH)
    assert lib is not None and lib.tiny_add3(4) == 7
    built = sorted(p.name for p in cache.iterdir())
    assert len(built) == 1 and built[0].startswith("tiny_kernels_") and built[0].endswith(".so")
    assert len(built[0]) == len("tiny_kernels_") + 16 + len(".so")  # 16 hex digits of the key
    assert cache / built[0] == _kernels.library_path(source, TINY_SOURCE, _kernels.FLAG_SETS[0])


@needs_cc
def test_a_cache_hit_does_not_compile(cache, source, monkeypatch):
    assert _kernels.load(source, ARGTYPES, switch=SWITCH) is not None
    monkeypatch.setattr(subprocess, "run", _no_compiler_call)
    lib = _kernels.load(source, ARGTYPES, switch=SWITCH)
    assert lib is not None and lib.tiny_add3(-3) == 0


def test_the_key_covers_source_and_flags(source):
    flags = _kernels.FLAG_SETS[0]
    path = _kernels.library_path(source, TINY_SOURCE, flags)
    assert path == _kernels.library_path(source, TINY_SOURCE, flags)
    assert path != _kernels.library_path(source, TINY_SOURCE + "\n", flags)
    assert path != _kernels.library_path(source, TINY_SOURCE, _kernels.FLAG_SETS[1])


@pytest.mark.parametrize("var", [SWITCH, f"PEFT_{SWITCH}"])  # the new name and the older one
def test_disabled_by_either_name_without_warning(var, cache, source, monkeypatch):
    monkeypatch.setenv(var, "0")
    monkeypatch.setattr(subprocess, "run", _no_compiler_call)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _kernels.load(source, ARGTYPES, switch=SWITCH) is None
    assert not _kernels.enabled(SWITCH)
    assert not cache.exists()


def test_any_other_value_keeps_it_enabled(monkeypatch):
    monkeypatch.setenv(SWITCH, "1")
    monkeypatch.setenv(f"PEFT_{SWITCH}", "")
    assert _kernels.enabled(SWITCH)


def test_no_compiler_warns_and_falls_back(cache, source, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.warns(UserWarning, match=r"tiny: C kernels unavailable \(no C compiler \(cc or gcc\) on PATH\)"):
        assert _kernels.load(source, ARGTYPES, switch=SWITCH) is None


@needs_cc
def test_a_compile_error_warns_with_the_compiler_message(cache, source):
    source.write_text("int tiny_add3(int a) { return a + ; }\n")
    with pytest.warns(UserWarning, match=r"(?s)tiny: C kernels unavailable \(.*error: expected expression"):
        assert _kernels.load(source, ARGTYPES, switch=SWITCH) is None


def test_a_missing_source_warns_to_reinstall(cache, tmp_path):
    with pytest.warns(UserWarning, match="reinstall peft-bench"):
        assert _kernels.load(tmp_path / "gone_kernels.c", ARGTYPES, switch=SWITCH) is None


# ---------------------------------------------------------------------------------------------
# NeuroAda's kernels
# ---------------------------------------------------------------------------------------------
def test_neuroada_source_is_package_data():
    assert _sparse_ops.KERNEL_SOURCE == REPO / "methods" / "neuroada_kernels.c"
    assert _sparse_ops.KERNEL_SOURCE.is_file()
    pyproject = (REPO / "pyproject.toml").read_text()  # text, not tomllib: Python 3.10 has none
    section = pyproject.split("[tool.setuptools.package-data]\n", 1)[1].split("\n[", 1)[0]
    [line] = [x for x in section.splitlines() if x.startswith("methods = ")]
    assert '"*.c"' in line.split("=", 1)[1].strip(" []").split(", ")


@pytest.fixture
def fresh_neuroada_kernel():
    _sparse_ops._kernel.cache_clear()
    yield
    _sparse_ops._kernel.cache_clear()  # the next test loads the machine's kernels again


@needs_cc
def test_neuroada_kernels_build_with_every_function(cache, fresh_neuroada_kernel):
    lib = _sparse_ops._kernel()
    assert lib is not None
    assert all(getattr(lib, name).argtypes for name in _sparse_ops._ARGTYPES)
    assert [p.name.startswith("neuroada_kernels_") for p in cache.iterdir()] == [True]


@pytest.mark.parametrize("var", ["BENCH_NEUROADA_KERNEL", "PEFT_BENCH_NEUROADA_KERNEL"])
def test_neuroada_kernels_disabled_by_either_name(var, cache, fresh_neuroada_kernel, monkeypatch):
    monkeypatch.setenv(var, "0")
    assert _sparse_ops._kernel() is None
