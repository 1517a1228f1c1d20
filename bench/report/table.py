"""The tables as data: the main table (methods x tasks, suite averages, intervals and significance,
the budget caption, fairness warnings and notes), the cost table's means, and the row and column
orders.

Columns follow the task registry: suites in :func:`tasks.suite_order`, tasks in registration
order (``tasks.names()``), unregistered tasks after, first seen. Rows: :data:`METHOD_ORDER`.

Each cell is the mean over seeds with its 95% confidence interval (bench.stats: a bootstrap
over items, and over seeds when there are several); a cell is marked best (bold) when its method
is not significantly worse than the column's best in a paired test on the same items and seeds
(:mod:`bench.report.significance`), and ``↑``/``↓`` when it is significantly above/below
``base``. Suite averages carry intervals, not tests. A task's runs that differ in any budget field or in
:data:`FAIRNESS_KEYS` are named in a warning.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

import tasks
from bench import stats
from bench.report.frame import comparable, shown_in
from bench.report.significance import TaskStats, base_mark, task_stats, wins_ties_losses

METHOD_ORDER = ("base", "full_ft", "lora", "dora", "masked_sparse", "neuroada")
"""Row order: the frozen backbone first, then the baselines, then the sparse methods; labels of
one method (``neuroada@k=4``, ``neuroada@k=16``) in natural order; unknown methods after."""

FAIRNESS_KEYS = ("model", "dtype", "task_version", "protocol", "metric", "evaluator", "train_file")
"""Besides every ``run.budget`` field, what must match between runs compared on one task."""


# ---------------------------------------------------------------------------------------------
# Orders
# ---------------------------------------------------------------------------------------------
def task_order(seen: Sequence[str]) -> list[str]:
    """``seen`` tasks in registry order, then the unregistered ones in first-seen order.

    Suites are grouped afterwards (:func:`column_groups`), so this order matters within a suite.
    """
    registered = {t: i for i, t in enumerate(tasks.names())}
    first = {t: i for i, t in enumerate(dict.fromkeys(seen))}
    return sorted(first, key=lambda t: (0, registered[t]) if t in registered else (1, first[t]))


def _natural(text: str) -> list[Any]:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text) if part]


def method_order(df: pd.DataFrame) -> list[str]:
    """Method labels: :data:`METHOD_ORDER` by base method, labels of one method naturally."""
    first: dict[str, int] = {}
    base: dict[str, str] = {}
    for label, name in zip(df["method"], df["method_name"], strict=True):
        first.setdefault(label, len(first))
        base.setdefault(label, name if isinstance(name, str) and name else label.split("@")[0])

    def key(label: str) -> tuple:
        b = base[label]
        rank = METHOD_ORDER.index(b) if b in METHOD_ORDER else len(METHOD_ORDER) + first[label]
        return (rank, _natural(label))

    return sorted(first, key=key)


def _suite_of(df: pd.DataFrame, task: str) -> str:
    suites = df.loc[df["task"] == task, "suite"].dropna()
    return str(suites.iloc[0]) if len(suites) else "other"


def column_groups(df: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """``[(suite, [tasks...]), ...]``: suites in :func:`tasks.suite_order`, then first seen."""
    groups: dict[str, list[str]] = {}
    for task in task_order(list(df["task"])):
        groups.setdefault(_suite_of(df, task), []).append(task)
    known = {s: i for i, s in enumerate(tasks.suite_order())}
    first = {s: i for i, s in enumerate(groups)}
    suites = sorted(groups, key=lambda s: (0, known[s]) if s in known else (1, first[s]))
    return [(s, groups[s]) for s in suites]


# ---------------------------------------------------------------------------------------------
# Numbers shown
# ---------------------------------------------------------------------------------------------
def missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def pct(value: float | None) -> str:
    """A percentage: two decimals from 1 up, three significant digits below."""
    if missing(value):
        return "–"
    return f"{value:.2f}" if value >= 1 else f"{value:.3g}"


def mean_std(mean: float | None, std: float | None, digits: int, pm: str = " ± ") -> str:
    if missing(mean):
        return "–"
    if not missing(std):
        return f"{mean:.{digits}f}{pm}{std:.{digits}f}"
    return f"{mean:.{digits}f}"


def mean_or_none(values: pd.Series) -> float | None:
    values = values.dropna().astype(float)
    return float(values.mean()) if len(values) else None


def _pct_range(values: pd.Series) -> str:
    shown = list(dict.fromkeys(pct(v) for v in sorted(values.dropna().astype(float))))
    return "–" if not shown else shown[0] if len(shown) == 1 else f"{shown[0]}–{shown[-1]}"


def _digits(values: Iterable[float]) -> int:
    values = [v for v in values if not missing(v)]
    return 3 if values and all(-1.0 <= v <= 1.0 for v in values) else 1


# ---------------------------------------------------------------------------------------------
# The main table
# ---------------------------------------------------------------------------------------------
@dataclass
class Column:
    key: str
    """Task name, or ``avg:<suite>``."""
    suite: str
    metric: str | None
    higher_is_better: bool
    digits: int
    is_average: bool = False


@dataclass
class Cell:
    mean: float
    std: float | None
    n: int
    contaminated: bool = False
    """Some run trained on a file that holds this task's eval problems (``run.contaminated_by``)."""
    low: float | None = None
    high: float | None = None
    """The 95% confidence interval (bench.stats); None without per-item results."""
    best: bool = False
    """Not significantly worse than the column's best (the best included): shown in bold."""
    mark: str = ""
    """``↑``/``↓``: significantly above/below ``base`` on this task."""


@dataclass
class MainTable:
    methods: list[str]
    columns: list[Column]
    groups: list[tuple[str, list[Column]]]
    cells: dict[tuple[str, str], Cell]
    trainable_pct: dict[str, float | None]
    """Mean over the method's runs (tasks may use different models)."""
    trainable_text: dict[str, str]
    """As shown: one value, or ``min–max`` where the method's runs differ (different models)."""
    seeds: dict[str, str]
    budget_lines: list[str]
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stats: dict[str, TaskStats] = field(default_factory=dict)
    """Per task: intervals and paired tests (bench.report.significance)."""
    wtl: pd.DataFrame = field(default_factory=pd.DataFrame)
    """Methods x methods: wins/ties/losses over tasks (significant differences only)."""
    matched: list[str] = field(default_factory=list)
    """Caption lines of ``--match-params`` runs ("matched to N parameters")."""


def _task_column(
    sub: pd.DataFrame, task: str, suite: str, methods: list[str], cells: dict
) -> tuple[Column, TaskStats]:
    """The column of ``task`` (its comparable runs ``sub``): cells with intervals, bold for the
    methods not significantly worse than the best, and marks against ``base``."""
    higher = bool(sub["higher_is_better"].iloc[0])
    ts = task_stats(sub, task, higher)
    col_cells = []
    for m in methods:
        mine = sub[sub["method"] == m]
        scores = mine["score"].astype(float)
        if len(scores):
            std = float(scores.std()) if len(scores) > 1 else None
            cell = Cell(float(scores.mean()), std, len(scores), contaminated=bool(mine["contaminated"].any()))
            if m in ts.intervals:
                cell.low, cell.high = ts.intervals[m].low, ts.intervals[m].high
                cell.best = len(ts.intervals) > 1 and ts.tied_with_best(m, higher)
                cell.mark = base_mark(ts, m, higher)
            cells[(m, task)] = cell
            col_cells.append(cell)
    col = Column(task, suite, sub["metric"].iloc[0], higher, _digits(c.mean for c in col_cells))
    return col, ts


def _average_column(
    suite: str, group: list[Column], methods: list[str], cells: dict, notes: list[str], per_task: dict
) -> Column | None:
    """The suite's average over the tasks every method has; None for a one-task suite."""
    if len(group) < 2:
        return None
    directions = {c.higher_is_better for c in group}
    if len(directions) > 1:
        notes.append(f"No {suite} average: its metrics differ in direction.")
        return None
    common = [c for c in group if all((m, c.key) in cells for m in methods)]
    left_out = [c.key for c in group if c not in common]
    key = f"avg:{suite}"
    avg = Column(key, suite, None, directions.pop(), 1, is_average=True)
    if not common:
        notes.append(f"avg {suite}: no task of the suite has a result for every method.")
        return avg
    avg_cells = []
    for m in methods:
        parts = [cells[(m, c.key)] for c in common]
        cell = Cell(sum(p.mean for p in parts) / len(parts), None, 0, contaminated=any(p.contaminated for p in parts))
        scores = [per_task[c.key].scores.get(m) for c in common]
        if all(s is not None for s in scores):  # resample each task's items (and seeds) independently
            interval = stats.average_interval([(s.matrix, s.refs, s.metric) for s in scores])
            cell.low, cell.high = interval.low, interval.high
        cells[(m, key)] = cell
        avg_cells.append(cell)
    avg.digits = _digits(c.mean for c in avg_cells)
    note = f"avg {suite}: mean of the per-task means over {', '.join(c.key for c in common)}"
    note += " (the tasks with a result for every method)"
    note += f"; left out: {', '.join(left_out)}." if left_out else "."
    notes.append(note)
    return avg


def _closing_notes(ok: pd.DataFrame, columns: list[Column], methods: list[str], cells: dict) -> list[str]:
    """Contamination, unknown metric directions, dirty trees and mixed commits."""
    notes = []
    flagged = [
        c.key
        for c in columns
        if not c.is_average and any((m, c.key) in cells and cells[(m, c.key)].contaminated for m in methods)
    ]
    if flagged:
        notes.append(
            f"†: trained on a file that contains eval problems of {', '.join(flagged)} "
            "(the task's contaminated_by); averages that include such a task carry † too."
        )
    unknown = sorted(set(ok.loc[~ok["direction_known"].astype(bool), "metric"].dropna()))
    if unknown:
        notes.append(f"Direction unknown for metric(s) {', '.join(unknown)}: taken as higher is better.")
    dirty = int(ok["git_dirty"].fillna(False).astype(bool).sum())
    if dirty:
        notes.append(f"{dirty} of {len(ok)} runs came from a git tree with uncommitted changes.")
    shas = ok["git_sha"].dropna().unique()
    if len(shas) > 1:
        notes.append(f"Runs come from {len(shas)} different git commits.")
    return notes


def main_table(df: pd.DataFrame) -> MainTable:
    """The paper's table from the comparable runs of ``df`` (see :func:`comparable`)."""
    ok = comparable(df)
    methods = method_order(ok)
    cells: dict[tuple[str, str], Cell] = {}
    columns: list[Column] = []
    groups: list[tuple[str, list[Column]]] = []
    notes: list[str] = []
    per_task: dict[str, TaskStats] = {}
    for suite, suite_tasks in column_groups(ok):
        group = []
        for task in suite_tasks:
            col, per_task[task] = _task_column(ok[ok["task"] == task], task, suite, methods, cells)
            group.append(col)
            notes += per_task[task].notes
        average = _average_column(suite, group, methods, cells, notes, per_task)
        if average is not None:
            group.append(average)
        columns += group
        groups.append((suite, group))
    notes += _closing_notes(ok, columns, methods, cells)
    trainable = {m: mean_or_none(ok.loc[ok["method"] == m, "trainable_pct"]) for m in methods}
    trainable_text = {m: _pct_range(ok.loc[ok["method"] == m, "trainable_pct"]) for m in methods}
    seeds = {}
    for m in methods:
        counts = [cells[(m, c.key)].n for c in columns if not c.is_average and (m, c.key) in cells]
        lo, hi = (min(counts), max(counts)) if counts else (0, 0)
        seeds[m] = str(lo) if lo == hi else f"{lo}–{hi}"
    budget_lines, warnings = budget_summary(ok)
    directions = {c.key: c.higher_is_better for c in columns if not c.is_average}
    wtl = wins_ties_losses({t: (ts, directions[t]) for t, ts in per_task.items()}, methods)
    table = MainTable(methods, columns, groups, cells, trainable, trainable_text, seeds, budget_lines, warnings, notes)
    table.stats, table.wtl, table.matched = per_task, wtl, matched_budget_lines(df)
    return table


# -- budget caption and fairness warnings -----------------------------------------------------
def _budget_text(row: pd.Series) -> str:
    parts = []
    if pd.notna(row["max_steps"]) and pd.notna(row["batch_size"]):
        micro = f" (micro-batch {int(row['micro_batch_size'])})" if pd.notna(row["micro_batch_size"]) else ""
        epochs = (json.loads(row["budget"]) if isinstance(row["budget"], str) else {}).get("epochs")
        over = f" ({epochs:g} epochs)" if isinstance(epochs, (int, float)) else ""
        parts.append(f"{int(row['max_steps'])} steps{over} × {int(row['batch_size'])} examples{micro}")
    if pd.notna(row["max_length"]):
        parts.append(f"max length {int(row['max_length'])}")
    if row["dtype"] is not None and not pd.isna(row["dtype"]):
        parts.append(str(row["dtype"]))
    if row["gradient_checkpointing"] is not None and not pd.isna(row["gradient_checkpointing"]):
        parts.append("gradient checkpointing " + ("on" if row["gradient_checkpointing"] else "off"))
    if row["model"] is not None and not pd.isna(row["model"]):
        parts.append(f"model {row['model']}")
    return ", ".join(parts) or "unknown budget"


def _differences(sub: pd.DataFrame) -> list[str]:
    """``field (value: methods; value: methods)`` for each field in which the runs differ."""
    budgets = [json.loads(b) if isinstance(b, str) else {} for b in sub["budget"]]
    fields = sorted({k for b in budgets for k in b})
    values = {f: [b.get(f) for b in budgets] for f in fields}
    for key in FAIRNESS_KEYS:
        values[key] = list(sub[key])
    diffs = []
    for name, vals in values.items():
        by_value: dict[str, list[str]] = {}
        for v, m in zip(vals, sub["method"], strict=True):
            methods = by_value.setdefault(json.dumps(v), [])
            if m not in methods:
                methods.append(m)
        if len(by_value) > 1:
            listed = "; ".join(f"{v}: {', '.join(ms)}" for v, ms in by_value.items())
            diffs.append(f"{name} ({listed})")
    return diffs


def budget_summary(ok: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Caption lines (one per distinct budget, naming its tasks when there are several) and
    warnings for every task whose runs differ in budget, dtype or model."""
    if ok.empty:
        return [], []
    order = task_order(list(ok["task"]))
    texts: dict[str, list[str]] = {}
    for task in order:
        for text in dict.fromkeys(_budget_text(r) for _, r in ok[ok["task"] == task].iterrows()):
            texts.setdefault(text, []).append(task)
    if len(texts) == 1:
        lines = [f"Budget: {next(iter(texts))}."]
    else:
        lines = ["Budgets: " + "; ".join(f"{text} ({', '.join(ts)})" for text, ts in texts.items()) + "."]
    warnings = []
    for task in order:
        diffs = _differences(ok[ok["task"] == task])
        if diffs:
            warnings.append(f"runs on {task} differ in " + ", ".join(diffs) + "; they are not directly comparable.")
    return lines, warnings


# ---------------------------------------------------------------------------------------------
# The cost table
# ---------------------------------------------------------------------------------------------
def cost_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Means over seeds per (task, method) of the comparable runs, in table order: ``task``,
    ``method``, the ``cost`` fields that some record has, ``seeds``. ``rss_mb`` is left out
    where it always equals ``peak_memory_mb`` (CPU runs: peak memory is the peak RSS)."""
    ok = comparable(df)
    if ok.empty:
        return pd.DataFrame()
    names = [f.name for f in shown_in("cost")]
    methods = method_order(ok)
    rows = []
    for _, suite_tasks in column_groups(ok):
        for task in suite_tasks:
            for m in methods:
                sub = ok[(ok["task"] == task) & (ok["method"] == m)]
                if not sub.empty:
                    rows.append(
                        {"task": task, "method": m, **{n: mean_or_none(sub[n]) for n in names}, "seeds": len(sub)}
                    )
    frame = pd.DataFrame(rows)
    keep = [n for n in names if frame[n].notna().any()]
    if "rss_mb" in keep and frame["rss_mb"].equals(frame["peak_memory_mb"]):
        keep.remove("rss_mb")
    return frame[["task", "method", *keep, "seeds"]]


# ---------------------------------------------------------------------------------------------
# Learning-rate searches and matched budgets
# ---------------------------------------------------------------------------------------------
def tuning_frame(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, training task) whose comparable runs carry a search (``run.lr_search``):
    the chosen rate, the criterion, the grid, whether the choice sits at its edge, trials' cost."""
    ok = comparable(df)
    rows = []
    for (method, train_task), runs in ok.groupby(["method", "train_task"], sort=False):
        search = next((s for s in runs["lr_search"] if isinstance(s, dict) and "grid" in s), None)
        if search is None:
            continue
        rows.append(
            {
                "method": method,
                "trained_on": train_task,
                "lr": search.get("chosen"),
                "criterion": search.get("criterion"),
                "grid": search.get("grid"),
                "edge": bool(search.get("edge")),
                "trials": len(search.get("trials") or []),
                "seconds": search.get("seconds"),
                "scores": {t["lr"]: t["score"] for t in search.get("trials") or []},
            }
        )
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    order = {m: i for i, m in enumerate(method_order(ok))}
    return frame.sort_values(["trained_on", "method"], key=lambda c: c.map(order) if c.name == "method" else c)


def matched_budget_lines(df: pd.DataFrame) -> list[str]:
    """Caption lines for runs sized by ``--match-params``: the target per reference and model, and
    the methods left unmatched or off target."""
    ok = comparable(df)
    found = [(r["model"], m) for _, r in ok.iterrows() if isinstance(m := r["match_params"], dict)]
    lines = []
    for model, m in dict.fromkeys((model, json.dumps(m, sort_keys=True)) for model, m in found):
        m = json.loads(m)
        if m.get("note") == "reference":
            lines.append(f"Budgets on {model} matched to {m['target']:,} trainable parameters ({m['reference']}'s).")
    notes = {f"{m['method']}: {m['note']}" for _, m in found if m.get("note") and m.get("note") != "reference"}
    return lines + sorted(notes)
