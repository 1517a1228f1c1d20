"""``bench report --reference paper``: our runs beside the papers' published numbers.

The published numbers are data, not code: ``references.json`` beside this file holds, per
reference set, tables of one method and config (NeuroAda's ``k``, LoRA's and DoRA's ``r``) on one
suite with LLaMA-7B, each with its source, the protocol it was measured under, and what could not
be found (left out, never guessed). A table is matched to our runs from the records alone: the
run's method, the config values the table names, and the model (one of the set's model names).

For each suite the output has, per matched method, our row (the mean over seeds of each task,
and in brackets our difference from the paper, marked ✗ when it is larger than the tolerance),
the paper's row, and a ``Δ vs paper`` column: our average minus the paper's, over the tasks both
have, with ✓ within the tolerance and ✗ outside it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

import tasks
from bench.errors import UsageError
from bench.report.frame import comparable

DATA = Path(__file__).with_name("references.json")


@cache
def _sets() -> dict[str, Any]:
    return json.loads(DATA.read_text(encoding="utf-8"))


def names() -> list[str]:
    """The reference sets of ``references.json`` (``paper``)."""
    return list(_sets())


def load(name: str) -> dict[str, Any]:
    """One reference set; an unknown name is a usage error naming the known ones."""
    if name not in _sets():
        from bench.registry import did_you_mean

        raise UsageError(f"unknown reference '{name}'{did_you_mean(name, names())} available: {', '.join(names())}")
    return _sets()[name]


@dataclass
class Match:
    """One of our method labels matched to one published table."""

    label: str
    table: dict[str, Any]
    ours: dict[str, float]
    """Task -> our mean score over seeds, for the table's tasks we ran."""
    protocols: list[str]
    """The protocols (``run.budget.protocol``) our runs of these tasks used."""

    def delta(self, task: str) -> float:
        return self.ours[task] - self.table["scores"][task]

    @property
    def shared(self) -> list[str]:
        return [t for t in self.table["scores"] if t in self.ours]

    def averages(self) -> tuple[float, float]:
        """(ours, paper) over the shared tasks."""
        shared = self.shared
        return (
            sum(self.ours[t] for t in shared) / len(shared),
            sum(self.table["scores"][t] for t in shared) / len(shared),
        )


def _config_matches(row: pd.Series, config: dict[str, Any]) -> bool:
    for key, value in config.items():
        ours = row.get(key)
        if ours is None or (isinstance(ours, float) and math.isnan(ours)) or ours != value:
            return False
    return True


def matches(df: pd.DataFrame, reference: dict[str, Any]) -> list[Match]:
    """Our comparable runs matched to the reference's tables, in the tables' order."""
    ok = comparable(df)
    out: list[Match] = []
    if ok.empty:
        return out
    models = set(reference["model"])
    for table in reference["tables"]:
        for label, runs in ok.groupby("method", sort=False):
            first = runs.iloc[0]
            if first["method_name"] != table["method"] or first["model"] not in models:
                continue
            if not _config_matches(first, table["config"]):
                continue
            mine = runs[runs["task"].isin(list(table["scores"]))]
            if mine.empty:
                continue
            ours = mine.groupby("task", sort=False)["score"].mean().to_dict()
            protocols = sorted({str(p) for p in mine["budget_protocol"].fillna("harness")})
            out.append(Match(str(label), table, {str(k): float(v) for k, v in ours.items()}, protocols))
    return out


def _mark(delta: float, tolerance: float) -> str:
    return "✓" if abs(delta) <= tolerance else "✗"


def _signed(value: float) -> str:
    return f"{value:+.1f}".replace("-", "−")


def reference_frame(df: pd.DataFrame, name: str = "paper", tolerance: float | None = None) -> pd.DataFrame:
    """Long form: one row per matched method and task (and its average), for CSV."""
    reference = load(name)
    tol = reference["tolerance"] if tolerance is None else tolerance
    rows = []
    for m in matches(df, reference):
        for task in m.shared:
            d = m.delta(task)
            rows.append((m.label, m.table["label"], m.table["suite"], task, m.ours[task], m.table["scores"][task], d))
        ours, paper = m.averages()
        rows.append((m.label, m.table["label"], m.table["suite"], "average", ours, paper, ours - paper))
    frame = pd.DataFrame(rows, columns=["method", "reference", "suite", "task", "ours", "paper", "delta"])
    frame["within_tolerance"] = frame["delta"].abs() <= tol
    return frame


def _suite_table(found: list[Match], tol: float) -> list[str]:
    columns = list(dict.fromkeys(t for m in found for t in m.table["scores"]))
    header = ["method", *(tasks.display_name(t) for t in columns), "Avg.", f"Δ vs paper (±{tol:g})"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(columns) + 1) + ":---:|"]
    for m in found:
        cells = []
        for task in columns:
            if task not in m.ours:
                cells.append("–")
                continue
            d = m.delta(task)
            cells.append(f"{m.ours[task]:.1f} ({_signed(d)}{'' if abs(d) <= tol else ' ✗'})")
        ours, paper = m.averages()
        verdict = f"{_signed(ours - paper)} {_mark(ours - paper, tol)}"
        lines.append(f"| {m.label} | " + " | ".join(cells) + f" | {ours:.1f} | {verdict} |")
        published = [f"{m.table['scores'][t]:.1f}" if t in m.table["scores"] else "–" for t in columns]
        lines.append(f"| paper: {m.table['label']} | " + " | ".join(published) + f" | {paper:.1f} |  |")
    return lines


def _notes(found: list[Match], reference: dict[str, Any]) -> list[str]:
    notes = []
    for m in found:
        where = f"{m.label} ({tasks.suite_title(m.table['suite'])})"
        notes.append(f"- paper: {m.table['label']}: {m.table['source']}.")
        if m.table.get("note"):
            notes.append(f"- paper: {m.table['label']}: {m.table['note']}.")
        missing = [tasks.display_name(t) for t in m.table["scores"] if t not in m.ours]
        if missing:
            notes.append(f"- {where}: no run of {', '.join(missing)}; averages over the other tasks only.")
        if m.protocols != [m.table["protocol"]]:
            notes.append(
                f"- {where}: our runs used protocol {', '.join(m.protocols)}, the paper's numbers "
                f"{m.table['protocol']} (`--preset paper` runs the paper's)."
            )
    notes += [f"- not in this reference: {line}." for line in reference.get("missing", [])]
    return notes


def reference_markdown(df: pd.DataFrame, name: str = "paper", tolerance: float | None = None) -> str:
    """The Markdown section ``bench report --reference NAME`` adds."""
    reference = load(name)
    tol = reference["tolerance"] if tolerance is None else tolerance
    found = matches(df, reference)
    lines = [f"## Against the {name} reference ({reference['title']})", ""]
    if not found:
        models = ", ".join(reference["model"])
        lines += [f"_no run matches a published table (method, config and a model among: {models})_", ""]
    for suite in dict.fromkeys(m.table["suite"] for m in found):
        lines += [f"**{tasks.suite_title(suite)}**", ""]
        lines += _suite_table([m for m in found if m.table["suite"] == suite], tol)
        lines.append("")
    lines.append(
        f"Ours: mean over seeds (our difference from the paper in brackets, ✗ beyond ±{tol:g}); "
        f"tolerance ±{tol:g}: {reference['tolerance_note']}."
    )
    lines += ["", *_notes(found, reference), ""]
    return "\n".join(lines)
