"""Method registry: one file per method, ``methods/<name>.py``, in the order Config, Linear, Method.

To add a method: write ``methods/<name>.py`` with a frozen ``<Name>Config`` (validated in
``__post_init__``, with an ``lr`` field and its parameter-budget formula in the docstring) and a
class registered with ``@METHODS.register`` that implements :class:`methods._base.Method`;
then import it below. Files starting with ``_`` hold shared code, not methods.
"""

from __future__ import annotations

from bench.registry import METHODS
from methods import full_ft  # noqa: F401  (each import registers one method)
from methods._base import Method

get = METHODS.get
names = METHODS.names

__all__ = ["Method", "get", "names"]
