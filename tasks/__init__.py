"""Task registry: one file per suite (``toy.py``, ``glue.py``, ``commonsense.py``, ``arithmetic.py``).

To add a task: write a :class:`tasks._base.TaskConfig` in its suite's file (with its table label
``display_name`` and a ``higher_is_better`` entry for every metric) and register it with
``TASKS.register(...)``; to add a suite, add a file and import it below (and, for a table
heading other than its name, an entry in :data:`SUITE_TITLES`). Task names are unique
lowercase identifiers; suite names select every task of the suite (``--tasks glue``).
:func:`with_protocol` (``tasks/protocols.py``) gives a task under another scoring protocol
(``loreft``: the official NeuroAda/LoReFT scripts'), as ``Budget.protocol`` asks.

``--tasks all`` is the 23 tasks of the papers, in their column order (commonsense 8, arithmetic
7, glue 8): import order is registration order. It leaves out the suites of
:data:`NOT_IN_ALL`: ``toy`` (tests) and ``commonsense_mc`` (loglik variants of six commonsense
tasks, which would otherwise run those tasks twice); name them to run them.
"""

from __future__ import annotations

from bench.errors import UsageError
from bench.registry import TASKS, did_you_mean
from tasks import toy  # noqa: F401  (registers the toy suite)
from tasks._base import TaskConfig

# isort: off
# Registration order is the order of `--tasks all` and of the tables: keep the papers' order.
from tasks import commonsense  # noqa: F401  (suites commonsense and commonsense_mc)
from tasks import arithmetic  # noqa: F401
from tasks import glue  # noqa: F401

# isort: on
from tasks.protocols import with_protocol  # noqa: F401  (Budget.protocol: a task under another prompt and scoring)

NOT_IN_ALL = ("toy", "commonsense_mc")
"""Suites that ``--tasks all`` leaves out."""

SUITE_TITLES: dict[str, str] = {
    "commonsense": "Commonsense reasoning",
    "arithmetic": "Arithmetic reasoning",
    "glue": "GLUE",
}
"""Table headings of the papers' suites; other suites are titled by their name (:func:`suite_title`)."""

PAPER_SUITES = ("commonsense", "arithmetic", "glue")
"""The papers' suites, in their table order."""

PAPER_ORDER = (
    # commonsense (LLM-Adapters, LoReFT, NeuroAda)
    *("boolq", "piqa", "siqa", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "openbookqa"),
    # arithmetic (LoReFT's column order; the registry keeps NeuroAda's, see tasks/arithmetic.py)
    *("gsm8k", "svamp", "aqua", "mawps", "addsub", "multiarith", "singleeq"),
    # glue
    *("glue_cola", "glue_sst2", "glue_mrpc", "glue_qqp", "glue_stsb", "glue_mnli", "glue_qnli", "glue_rte"),
)
"""The 23 paper tasks in the papers' column order (commonsense, arithmetic, GLUE)."""

get = TASKS.get
names = TASKS.names


def per_task_train(task: TaskConfig) -> TaskConfig:
    """``task`` trained on its own train file instead of its suite's shared mixture (where it has
    one); tasks that already train per task are returned unchanged."""
    if task.suite == "commonsense":
        return commonsense.per_task_train(task)
    if task.suite == "arithmetic":
        return arithmetic.per_task_train(task)
    return task


def suites() -> dict[str, list[str]]:
    """Suite name -> its task names, in registration order."""
    out: dict[str, list[str]] = {}
    for task in TASKS:
        out.setdefault(task.suite, []).append(task.name)
    return out


def suite_order() -> list[str]:
    """Every registered suite: :data:`PAPER_SUITES` first, then the others in registration order."""
    return [*PAPER_SUITES, *(s for s in suites() if s not in PAPER_SUITES)]


def suite_title(suite: str) -> str:
    """A suite's table heading: :data:`SUITE_TITLES`, else the suite name."""
    return SUITE_TITLES.get(suite, suite)


def paper_order() -> list[str]:
    """The 23 paper tasks in the papers' column order (:data:`PAPER_ORDER`).

    :func:`names` differs in the arithmetic suite only, which registers in NeuroAda's order.
    """
    return list(PAPER_ORDER)


def display_name(name: str) -> str:
    """The table label of task ``name`` (:attr:`TaskConfig.display_name`); unknown names as given."""
    return TASKS.get(name).display_name if name in TASKS else name


def select(spec: str) -> list[TaskConfig]:
    """Resolve ``--tasks``: a comma list of task names, suite names, or ``all`` (not the suites
    of :data:`NOT_IN_ALL`), in the order given, without duplicates."""
    out: list[TaskConfig] = []
    by_suite = suites()
    for part in _split_list(spec, "--tasks"):
        if part == "all":
            picked = [t for t in TASKS if t.suite not in NOT_IN_ALL]
        elif part in by_suite:
            picked = [TASKS.get(n) for n in by_suite[part]]
        elif part in TASKS:
            picked = [TASKS.get(part)]
        else:
            choices = [*TASKS.names(), *by_suite, "all"]
            raise UsageError(f"unknown task '{part}'{did_you_mean(part, choices)} available: {', '.join(choices)}")
        out.extend(t for t in picked if t not in out)
    return out


def _split_list(spec: str, flag: str) -> list[str]:
    parts = [p.strip() for p in spec.split(",")]
    if not spec.strip() or any(not p for p in parts):
        raise UsageError(f"{flag} '{spec}' is not a comma list of names; e.g. {flag} a,b")
    return parts
