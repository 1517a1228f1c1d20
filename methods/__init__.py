"""Method registry: one file per method, ``methods/<name>.py``, in the order Config, Linear, Method.

To add a method: write ``methods/<name>.py`` with a frozen ``<Name>Config`` (validated in
``__post_init__``, with an ``lr`` field and its parameter-budget formula in the docstring) and a
class registered with ``@METHODS.register`` that implements :class:`methods._base.Method`;
then add its file stem to ``FILES`` below. Files starting with ``_`` hold shared code, not methods
(``_base``: the interface and free functions; ``_selection``: index selection; ``_kernels``: the
loader of C kernels shipped as ``methods/*.c``; ``_sparse_ops``: NeuroAda's gradient and scatter ops).

peft's methods come through one of them, ``peft_config`` (any peft config as a method): its named
presets are the files ``methods/peft_presets/<name>.json`` (to add one, add a file: a peft adapter
config with a ``peft_bench`` block), and ``--methods peft:PATH`` reads a user's config.
:func:`choose` turns a ``--methods`` entry into a :class:`Choice`: built-in name, preset name, or
``peft:PATH``.
Code here imports only ``bench.errors``, ``bench.registry``, ``bench.config`` and ``bench.records``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from bench.errors import UsageError
from bench.registry import METHODS, did_you_mean
from methods._base import Method

# Explicit, ordered imports (no directory scanning): each file registers one method, and this
# order is the order of `bench ls` and of report rows.
FILES = ("base", "neuroada", "lora", "dora", "masked_sparse", "full_ft", "peft_config")
for _file in FILES:
    importlib.import_module(f"methods.{_file}")

get = METHODS.get
names = METHODS.names


PEFT_GROUP = "peft"
"""``--methods peft``: every preset."""
PEFT_PREFIX = "peft:"


def builtins() -> list[str]:
    """The methods chosen by their own name, what ``--methods all`` means (not ``peft_config``,
    which comes through its presets and ``peft:PATH``)."""
    return [n for n in names() if getattr(get(n), "selectable", True)]


def adapters() -> list[str]:
    """Built-in methods that train part of the backbone (all but ``base``, the frozen backbone)."""
    return [n for n in builtins() if getattr(get(n), "trains_backbone", True)]


def presets() -> list[str]:
    """The named peft presets (``methods/peft_presets/*.json``)."""
    from methods.peft_config import presets as preset_names

    return preset_names()


@dataclass(frozen=True)
class Choice:
    """One ``--methods`` entry resolved: the name in tables, the registered method, its config."""

    name: str
    """The label's base: the built-in's or preset's name, or the peft config's name."""
    method: str
    """The registered method that runs it (``peft_config`` for presets and peft:PATH)."""
    config: dict[str, Any] = field(default_factory=dict)
    """Config fields the choice sets before ``--set`` (a preset's peft config and rate); {} for built-ins."""


def choose(entry: str) -> list[Choice]:
    """A ``--methods`` entry: a built-in, a preset, ``peft:PATH``, ``all`` (the built-ins) or ``peft``
    (every preset). Raises ``UsageError`` with "did you mean" for an unknown name."""
    from methods import peft_config

    if entry.startswith(PEFT_PREFIX):
        label, config = peft_config.from_path(entry[len(PEFT_PREFIX) :], reserved=names())
        return [Choice(label, "peft_config", config)]
    if entry == "all":
        return [Choice(n, n) for n in builtins()]
    if entry == PEFT_GROUP:
        return [Choice(n, "peft_config", peft_config.from_preset(n)) for n in presets()]
    if entry in builtins():
        return [Choice(entry, entry)]
    if entry in presets():
        return [Choice(entry, "peft_config", peft_config.from_preset(entry))]
    choices = [*builtins(), *presets(), "all", PEFT_GROUP]
    hint = "; peft_config runs through a preset or peft:PATH" if entry == "peft_config" else ""
    raise UsageError(
        f"unknown method '{entry}'{did_you_mean(entry, choices)}{hint} available: {', '.join(choices)}, "
        "or peft:PATH (a peft adapter_config.json)"
    )


def owner(cfg: Any) -> Method:
    """The registered method whose config class ``cfg`` is."""
    for name in names():
        if type(cfg) is get(name).config_cls:
            return get(name)
    raise UsageError(f"no method takes a {type(cfg).__name__}")


__all__ = ["Choice", "Method", "adapters", "builtins", "choose", "get", "names", "owner", "presets"]
