"""Task registry: one file per suite (``toy.py``, ``glue.py``, ``commonsense.py``, ``arithmetic.py``).

To add a task: write a :class:`tasks._base.TaskConfig` in its suite's file and register it with
``TASKS.register(...)``; to add a suite, add a file and import it below. Task names are unique
lowercase identifiers; suite names select every task of the suite (``--tasks glue``).
"""

from __future__ import annotations

from bench.errors import UsageError
from bench.registry import TASKS, did_you_mean
from tasks import toy  # noqa: F401  (registers the toy suite)
from tasks._base import TaskConfig

get = TASKS.get
names = TASKS.names


def suites() -> dict[str, list[str]]:
    """Suite name -> its task names, in registration order."""
    out: dict[str, list[str]] = {}
    for task in TASKS:
        out.setdefault(task.suite, []).append(task.name)
    return out


def select(spec: str) -> list[TaskConfig]:
    """Resolve ``--tasks``: a comma list of task names, suite names, or ``all`` (not ``toy``)."""
    out: list[TaskConfig] = []
    by_suite = suites()
    for part in _split_list(spec, "--tasks"):
        if part == "all":
            picked = [t for t in TASKS if t.suite != "toy"]
        elif part in by_suite:
            picked = [TASKS.get(n) for n in by_suite[part]]
        elif part in TASKS:
            picked = [TASKS.get(part)]
        else:
            choices = [*TASKS.names(), *by_suite, "all"]
            raise UsageError(
                f"unknown task '{part}'{did_you_mean(part, choices)} "
                f"available: {', '.join(choices)}"
            )
        out.extend(t for t in picked if t not in out)
    return out


def _split_list(spec: str, flag: str) -> list[str]:
    parts = [p.strip() for p in spec.split(",")]
    if not spec.strip() or any(not p for p in parts):
        raise UsageError(f"{flag} '{spec}' is not a comma list of names; e.g. {flag} a,b")
    return parts
