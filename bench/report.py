"""Reports from records only: the paper's main table (methods x tasks), a cost table, the runs
left out, and plots (:mod:`bench.plots`).

Reads a folder of run records, never a model or a task file (the task registry is consulted
for column order only). Smoke runs (``--limit`` / ``--preset smoke``) and runs that did not
finish are kept out of the tables and plots and listed separately.

``python -m bench report --records DIR --out DIR`` calls :func:`write_report`, which writes
``tables/`` (``results.md|tex|csv``, ``cost.md|tex|csv``, ``excluded.md``, ``runs.csv``,
``report.md``) and ``plots/`` under the out folder and returns the Markdown it prints.

Formatting is fixed: scores are mean ± sample std over seeds with one decimal (three when every
score of the column lies in [-1, 1]); best per column in bold, second best underlined, by each
metric's direction (:data:`HIGHER_IS_BETTER`); ties share a rank; a column needs two entries
for a best and three for a second best. A task's runs that differ in any budget field, model,
dtype, task version, protocol or metric are named in a warning under the caption.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench import records

# ---------------------------------------------------------------------------------------------
# Fixed orders and names
# ---------------------------------------------------------------------------------------------
SUITE_ORDER = ("commonsense", "arithmetic", "glue")
"""Suites in the paper's order; other suites follow in the order their tasks appear."""

PAPER_TASK_ORDER = (
    # commonsense
    "boolq",
    "piqa",
    "siqa",
    "hellaswag",
    "winogrande",
    "arc_easy",
    "arc_challenge",
    "openbookqa",
    # arithmetic
    "gsm8k",
    "svamp",
    "aqua",
    "mawps",
    "addsub",
    "multiarith",
    "singleeq",
    # glue
    "glue_cola",
    "glue_sst2",
    "glue_mrpc",
    "glue_qqp",
    "glue_stsb",
    "glue_mnli",
    "glue_qnli",
    "glue_rte",
)
"""Fallback column order for tasks the registry does not know (records of a renamed or removed
task). Registered tasks follow the registry (``tasks.names()``: each suite file registers its
tasks in its paper's column order); tasks in neither follow in first-seen order."""

METHOD_ORDER = ("full_ft", "lora", "dora", "masked_sparse", "neuroada")
"""Row order: baselines first, then the sparse methods; labels of one method (``neuroada@k=4``,
``neuroada@k=16``) in natural order; unknown methods after, first seen."""

TASK_TEX = {
    "boolq": "BoolQ",
    "piqa": "PIQA",
    "siqa": "SIQA",
    "hellaswag": "HellaS.",
    "winogrande": "WinoG.",
    "arc_easy": "ARC-e",
    "arc_challenge": "ARC-c",
    "openbookqa": "OBQA",
    "gsm8k": "GSM8K",
    "svamp": "SVAMP",
    "aqua": "AQuA",
    "mawps": "MAWPS",
    "addsub": "AddSub",
    "multiarith": "MultiArith",
    "singleeq": "SingleEq",
    "glue_cola": "CoLA",
    "glue_sst2": "SST-2",
    "glue_mrpc": "MRPC",
    "glue_qqp": "QQP",
    "glue_stsb": "STS-B",
    "glue_mnli": "MNLI",
    "glue_qnli": "QNLI",
    "glue_rte": "RTE",
}
SUITE_TEX = {"commonsense": "Commonsense reasoning", "arithmetic": "Arithmetic reasoning", "glue": "GLUE"}

HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True,
    "acc": True,
    "acc_norm": True,
    "exact_match": True,
    "f1": True,
    "matthews": True,
    "matthews_corrcoef": True,
    "mcc": True,
    "pearson": True,
    "spearman": True,
    "pearson_spearman": True,
    "combined": True,
    "loss": False,
    "perplexity": False,
    "ppl": False,
    "error": False,
    "error_rate": False,
    "mse": False,
    "mae": False,
    "rmse": False,
}
"""Metric direction (STYLE #30). A record's ``run.higher_is_better`` wins when present; a metric
in neither is taken as higher-is-better and the table says so in a note."""

FAIRNESS_KEYS = ("model", "dtype", "task_version", "protocol", "metric", "evaluator", "train_file")
"""Besides every ``run.budget`` field, what must match between runs compared on one task."""

MiB = 2**20


# ---------------------------------------------------------------------------------------------
# Records -> one row per record
# ---------------------------------------------------------------------------------------------
COLUMNS = (
    "file",
    "method",
    "method_name",
    "k",
    "task",
    "suite",
    "task_version",
    "protocol",
    "evaluator",
    "train_task",
    "train_file",
    "contaminated",
    "seed",
    "model",
    "smoke",
    "status",
    "error",
    "metric",
    "higher_is_better",
    "direction_known",
    "score",
    "trainable_params",
    "total_params",
    "trainable_pct",
    "peak_memory_mb",
    "rss_mb",
    "torch_alloc_mb",
    "torch_reserved_mb",
    "nvml_max_mb",
    "nvml_p99_mb",
    "bd_param_mb",
    "bd_grad_mb",
    "bd_optimizer_mb",
    "bd_saved_activation_mb",
    "bd_total_mb",
    "tokens_per_s",
    "samples_per_s",
    "eval_samples_per_s",
    "train_seconds",
    "eval_seconds",
    "dtype",
    "max_steps",
    "batch_size",
    "micro_batch_size",
    "max_length",
    "gradient_checkpointing",
    "budget",
    "git_sha",
    "git_dirty",
)


def load_frame(directory: str | Path) -> pd.DataFrame:
    """One row per record in ``directory``."""
    return frame_of(records.iter_records(directory))


def _mb(value: Any) -> float | None:
    return value / MiB if isinstance(value, (int, float)) else None


def _direction(run: dict[str, Any], metric: str | None) -> tuple[bool, bool]:
    """(higher is better, whether that is known) for ``metric``."""
    if isinstance(run.get("higher_is_better"), bool):
        return run["higher_is_better"], True
    if metric in HIGHER_IS_BETTER:
        return HIGHER_IS_BETTER[metric], True
    return True, False


def frame_of(items: Iterable[tuple[Path, records.RunRecord]]) -> pd.DataFrame:
    """One row per ``(path, record)`` with the fields reports use (columns :data:`COLUMNS`)."""
    rows: list[dict[str, Any]] = []
    for path, rec in items:
        run, result, cost = rec.run, rec.result, rec.cost
        metric = run.get("primary_metric") or result.get("primary_metric")
        score = (result.get("metrics") or {}).get(metric)
        memory, nvml, bd = cost.get("memory") or {}, cost.get("memory_nvml") or {}, cost.get("breakdown") or {}
        budget = run.get("budget") or {}
        higher, known = _direction(run, metric)
        fraction = cost.get("trainable_fraction")
        train_file = run.get("train_file")
        rows.append(
            {
                "file": Path(path).name,
                "method": run.get("method_label") or run.get("method"),
                "method_name": run.get("method"),
                "k": (run.get("method_config") or {}).get("k"),
                "task": run.get("task"),
                "suite": run.get("suite"),
                "task_version": run.get("task_version"),
                "protocol": run.get("protocol"),
                "evaluator": run.get("evaluator") or result.get("evaluator"),
                "train_task": run.get("train_task"),
                "train_file": train_file,
                "contaminated": bool(train_file) and train_file in (run.get("contaminated_by") or ()),
                "seed": run.get("seed"),
                "model": run.get("model"),
                "smoke": bool(run.get("smoke")),
                "status": result.get("status", "failed"),
                "error": result.get("error"),
                "metric": metric,
                "higher_is_better": higher,
                "direction_known": known,
                "score": float(score) if isinstance(score, (int, float)) else None,
                "trainable_params": cost.get("trainable_params"),
                "total_params": cost.get("total_params"),
                "trainable_pct": 100 * fraction if isinstance(fraction, (int, float)) else None,
                "peak_memory_mb": cost.get("peak_memory_mb"),
                "rss_mb": memory.get("peak_rss_mb"),
                "torch_alloc_mb": memory.get("torch_max_allocated_mb"),
                "torch_reserved_mb": memory.get("torch_max_reserved_mb"),
                "nvml_max_mb": nvml.get("nvml_max_mb"),
                "nvml_p99_mb": nvml.get("nvml_p99_mb"),
                "bd_param_mb": _mb(bd.get("param_bytes")),
                "bd_grad_mb": _mb(bd.get("grad_bytes")),
                "bd_optimizer_mb": _mb(bd.get("optimizer_state_bytes")),
                "bd_saved_activation_mb": _mb(bd.get("saved_activation_bytes")),
                "bd_total_mb": _mb(bd.get("total_bytes")),
                "tokens_per_s": cost.get("train_tokens_per_s"),
                "samples_per_s": cost.get("train_samples_per_s"),
                "eval_samples_per_s": cost.get("eval_samples_per_s"),
                "train_seconds": cost.get("train_seconds"),
                "eval_seconds": cost.get("eval_seconds"),
                "dtype": run.get("dtype") or budget.get("dtype"),
                "max_steps": budget.get("max_steps"),
                "batch_size": budget.get("batch_size"),
                "micro_batch_size": budget.get("micro_batch_size"),
                "max_length": budget.get("max_length"),
                "gradient_checkpointing": budget.get("gradient_checkpointing"),
                "budget": json.dumps(budget, sort_keys=True) if budget else None,
                "git_sha": run.get("git_sha"),
                "git_dirty": run.get("git_dirty"),
            }
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def comparable(df: pd.DataFrame) -> pd.DataFrame:
    """The runs that enter tables and plots: finished, not smoke, with a primary score."""
    if df.empty:
        return df
    return df[(df["status"] == "ok") & ~df["smoke"].astype(bool) & df["score"].notna()]


def excluded(df: pd.DataFrame) -> pd.DataFrame:
    """The runs left out of tables and plots (smoke, failed, diverged, canceled, no score)."""
    if df.empty:
        return df
    return df[~df.index.isin(comparable(df).index)]


# ---------------------------------------------------------------------------------------------
# Orders
# ---------------------------------------------------------------------------------------------
def _registered_tasks() -> list[str]:
    try:
        import tasks

        return list(tasks.names())
    except Exception:  # noqa: BLE001 - a broken task file must not break reports
        return []


def task_order(seen: Sequence[str]) -> list[str]:
    """``seen`` tasks in registry order, then :data:`PAPER_TASK_ORDER`, then first seen.

    Suites are grouped afterwards (:func:`column_groups`), so this order matters within a suite.
    """
    registered = {t: i for i, t in enumerate(_registered_tasks())}
    paper = {t: i for i, t in enumerate(PAPER_TASK_ORDER)}
    first = {t: i for i, t in enumerate(dict.fromkeys(seen))}

    def key(t: str) -> tuple[int, int]:
        if t in registered:
            return (0, registered[t])
        return (1, paper[t]) if t in paper else (2, first[t])

    return sorted(first, key=key)


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
    """``[(suite, [tasks...]), ...]``: suites in :data:`SUITE_ORDER`, then first appearance."""
    ordered = task_order(list(df["task"]))
    groups: dict[str, list[str]] = {}
    for task in ordered:
        groups.setdefault(_suite_of(df, task), []).append(task)
    first = {s: i for i, s in enumerate(groups)}
    suites = sorted(
        groups, key=lambda s: (SUITE_ORDER.index(s), 0) if s in SUITE_ORDER else (len(SUITE_ORDER), first[s])
    )
    return [(s, groups[s]) for s in suites]


# ---------------------------------------------------------------------------------------------
# The main table, as data; rendered to Markdown, LaTeX and CSV below
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
    rank: int | None = None
    """1: best of the column, 2: second best, None otherwise."""
    contaminated: bool = False
    """Some run trained on a file that holds this task's eval problems (``run.contaminated_by``)."""


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


def _digits(values: Iterable[float]) -> int:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return 3 if values and all(-1.0 <= v <= 1.0 for v in values) else 1


def _rank(cells: list[Cell], higher: bool, digits: int) -> None:
    """Mark best (1) and second best (2) by the displayed value; ties share a rank.

    Best needs at least two entries in the column, second best at least three.
    """
    if len(cells) < 2:
        return
    shown = sorted({round(c.mean, digits) for c in cells}, reverse=higher)
    for c in cells:
        value = round(c.mean, digits)
        if value == shown[0]:
            c.rank = 1
        elif len(cells) >= 3 and len(shown) > 1 and value == shown[1]:
            c.rank = 2


def main_table(df: pd.DataFrame) -> MainTable:
    """The paper's table from the comparable runs of ``df`` (see :func:`comparable`)."""
    ok = comparable(df)
    methods = method_order(ok)
    cells: dict[tuple[str, str], Cell] = {}
    columns: list[Column] = []
    groups: list[tuple[str, list[Column]]] = []
    notes: list[str] = []
    unknown_direction = sorted(set(ok.loc[~ok["direction_known"].astype(bool), "metric"].dropna()))
    for suite, suite_tasks in column_groups(ok):
        group: list[Column] = []
        for task in suite_tasks:
            sub = ok[ok["task"] == task]
            metric = sub["metric"].iloc[0]
            higher = bool(sub["higher_is_better"].iloc[0])
            col_cells = []
            for m in methods:
                mine = sub[sub["method"] == m]
                scores = mine["score"].astype(float)
                if len(scores):
                    std = float(scores.std()) if len(scores) > 1 else None
                    cell = Cell(float(scores.mean()), std, len(scores), contaminated=bool(mine["contaminated"].any()))
                    cells[(m, task)] = cell
                    col_cells.append(cell)
            col = Column(task, suite, metric, higher, _digits(c.mean for c in col_cells))
            _rank(col_cells, higher, col.digits)
            group.append(col)
        average = _average_column(suite, group, methods, cells, notes)
        if average is not None:
            group.append(average)
        columns += group
        groups.append((suite, group))
    flagged = [c.key for c in columns if any(cells.get((m, c.key), Cell(0, None, 0)).contaminated for m in methods)]
    flagged = [k for k in flagged if not k.startswith("avg:")]
    if flagged:
        notes.append(
            f"†: trained on a file that contains eval problems of {', '.join(flagged)} "
            "(the task's contaminated_by); averages that include such a task carry † too."
        )
    if unknown_direction:
        notes.append(f"Direction unknown for metric(s) {', '.join(unknown_direction)}: taken as higher is better.")
    dirty = int(ok["git_dirty"].fillna(False).astype(bool).sum())
    if dirty:
        notes.append(f"{dirty} of {len(ok)} runs came from a git tree with uncommitted changes.")
    shas = ok["git_sha"].dropna().unique()
    if len(shas) > 1:
        notes.append(f"Runs come from {len(shas)} different git commits.")
    trainable = {m: _mean_or_none(ok.loc[ok["method"] == m, "trainable_pct"]) for m in methods}
    trainable_text = {m: _pct_range(ok.loc[ok["method"] == m, "trainable_pct"]) for m in methods}
    seeds = {}
    for m in methods:
        counts = [cells[(m, c.key)].n for c in columns if not c.is_average and (m, c.key) in cells]
        lo, hi = (min(counts), max(counts)) if counts else (0, 0)
        seeds[m] = str(lo) if lo == hi else f"{lo}–{hi}"
    budget_lines, warnings = budget_summary(ok)
    return MainTable(methods, columns, groups, cells, trainable, trainable_text, seeds, budget_lines, warnings, notes)


def _pct_range(values: pd.Series) -> str:
    shown = list(dict.fromkeys(_pct(v) for v in sorted(values.dropna().astype(float))))
    return "–" if not shown else shown[0] if len(shown) == 1 else f"{shown[0]}–{shown[-1]}"


def _mean_or_none(values: pd.Series) -> float | None:
    values = values.dropna().astype(float)
    return float(values.mean()) if len(values) else None


def _average_column(
    suite: str, group: list[Column], methods: list[str], cells: dict, notes: list[str]
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
        cells[(m, key)] = cell
        avg_cells.append(cell)
    avg.digits = _digits(c.mean for c in avg_cells)
    _rank(avg_cells, avg.higher_is_better, avg.digits)
    note = f"avg {suite}: mean of the per-task means over {', '.join(c.key for c in common)}"
    note += " (the tasks with a result for every method)"
    note += f"; left out: {', '.join(left_out)}." if left_out else "."
    notes.append(note)
    return avg


# -- budget caption and fairness warnings -----------------------------------------------------
def _budget_text(row: pd.Series) -> str:
    parts = []
    if pd.notna(row["max_steps"]) and pd.notna(row["batch_size"]):
        micro = f" (micro-batch {int(row['micro_batch_size'])})" if pd.notna(row["micro_batch_size"]) else ""
        parts.append(f"{int(row['max_steps'])} steps × {int(row['batch_size'])} examples{micro}")
    if pd.notna(row["max_length"]):
        parts.append(f"max length {int(row['max_length'])}")
    if row["dtype"] is not None and not pd.isna(row["dtype"]):
        parts.append(str(row["dtype"]))
    if row["gradient_checkpointing"] is not None and not pd.isna(row["gradient_checkpointing"]):
        parts.append("gradient checkpointing " + ("on" if row["gradient_checkpointing"] else "off"))
    if row["model"] is not None and not pd.isna(row["model"]):
        parts.append(f"model {row['model']}")
    return ", ".join(parts) or "unknown budget"


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
        sub = ok[ok["task"] == task]
        diffs = []
        budgets = [json.loads(b) if isinstance(b, str) else {} for b in sub["budget"]]
        fields = sorted({k for b in budgets for k in b})
        values = {f: [b.get(f) for b in budgets] for f in fields}
        for key in FAIRNESS_KEYS:
            values[key] = list(sub[key])
        for name, vals in values.items():
            by_value: dict[str, list[str]] = {}
            for v, m in zip(vals, sub["method"], strict=True):
                by_value.setdefault(json.dumps(v), [])
                if m not in by_value[json.dumps(v)]:
                    by_value[json.dumps(v)].append(m)
            if len(by_value) > 1:
                listed = "; ".join(f"{v}: {', '.join(ms)}" for v, ms in by_value.items())
                diffs.append(f"{name} ({listed})")
        if diffs:
            warnings.append(f"runs on {task} differ in " + ", ".join(diffs) + "; they are not directly comparable.")
    return lines, warnings


# -- Markdown ---------------------------------------------------------------------------------
def _fmt(mean: float | None, std: float | None, digits: int, pm: str = " ± ") -> str:
    if mean is None or math.isnan(mean):
        return "–"
    if std is not None and not math.isnan(std):
        return f"{mean:.{digits}f}{pm}{std:.{digits}f}"
    return f"{mean:.{digits}f}"


def _pct(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.2f}" if value >= 1 else f"{value:.3g}"


def _md_header(col: Column) -> str:
    if col.is_average:
        return f"avg {col.suite}"
    label = col.key
    if col.metric and col.metric != "accuracy":
        label += f" ({col.metric})"
    return label + ("" if col.higher_is_better else " ↓")


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def results_markdown(table: MainTable) -> str:
    """The main table in Markdown with its caption, warnings and notes."""
    if not table.methods:
        return "## Results\n\n_no comparable runs (finished, not smoke)_\n"
    lines = ["## Results", ""]
    caption = " ".join(table.budget_lines)
    caption += " Mean ± std over seeds (count in the seeds column); **best** and <u>second best</u> per column."
    lines += [caption, ""]
    for w in table.warnings:
        lines += [f"> **Warning:** {w}", ""]
    header = ["method", "trainable %", *[_md_header(c) for c in table.columns], "seeds"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for m in table.methods:
        row = [_md_escape(m), table.trainable_text[m]]
        for c in table.columns:
            cell = table.cells.get((m, c.key))
            text = _fmt(cell.mean, cell.std, c.digits) if cell else "–"
            if cell and cell.rank == 1:
                text = f"**{text}**"
            elif cell and cell.rank == 2:
                text = f"<u>{text}</u>"
            row.append(text + ("†" if cell and cell.contaminated else ""))
        row.append(table.seeds[m])
        lines.append("| " + " | ".join(row) + " |")
    if table.notes:
        lines.append("")
        lines += [f"- {n}" for n in table.notes]
    return "\n".join(lines) + "\n"


# -- LaTeX ------------------------------------------------------------------------------------
_TEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "×": r"$\times$",
    "±": r"$\pm$",
    "–": "--",
    "↓": r"$\downarrow$",
    "†": r"$^\dagger$",
}


def tex_escape(text: str) -> str:
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in str(text))


def _tex_header(col: Column) -> str:
    if col.is_average:
        return "Avg."
    label = TASK_TEX.get(col.key, tex_escape(col.key))
    return label + ("" if col.higher_is_better else r" $\downarrow$")


def results_latex(table: MainTable, label: str = "tab:results") -> str:
    """The main table as a booktabs ``table*`` (needs ``\\usepackage{booktabs}``)."""
    if not table.methods:
        return "% no comparable runs (finished, not smoke)\n"
    spec = "lr" + "".join("r" * len(cols) for _, cols in table.groups) + "r"
    caption = " ".join(table.budget_lines) + " Mean ± std over seeds; best in bold, second best underlined."
    caption = tex_escape(caption)
    for w in table.warnings:
        caption += r" \textbf{Warning:} " + tex_escape(w)
    lines = [
        "% generated by `python -m bench report` from run records; do not edit",
        r"\begin{table*}[t]",
        r"\centering",
        r"\small",
        rf"\caption{{{caption}}}",
        rf"\label{{{label}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
    ]
    top, rules, start = [" ", " "], [], 3
    for suite, cols in table.groups:
        name = SUITE_TEX.get(suite, tex_escape(suite))
        top.append(rf"\multicolumn{{{len(cols)}}}{{c}}{{{name}}}")
        rules.append(rf"\cmidrule(lr){{{start}-{start + len(cols) - 1}}}")
        start += len(cols)
    top.append(" ")
    lines.append(" & ".join(top) + r" \\")
    lines.append(" ".join(rules))
    header = ["Method", r"Params (\%)", *[_tex_header(c) for c in table.columns], "Seeds"]
    lines += [" & ".join(header) + r" \\", r"\midrule"]
    for m in table.methods:
        row = [tex_escape(m), tex_escape(table.trainable_text[m])]
        for c in table.columns:
            cell = table.cells.get((m, c.key))
            text = _fmt(cell.mean, cell.std, c.digits, pm=r" $\pm$ ") if cell else "--"
            if cell and cell.rank == 1:
                text = rf"\textbf{{{text}}}"
            elif cell and cell.rank == 2:
                text = rf"\underline{{{text}}}"
            row.append(text + (r"$^\dagger$" if cell and cell.contaminated else ""))
        row.append(tex_escape(table.seeds[m]))
        lines.append(" & ".join(row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.notes:
        lines.append(r"\par\smallskip{\footnotesize " + " ".join(tex_escape(x) for x in table.notes) + "}")
    lines.append(r"\end{table*}")
    return "\n".join(lines) + "\n"


# -- CSV --------------------------------------------------------------------------------------
def results_frame(table: MainTable) -> pd.DataFrame:
    """The main table in long form: one row per (method, column), averages included."""
    rows = []
    for m in table.methods:
        for c in table.columns:
            cell = table.cells.get((m, c.key))
            if cell is None:
                continue
            rows.append(
                {
                    "method": m,
                    "suite": c.suite,
                    "task": c.key,
                    "metric": c.metric or "average",
                    "higher_is_better": c.higher_is_better,
                    "mean": cell.mean,
                    "std": cell.std,
                    "n_seeds": cell.n if not c.is_average else None,
                    "rank": cell.rank,
                    "contaminated": cell.contaminated,
                    "trainable_pct": table.trainable_pct[m],
                }
            )
    cols = ["method", "suite", "task", "metric", "higher_is_better", "mean", "std", "n_seeds", "rank", "contaminated"]
    cols.append("trainable_pct")
    return pd.DataFrame(rows, columns=cols)


def results_table(df: pd.DataFrame) -> str:
    """Markdown main table of ``df`` (methods as rows, tasks as columns)."""
    return results_markdown(main_table(df))


# ---------------------------------------------------------------------------------------------
# Cost table
# ---------------------------------------------------------------------------------------------
COST_COLUMNS: tuple[tuple[str, str, str], ...] = (
    # (frame column, header, format)
    ("trainable_params", "trainable params", "int"),
    ("trainable_pct", "trainable %", "pct"),
    ("peak_memory_mb", "peak MiB", ".1f"),
    ("rss_mb", "peak RSS MiB", ".1f"),
    ("torch_alloc_mb", "torch max alloc MiB", ".1f"),
    ("torch_reserved_mb", "torch max reserved MiB", ".1f"),
    ("nvml_max_mb", "NVML max MiB", ".1f"),
    ("nvml_p99_mb", "NVML p99 MiB", ".1f"),
    ("bd_param_mb", "params MiB", ".2f"),
    ("bd_grad_mb", "grads MiB", ".2f"),
    ("bd_optimizer_mb", "optimizer MiB", ".2f"),
    ("bd_saved_activation_mb", "activations MiB", ".2f"),
    ("bd_total_mb", "step total MiB", ".2f"),
    ("tokens_per_s", "train tok/s", ".0f"),
    ("samples_per_s", "train samples/s", ".1f"),
    ("eval_samples_per_s", "eval samples/s", ".1f"),
    ("train_seconds", "train s", ".1f"),
    ("eval_seconds", "eval s", ".1f"),
)
"""The cost table's columns; a column appears only when some record has it. ``peak RSS`` is
left out where it always equals ``peak`` (CPU runs: peak memory is the peak RSS)."""


def cost_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Means over seeds per (task, method) of the comparable runs, in table order."""
    ok = comparable(df)
    if ok.empty:
        return pd.DataFrame()
    methods = method_order(ok)
    rows = []
    for _, suite_tasks in column_groups(ok):
        for task in suite_tasks:
            for m in methods:
                sub = ok[(ok["task"] == task) & (ok["method"] == m)]
                if sub.empty:
                    continue
                row: dict[str, Any] = {"task": task, "method": m, "seeds": len(sub)}
                for col, _, _ in COST_COLUMNS:
                    row[col] = _mean_or_none(sub[col])
                rows.append(row)
    frame = pd.DataFrame(rows)
    keep = [c for c, _, _ in COST_COLUMNS if frame[c].notna().any()]
    if "rss_mb" in keep and frame["rss_mb"].equals(frame["peak_memory_mb"]):
        keep.remove("rss_mb")
    return frame[["task", "method", *keep, "seeds"]]


def _cost_cell(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if fmt == "int":
        return f"{int(round(value)):,}"
    if fmt == "pct":
        return _pct(value)
    return format(value, fmt)


def _cost_rows(frame: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    fmts = {c: (h, f) for c, h, f in COST_COLUMNS}
    header = ["task", "method", *[fmts[c][0] for c in frame.columns[2:-1]], "seeds"]
    rows = []
    for _, r in frame.iterrows():
        rows.append(
            [r["task"], r["method"], *[_cost_cell(r[c], fmts[c][1]) for c in frame.columns[2:-1]], str(r["seeds"])]
        )
    return header, rows


COST_NOTE = (
    "Means over seeds. peak MiB: torch's max allocated on CUDA, else the job's peak RSS. "
    "params/grads/optimizer/activations/step total: exact bytes of one training step on one "
    "micro-batch (bench.measure.breakdown). Throughput excludes warm-up steps. Tasks trained "
    "in one job (run.trained_with, e.g. a suite's shared training set) share its training figures."
)


def cost_markdown(df: pd.DataFrame) -> str:
    frame = cost_frame(df)
    if frame.empty:
        return ""
    header, rows = _cost_rows(frame)
    lines = ["## Cost", "", COST_NOTE, ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---", "---"] + ["---:"] * (len(header) - 2)) + "|")
    lines += ["| " + " | ".join(_md_escape(x) for x in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def cost_latex(df: pd.DataFrame, label: str = "tab:cost") -> str:
    frame = cost_frame(df)
    if frame.empty:
        return "% no comparable runs\n"
    header, rows = _cost_rows(frame)
    lines = [
        "% generated by `python -m bench report` from run records; do not edit",
        r"\begin{table*}[t]",
        r"\centering",
        r"\small",
        rf"\caption{{{tex_escape(COST_NOTE)}}}",
        rf"\label{{{label}}}",
        rf"\begin{{tabular}}{{ll{'r' * (len(header) - 2)}}}",
        r"\toprule",
        " & ".join(tex_escape(h) for h in header) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(tex_escape(x) for x in row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table*}"]
    return "\n".join(lines) + "\n"


def cost_table(df: pd.DataFrame) -> str:
    """Markdown cost table (kept for callers of the first version)."""
    return cost_markdown(df)


# ---------------------------------------------------------------------------------------------
# Runs left out
# ---------------------------------------------------------------------------------------------
def _first_line(text: Any, width: int = 160) -> str:
    if not isinstance(text, str) or not text.strip():
        return ""
    return text.strip().splitlines()[0][:width]


def excluded_markdown(df: pd.DataFrame) -> str:
    """The smoke runs and the runs that did not finish, one row each."""
    out = excluded(df)
    if out.empty:
        return ""
    parts = []
    smoke = out[out["smoke"].astype(bool) & (out["status"] == "ok")]
    if not smoke.empty:
        parts += ["## Smoke runs (excluded: shortened budget)", ""]
        parts += ["| method | task | seed | metric | score |", "|---|---|---:|---|---:|"]
        for _, r in smoke.iterrows():
            score = "–" if r["score"] is None or pd.isna(r["score"]) else f"{r['score']:.1f}"
            parts.append(f"| {_md_escape(r['method'])} | {r['task']} | {r['seed']} | {r['metric']} | {score} |")
        parts.append("")
    other = out[~out.index.isin(smoke.index)]
    if not other.empty:
        parts += ["## Runs that did not finish (excluded)", ""]
        parts += ["| record | status | smoke | error |", "|---|---|---|---|"]
        for _, r in other.iterrows():
            error = _first_line(r["error"]) or ("no primary metric in record" if r["status"] == "ok" else "")
            smoke_flag = "yes" if r["smoke"] else "no"
            parts.append(f"| {_md_escape(r['file'])} | {r['status']} | {smoke_flag} | {_md_escape(error)} |")
        parts.append("")
    return "\n".join(parts)


def other_runs(df: pd.DataFrame) -> str:
    """Kept for callers of the first version: see :func:`excluded_markdown`."""
    return excluded_markdown(df)


# ---------------------------------------------------------------------------------------------
# Whole report
# ---------------------------------------------------------------------------------------------
def markdown_of(df: pd.DataFrame) -> str:
    """Everything ``bench report`` prints: results, cost, and the runs left out."""
    if df.empty:
        return "_no records_\n"
    parts = [results_markdown(main_table(df))]
    for part in (cost_markdown(df), excluded_markdown(df)):
        if part:
            parts.append(part)
    return "\n".join(parts)


def markdown(directory: str | Path) -> str:
    """The printed report of the records in ``directory``."""
    df = load_frame(directory)
    if df.empty:
        return f"_no records in {directory}_\n"
    return markdown_of(df)


def write_report(
    records_dir: str | Path, out_dir: str | Path = "results", *, plots: bool = True
) -> tuple[str, list[Path]]:
    """Write ``tables/`` and ``plots/`` under ``out_dir``; returns (Markdown, written paths).

    Text files are written atomically (:func:`bench.records.write_atomic`), plots through a
    temp file and ``os.replace``.
    """
    df = load_frame(records_dir)
    text = markdown_of(df) if not df.empty else f"_no records in {records_dir}_\n"
    tables = Path(out_dir) / "tables"
    written: list[Path] = []

    def put(name: str, content: str) -> None:
        path = tables / name
        records.write_atomic(path, content)
        written.append(path)

    table = main_table(df) if not df.empty else None
    put("report.md", text)
    if table is not None:
        put("results.md", results_markdown(table))
        put("results.tex", results_latex(table))
        put("results.csv", results_frame(table).to_csv(index=False))
        cost = cost_frame(df)
        if not cost.empty:
            put("cost.md", cost_markdown(df))
            put("cost.tex", cost_latex(df))
            put("cost.csv", cost.to_csv(index=False))
        put("excluded.md", excluded_markdown(df) or "_no runs excluded_\n")
        put("runs.csv", df.to_csv(index=False))
        if plots:
            from bench import plots as plotting

            written += plotting.write_all(df, Path(out_dir) / "plots")
    return text, written


# ---------------------------------------------------------------------------------------------
# One row per job (what `bench run` prints at the end of a sweep)
# ---------------------------------------------------------------------------------------------
def summary_table(df: pd.DataFrame) -> str:
    """Markdown, one row per job: what ``bench run`` prints when a sweep ends."""
    if df.empty:
        return "_no records_\n"
    header = [
        "method",
        "task",
        "seed",
        "status",
        "metric",
        "trainable %",
        "peak MiB",
        "train tok/s",
        "train s",
        "eval s",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 4 + ["---:"] * 6) + "|"]

    def num(value: Any, fmt: str) -> str:
        return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)

    for _, r in df.iterrows():
        if r.status == "ok":
            metric = f"{r.metric} {num(r.score, '.1f')}"
        else:
            metric = _md_escape(_first_line(r.error, 60)) or "–"
        lines.append(
            f"| {_md_escape(r.method)} | {r.task} | {r.seed} | {r.status} | {metric} | "
            f"{num(r.trainable_pct, '.4f')} | "
            f"{num(r.peak_memory_mb, '.0f')} | {num(r.tokens_per_s, '.0f')} | {num(r.train_seconds, '.1f')} | "
            f"{num(r.eval_seconds, '.1f')} |"
        )
    return "\n".join(lines) + "\n"
