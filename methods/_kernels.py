"""C kernels shipped as package data (``methods/*.c``), compiled once per machine with the system compiler.

:func:`load` builds a C file with ``$CC`` (else ``cc``, else ``gcc``) into
``<bench.config.cache_dir()>/kernels/<stem>_<hash>.so`` and opens it with ctypes. The hash covers
the source, the flags, the CPU's feature flags and the machine type, since ``-march=native`` code
must not run on another CPU: an edited kernel or another machine compiles anew, anything else is a
cache hit. Flags go from fastest to most portable (:data:`FLAG_SETS`). Without a compiler, or when
every build fails, ``load`` warns and returns ``None``, and the caller uses torch ops instead.

``BENCH_<NAME>_KERNEL=0`` disables a kernel without a warning (the older spelling
``PEFT_BENCH_<NAME>_KERNEL=0`` still works).

To add a kernel: put ``<name>.c`` next to this file (pyproject's package-data ships ``methods/*.c``)
and load it from the method's code once, behind ``functools.cache``:
``load(Path(__file__).with_name("<name>.c"), {"fn": [ctypes.c_void_p, ...]}, switch="BENCH_<NAME>_KERNEL")``.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.config import cache_dir

FLAG_SETS = (("-O3", "-march=native", "-fopenmp"), ("-O3", "-march=native"), ("-O2",))
"""Tried in order: OpenMP threads, then one thread, then code for any CPU of the architecture."""


def enabled(switch: str) -> bool:
    """False when ``$switch`` or its older spelling ``$PEFT_<switch>`` is ``0``."""
    return all(os.environ.get(var, "1") != "0" for var in (switch, f"PEFT_{switch}"))


def load(source: Path, argtypes: Mapping[str, Sequence[type]], *, switch: str) -> ctypes.CDLL | None:
    """The compiled ``source`` with ``argtypes`` set on its functions; ``None`` when disabled
    through ``switch`` or when it cannot be built (with a warning)."""
    if not enabled(switch):
        return None
    try:
        text = source.read_text()
    except OSError as err:
        return _unavailable(source, f"{err.strerror}: {source}; reinstall peft-bench (the .c file is package data)")
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    last_error = "no C compiler (cc or gcc) on PATH"
    for flags in FLAG_SETS:
        lib_path = library_path(source, text, flags)
        try:
            if not lib_path.exists():
                if cc is None:
                    break
                _compile(cc, source.name, text, flags, lib_path)
            lib = ctypes.CDLL(str(lib_path))
        except (OSError, subprocess.CalledProcessError) as err:
            last_error = getattr(err, "stderr", b"").decode(errors="replace")[-300:] or str(err)
            continue
        for name, types in argtypes.items():
            getattr(lib, name).argtypes = list(types)
        return lib
    return _unavailable(source, last_error)


def library_path(source: Path, text: str, flags: Sequence[str]) -> Path:
    """Where the library built from ``text`` with ``flags`` on this CPU is cached."""
    key_parts = [text, *flags, _cpu_flags(), platform.machine()]
    key = hashlib.sha256("\0".join(key_parts).encode()).hexdigest()[:16]
    return cache_dir() / "kernels" / f"{source.stem}_{key}.so"


def _cpu_flags() -> str:
    try:
        return next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
    except OSError:
        return platform.processor()


def _compile(cc: str, name: str, text: str, flags: Sequence[str], lib_path: Path) -> None:
    lib_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=lib_path.parent) as tmp:
        src, out = Path(tmp) / name, Path(tmp) / "kernel.so"
        src.write_text(text)
        subprocess.run([cc, *flags, "-shared", "-fPIC", str(src), "-o", str(out)], check=True, capture_output=True)
        os.replace(out, lib_path)  # atomic: concurrent builders race harmlessly


def _unavailable(source: Path, reason: str) -> None:
    method = source.stem.removesuffix("_kernels")  # neuroada_kernels.c -> "neuroada: ..."
    warnings.warn(f"{method}: C kernels unavailable ({reason.strip()}); using torch ops (slower on CPU)", stacklevel=3)
