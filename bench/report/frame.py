"""Records -> one row per record, driven by one column table (:data:`FIELDS`).

Each :class:`Field` says where its value lives in a record, its heading and format, and which
tables show it (``cost``: :func:`bench.report.render.cost_markdown`; ``summary``: what
``bench run`` prints). Every field is a column of the frame and of ``tables/runs.csv``.

To add a column: add a :class:`Field` at its place in :data:`FIELDS` (order = column order).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

import tasks
from bench import records, stats
from bench.records import RunRecord

MiB = 2**20

Getter = Callable[[Path, RunRecord, dict[str, Any]], Any]
"""``(record path, record, the row's earlier columns) -> value``."""


@dataclass(frozen=True)
class Field:
    name: str
    """Frame column, and header of ``runs.csv``."""
    get: Getter
    """Where the value lives: :func:`at` for a path in the record, else a function."""
    header: str = ""
    """Heading in the tables of :attr:`show` (``name`` when empty)."""
    show: Mapping[str, str] = field(default_factory=dict)
    """Table (``cost``, ``summary``) -> format: a format spec (``.1f``), ``int`` (thousands
    separators), ``pct`` (:func:`bench.report.table.pct`), ``text`` or ``metric`` (summary: the
    metric and its score, or the error)."""
    in_csv: bool = True
    """Whether ``tables/runs.csv`` has the column (per-item lists and loss curves do not)."""

    @property
    def heading(self) -> str:
        return self.header or self.name


def _lookup(rec: RunRecord, path: str) -> Any:
    section, *keys = path.split(".")
    value: Any = getattr(rec, section)
    for key in keys:
        value = (value or {}).get(key)
    return value


def at(*paths: str) -> Getter:
    """The value at the first dotted path (``cost.memory.peak_rss_mb``) that holds a truthy one,
    else the last path's value (``a or b``: ``at("run.method_label", "run.method")``)."""

    def get(path: Path, rec: RunRecord, row: dict[str, Any]) -> Any:
        value = None
        for p in paths:
            value = _lookup(rec, p)
            if value:
                break
        return value

    return get


def mib(path: str) -> Getter:
    """Bytes at ``path`` in MiB; None where the record has no number."""

    def get(rec_path: Path, rec: RunRecord, row: dict[str, Any]) -> float | None:
        value = _lookup(rec, path)
        return value / MiB if isinstance(value, (int, float)) else None

    return get


def direction(rec: RunRecord, task: Any, metric: Any) -> bool | None:
    """Whether higher is better for ``metric``: the record's ``result.higher_is_better``, else
    (records written before runs recorded it) the registered task's declaration, else None."""
    recorded = rec.result.get("higher_is_better")
    if isinstance(recorded, dict) and isinstance(recorded.get(metric), bool):
        return recorded[metric]
    if isinstance(task, str) and task in tasks.names():
        return tasks.get(task).higher_is_better.get(metric)
    return None


def _contaminated(path: Path, rec: RunRecord, row: dict[str, Any]) -> bool:
    train_file = row["train_file"]
    return bool(train_file) and train_file in (rec.run.get("contaminated_by") or ())


def _score(path: Path, rec: RunRecord, row: dict[str, Any]) -> float | None:
    score = (rec.result.get("metrics") or {}).get(row["metric"])
    return float(score) if isinstance(score, (int, float)) else None


def _item_values(path: Path, rec: RunRecord, row: dict[str, Any]) -> list | None:
    values, _ = stats.per_item(row["metric"], rec.result.get("items") or {})
    return values


def _item_refs(path: Path, rec: RunRecord, row: dict[str, Any]) -> list | None:
    _, refs = stats.per_item(row["metric"], rec.result.get("items") or {})
    return refs


def _method(path: Path, rec: RunRecord, row: dict[str, Any]) -> str | None:
    """The method's label; ``(unmerged)`` added when it was evaluated unmerged (a peft method without a merge)."""
    label = rec.run.get("method_label") or rec.run.get("method")
    return f"{label} (unmerged)" if label and rec.result.get("evaluated") == "unmerged" else label


def _trainable_pct(path: Path, rec: RunRecord, row: dict[str, Any]) -> float | None:
    fraction = rec.cost.get("trainable_fraction")
    return 100 * fraction if isinstance(fraction, (int, float)) else None


def _budget(path: Path, rec: RunRecord, row: dict[str, Any]) -> str | None:
    budget = rec.run.get("budget") or {}
    return json.dumps(budget, sort_keys=True) if budget else None


FIELDS: tuple[Field, ...] = (
    Field("file", lambda path, rec, row: Path(path).name),
    Field("method", _method, show={"summary": "text"}),
    Field("method_name", at("run.method")),
    Field("k", at("run.method_config.k")),
    Field("r", at("run.method_config.r"), in_csv=False),  # LoRA/DoRA rank: matches reference tables
    Field("task", at("run.task"), show={"summary": "text"}),
    Field("suite", at("run.suite")),
    Field("task_version", at("run.task_version")),
    Field("protocol", at("run.protocol")),
    Field("evaluator", at("run.evaluator", "result.evaluator")),
    Field("train_task", at("run.train_task")),
    Field("train_file", at("run.train_file")),
    Field("contaminated", _contaminated),
    Field("seed", at("run.seed"), show={"summary": "text"}),
    Field("model", at("run.model")),
    Field("smoke", lambda path, rec, row: bool(rec.run.get("smoke"))),
    Field("status", lambda path, rec, row: rec.result.get("status", "failed"), show={"summary": "text"}),
    Field("error", at("result.error")),
    Field("metric", at("run.primary_metric", "result.primary_metric"), show={"summary": "metric"}),
    # Unknown directions are taken as higher is better; the main table says so in a note.
    Field("higher_is_better", lambda path, rec, row: direction(rec, row["task"], row["metric"]) is not False),
    Field("direction_known", lambda path, rec, row: direction(rec, row["task"], row["metric"]) is not None),
    Field("score", _score),
    Field("training", at("result.training")),
    Field("items_hash", at("result.items_hash")),
    # Per eval item, for intervals and paired tests (bench.stats.per_item): scores, or predictions
    # and references for a metric recomputed on resamples; None for records without items.
    Field("item_values", _item_values, in_csv=False),
    Field("item_refs", _item_refs, in_csv=False),
    Field("losses", at("result.losses"), in_csv=False),
    Field("lr", at("run.method_config.lr")),
    Field("lr_search", at("run.lr_search"), in_csv=False),
    Field("match_params", at("run.match_params"), in_csv=False),
    Field("trainable_params", at("cost.trainable_params"), "trainable params", {"cost": "int"}),
    Field("total_params", at("cost.total_params")),
    Field("trainable_pct", _trainable_pct, "trainable %", {"cost": "pct", "summary": ".4f"}),
    Field("peak_memory_mb", at("cost.peak_memory_mb"), "peak MiB", {"cost": ".1f", "summary": ".0f"}),
    Field("rss_mb", at("cost.memory.peak_rss_mb"), "peak RSS MiB", {"cost": ".1f"}),
    Field("torch_alloc_mb", at("cost.memory.torch_max_allocated_mb"), "torch max alloc MiB", {"cost": ".1f"}),
    Field("torch_reserved_mb", at("cost.memory.torch_max_reserved_mb"), "torch max reserved MiB", {"cost": ".1f"}),
    Field("nvml_max_mb", at("cost.memory_nvml.nvml_max_mb"), "NVML max MiB", {"cost": ".1f"}),
    Field("nvml_p99_mb", at("cost.memory_nvml.nvml_p99_mb"), "NVML p99 MiB", {"cost": ".1f"}),
    Field("bd_param_mb", mib("cost.breakdown.param_bytes"), "params MiB", {"cost": ".2f"}),
    Field("bd_grad_mb", mib("cost.breakdown.grad_bytes"), "grads MiB", {"cost": ".2f"}),
    Field("bd_optimizer_mb", mib("cost.breakdown.optimizer_state_bytes"), "optimizer MiB", {"cost": ".2f"}),
    Field("bd_saved_activation_mb", mib("cost.breakdown.saved_activation_bytes"), "activations MiB", {"cost": ".2f"}),
    Field("bd_total_mb", mib("cost.breakdown.total_bytes"), "step total MiB", {"cost": ".2f"}),
    Field("tokens_per_s", at("cost.train_tokens_per_s"), "train tok/s", {"cost": ".0f", "summary": ".0f"}),
    Field("samples_per_s", at("cost.train_samples_per_s"), "train samples/s", {"cost": ".1f"}),
    Field("eval_samples_per_s", at("cost.eval_samples_per_s"), "eval samples/s", {"cost": ".1f"}),
    Field("train_seconds", at("cost.train_seconds"), "train s", {"cost": ".1f", "summary": ".1f"}),
    Field("eval_seconds", at("cost.eval_seconds"), "eval s", {"cost": ".1f", "summary": ".1f"}),
    Field("dtype", at("run.dtype", "run.budget.dtype")),
    Field("max_steps", at("run.budget.max_steps")),
    Field("batch_size", at("run.budget.batch_size")),
    Field("micro_batch_size", at("run.budget.micro_batch_size")),
    Field("max_length", at("run.budget.max_length")),
    Field("gradient_checkpointing", at("run.budget.gradient_checkpointing")),
    Field("budget", _budget),
    Field("budget_protocol", at("run.budget.protocol"), in_csv=False),  # harness | loreft (bench.config)
    Field("git_sha", at("run.git_sha")),
    Field("git_dirty", at("run.git_dirty")),
)
"""Every column of the frame, in order. ``peak MiB`` is torch's max allocated on CUDA, else the
job's peak RSS; the ``bd_*`` columns are :func:`bench.measure.breakdown`'s exact bytes in MiB."""

COLUMNS = tuple(f.name for f in FIELDS)
CSV_COLUMNS = [f.name for f in FIELDS if f.in_csv]


def shown_in(table: str) -> list[Field]:
    """The fields that ``table`` (``cost``, ``summary``) shows, in column order."""
    return [f for f in FIELDS if table in f.show]


def frame_of(items: Iterable[tuple[Path, RunRecord]]) -> pd.DataFrame:
    """One row per ``(path, record)``, with the columns :data:`COLUMNS`."""
    rows = []
    for path, rec in items:
        row: dict[str, Any] = {}
        for f in FIELDS:
            row[f.name] = f.get(Path(path), rec, row)
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def load_frame(directory: str | Path) -> pd.DataFrame:
    """One row per record in ``directory``."""
    return frame_of(records.iter_records(directory))


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
