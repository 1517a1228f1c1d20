"""Method registry: one file per method, ``methods/<name>.py``, in the order Config, Linear, Method.

To add a method: write ``methods/<name>.py`` with a frozen ``<Name>Config`` (validated in
``__post_init__``, with an ``lr`` field and its parameter-budget formula in the docstring) and a
class registered with ``@METHODS.register`` that implements :class:`methods._base.Method`;
then add its file stem to ``FILES`` below. Files starting with ``_`` hold shared code, not methods
(``_base``: the interface and free functions; ``_selection``: index selection; ``_kernels``: the
loader of C kernels shipped as ``methods/*.c``; ``_sparse_ops``: NeuroAda's gradient and scatter ops).
Code here imports only ``bench.errors``, ``bench.registry``, ``bench.config`` and ``bench.records``.
"""

from __future__ import annotations

import importlib

from bench.registry import METHODS
from methods._base import Method

# Explicit, ordered imports (no directory scanning): each file registers one method, and this
# order is the order of `bench ls` and of report rows.
FILES = ("base", "neuroada", "lora", "dora", "masked_sparse", "full_ft")
for _file in FILES:
    importlib.import_module(f"methods.{_file}")

get = METHODS.get
names = METHODS.names


def adapters() -> list[str]:
    """Methods that train part of the backbone (all but ``base``, the frozen backbone)."""
    return [n for n in names() if getattr(get(n), "trains_backbone", True)]


__all__ = ["Method", "adapters", "get", "names"]
