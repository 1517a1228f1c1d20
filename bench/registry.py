"""A small generic registry with "did you mean" errors (after lm_eval's ``api/registry.py``).

``METHODS`` and ``TASKS`` are the two registries of the project. They are filled by importing
the ``methods`` and ``tasks`` packages, whose ``__init__`` imports every method or task file
explicitly; use ``methods.get(name)`` / ``tasks.get(name)`` rather than these objects directly.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from typing import Generic, TypeVar

from bench.errors import UsageError

T = TypeVar("T")

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class UnknownNameError(UsageError, KeyError):
    """Raised by :meth:`Registry.get` for a name that is not registered."""

    def __str__(self) -> str:  # KeyError would otherwise wrap the message in quotes
        return str(self.args[0])


def did_you_mean(name: str, choices: list[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


class Registry(Generic[T]):
    """Name -> object, in registration order. Names are lowercase identifiers."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, obj: T) -> T:
        """Register ``obj`` under ``obj.name``; usable as a decorator on a class (instantiated)."""
        instance = obj() if isinstance(obj, type) else obj
        name = getattr(instance, "name", None)
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"{self.kind} name {name!r} must match {_NAME.pattern}")
        if name in self._items:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._items[name] = instance
        return obj

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            names = self.names()
            raise UnknownNameError(
                f"unknown {self.kind} '{name}'{did_you_mean(name, names)} available: {', '.join(names)}"
            ) from None

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(self._items.values())

    def __len__(self) -> int:
        return len(self._items)


METHODS: Registry = Registry("method")
TASKS: Registry = Registry("task")
