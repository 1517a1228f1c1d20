"""Reports from records only: a results table (methods x tasks) and a cost table.

Reads a folder of run records, never a model or a task file. Smoke runs (``--limit`` /
``--preset smoke``) and runs that did not finish are kept out of the main table and listed
separately.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from bench import records


def load_frame(directory: str | Path) -> pd.DataFrame:
    """One row per record in ``directory``."""
    return frame_of(records.iter_records(directory))


def frame_of(items) -> pd.DataFrame:
    """One row per ``(path, record)`` with the fields reports use."""
    rows: list[dict[str, Any]] = []
    for path, rec in items:
        run, result, cost = rec.run, rec.result, rec.cost
        metric = run.get("primary_metric") or result.get("primary_metric")
        rows.append(
            {
                "file": path.name,
                "method": run.get("method_label") or run.get("method"),
                "task": run.get("task"),
                "suite": run.get("suite"),
                "seed": run.get("seed"),
                "model": run.get("model"),
                "smoke": bool(run.get("smoke")),
                "status": result.get("status"),
                "error": result.get("error"),
                "metric": metric,
                "score": (result.get("metrics") or {}).get(metric),
                "trainable_params": cost.get("trainable_params"),
                "trainable_pct": 100 * cost["trainable_fraction"] if cost.get("trainable_fraction") is not None else None,
                "peak_memory_mb": cost.get("peak_memory_mb"),
                "tokens_per_s": cost.get("train_tokens_per_s"),
                "train_seconds": cost.get("train_seconds"),
                "eval_seconds": cost.get("eval_seconds"),
            }
        )
    return pd.DataFrame(rows)


def _fmt(mean: float, std: float, n: int, digits: int = 1) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if n > 1 and std is not None and not math.isnan(std):
        return f"{mean:.{digits}f} ± {std:.{digits}f}"
    return f"{mean:.{digits}f}"


def results_table(df: pd.DataFrame) -> str:
    """Markdown: methods as rows, tasks as columns (primary metric, mean ± std over seeds)."""
    ok = df[df["status"] == "ok"]
    if ok.empty:
        return "_no finished runs_\n"
    tasks = list(dict.fromkeys(ok["task"]))
    methods = list(dict.fromkeys(ok["method"]))
    header = ["method", "trainable %", *[f"{t} ({ok[ok.task == t].metric.iloc[0]})" for t in tasks], "seeds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for m in methods:
        sub = ok[ok.method == m]
        cells = [m, f"{sub.trainable_pct.mean():.4f}" if sub.trainable_pct.notna().any() else "–"]
        for t in tasks:
            s = sub[sub.task == t].score.dropna()
            cells.append(_fmt(s.mean(), s.std(), len(s)) if len(s) else "–")
        cells.append(str(sub.seed.nunique()))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def cost_table(df: pd.DataFrame) -> str:
    ok = df[df["status"] == "ok"]
    if ok.empty:
        return ""
    header = ["method", "task", "trainable params", "peak memory MiB", "train tokens/s", "train s", "eval s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---", "---"] + ["---:"] * 5) + "|"]
    grouped = ok.groupby(["method", "task"], sort=False)
    for (m, t), g in grouped:
        lines.append(
            f"| {m} | {t} | {int(g.trainable_params.iloc[0]):,} | {g.peak_memory_mb.mean():.0f} | "
            f"{g.tokens_per_s.mean():.0f} | {g.train_seconds.mean():.1f} | {g.eval_seconds.mean():.1f} |"
        )
    return "\n".join(lines) + "\n"


def other_runs(df: pd.DataFrame) -> str:
    bad = df[df["status"] != "ok"]
    if bad.empty:
        return ""
    lines = ["| record | status | error |", "|---|---|---|"]
    for _, r in bad.iterrows():
        err = (r.error or "").replace("|", "\\|").splitlines()[0][:160] if r.error else ""
        lines.append(f"| {r.file} | {r.status} | {err} |")
    return "\n".join(lines) + "\n"


def markdown(directory: str | Path) -> str:
    df = load_frame(directory)
    if df.empty:
        return f"_no records in {directory}_\n"
    main = df[~df.smoke]
    smoke = df[df.smoke]
    parts = ["## Results\n", results_table(main) if not main.empty else "_no full runs_\n"]
    cost = cost_table(main)
    if cost:
        parts += ["\n## Cost\n", cost]
    if not smoke.empty:
        parts += ["\n## Smoke runs (not comparable: shortened budget)\n", results_table(smoke)]
    failed = other_runs(df)
    if failed:
        parts += ["\n## Runs that did not finish\n", failed]
    return "".join(parts)


def summary_table(df: pd.DataFrame) -> str:
    """Markdown, one row per job: what ``bench run`` prints when a sweep ends."""
    if df.empty:
        return "_no records_\n"
    header = ["method", "task", "seed", "status", "metric", "trainable %", "peak MiB", "train tok/s", "train s", "eval s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 4 + ["---:"] * 6) + "|"]

    def num(value: Any, fmt: str) -> str:
        return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)

    for _, r in df.iterrows():
        metric = f"{r.metric} {num(r.score, '.1f')}" if r.status == "ok" else (r.error or "").splitlines()[0][:60] if r.error else "–"
        lines.append(
            f"| {r.method} | {r.task} | {r.seed} | {r.status} | {metric} | {num(r.trainable_pct, '.4f')} | "
            f"{num(r.peak_memory_mb, '.0f')} | {num(r.tokens_per_s, '.0f')} | {num(r.train_seconds, '.1f')} | {num(r.eval_seconds, '.1f')} |"
        )
    return "\n".join(lines) + "\n"
