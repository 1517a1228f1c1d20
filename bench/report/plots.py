"""Plots from records only (matplotlib, Agg canvas, no pyplot state): PNG and PDF of

- ``accuracy_vs_params``: score vs trainable-parameter percentage (log x), one panel per suite;
- ``accuracy_vs_memory``: score vs peak memory with the Pareto front (less memory, higher
  score), one panel per suite;
- ``throughput``: training tokens/s per method (bars, ± std over seeds), grouped by task;
- ``k_sweep``: score vs k for each method recorded with several k (``neuroada@k=16``: the k is
  ``run.method_config.k``), one panel per task; only written when such records exist;
- ``loss_curves``: training loss per step per method (a moving average over 1/25 of the steps;
  mean over seeds, min-max band), one panel per training set;
- ``wins_ties_losses``: the win/tie/loss matrix of the main table as a heatmap;
- ``learning_rates``: validation score against learning rate per method (``bench.tune``).

A suite's score is its average column in the main table (over the tasks every method has), or
its single task's score; the same runs as the tables enter (finished, not smoke). Each file is
written to a temp name in its folder and moved into place with ``os.replace``.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.records import write_atomic
from bench.report.frame import comparable
from bench.report.table import main_table, mean_or_none, method_order, task_order, tuning_frame

FORMATS = ("png", "pdf")
_METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None}}  # byte-stable files


def save(fig: Figure, stem: Path) -> list[Path]:
    """``stem.png`` and ``stem.pdf``, each written atomically."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    out = []
    for fmt in FORMATS:
        target = stem.with_name(f"{stem.name}.{fmt}")
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=150, bbox_inches="tight", metadata=_METADATA[fmt])
        write_atomic(target, buf.getvalue())
        out.append(target)
    return out


def _colors(methods: list[str]) -> dict[str, str]:
    palette = [f"C{i}" for i in range(10)]
    return {m: palette[i % len(palette)] for i, m in enumerate(methods)}


def suite_points(df: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """Per suite: (suite, y label, frame with method, score, trainable_pct, peak_memory_mb)."""
    table = main_table(df)
    ok = comparable(df)
    out = []
    for suite, cols in table.groups:
        col = next((c for c in cols if c.is_average), cols[0] if len(cols) == 1 else None)
        if col is None:
            continue
        label = f"avg {suite}" if col.is_average else f"{col.key} ({col.metric})"
        rows = []
        runs = ok[ok["suite"].fillna("other") == suite]
        for m in table.methods:
            cell = table.cells.get((m, col.key))
            if cell is None:
                continue
            mine = runs[runs["method"] == m]
            rows.append(
                {
                    "method": m,
                    "score": cell.mean,
                    "trainable_pct": mean_or_none(mine["trainable_pct"]),
                    "peak_memory_mb": mean_or_none(mine["peak_memory_mb"]),
                }
            )
        if rows:
            out.append((suite, label, pd.DataFrame(rows)))
    return out


def pareto_front(points: pd.DataFrame, x: str, y: str, higher_is_better: bool = True) -> pd.DataFrame:
    """The points no other point beats on both: lower ``x`` and better ``y``; sorted by ``x``."""
    pts = points.dropna(subset=[x, y]).sort_values([x, y], ascending=[True, not higher_is_better])
    front, best = [], None
    for _, p in pts.iterrows():
        value = p[y]
        if best is None or (value > best if higher_is_better else value < best):
            front.append(p)
            best = value
    return pd.DataFrame(front, columns=points.columns)


def _panels(n: int, width: float = 4.2, height: float = 3.4, per_row: int = 4) -> tuple[Figure, list]:
    """``n`` axes in rows of at most ``per_row``; unused cells of the grid are hidden."""
    cols, rows = min(n, per_row), -(-n // per_row)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = list(fig.subplots(rows, cols, squeeze=False).flat)
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _annotate(ax, frame: pd.DataFrame, x: str, colors: dict[str, str]) -> None:
    for _, p in frame.iterrows():
        if pd.isna(p[x]):
            continue
        ax.scatter([p[x]], [p["score"]], color=colors[p["method"]], s=36, zorder=3)
        ax.annotate(p["method"], (p[x], p["score"]), textcoords="offset points", xytext=(4, 4), fontsize=7)


def accuracy_vs_params(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    panels = [p for p in suite_points(df) if p[2]["trainable_pct"].notna().any()]
    if not panels:
        return []
    colors = _colors(method_order(comparable(df)))
    fig, axes = _panels(len(panels))
    for ax, (suite, label, frame) in zip(axes, panels, strict=True):
        _annotate(ax, frame, "trainable_pct", colors)
        ax.set_xscale("log")
        ax.set_xlabel("trainable parameters (% of base model, log)")
        ax.set_ylabel(label)
        ax.set_title(suite)
        ax.grid(True, which="both", alpha=0.3)
    return save(fig, out_dir / "accuracy_vs_params")


def accuracy_vs_memory(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    panels = [p for p in suite_points(df) if p[2]["peak_memory_mb"].notna().any()]
    if not panels:
        return []
    colors = _colors(method_order(comparable(df)))
    table = main_table(df)
    direction = {suite: all(c.higher_is_better for c in cols) for suite, cols in table.groups}
    fig, axes = _panels(len(panels))
    for ax, (suite, label, frame) in zip(axes, panels, strict=True):
        front = pareto_front(frame, "peak_memory_mb", "score", direction.get(suite, True))
        if len(front) > 1:
            ax.step(
                front["peak_memory_mb"], front["score"], where="post", color="0.4", lw=1, ls="--", label="Pareto front"
            )
            ax.legend(fontsize=7, loc="lower right")
        _annotate(ax, frame, "peak_memory_mb", colors)
        ax.scatter(front["peak_memory_mb"], front["score"], s=90, facecolors="none", edgecolors="0.3", zorder=4)
        ax.set_xlabel("peak memory (MiB)")
        ax.set_ylabel(label)
        ax.set_title(suite)
        ax.grid(True, alpha=0.3)
    return save(fig, out_dir / "accuracy_vs_memory")


def throughput(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    ok = comparable(df)
    ok = ok[ok["tokens_per_s"].notna()]
    if ok.empty:
        return []
    methods = method_order(ok)
    tasks = task_order(list(ok["task"]))
    colors = _colors(methods)
    fig = Figure(figsize=(max(5.0, 0.5 * len(tasks) * len(methods) + 1.5), 3.6), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(methods)
    for i, m in enumerate(methods):
        xs, means, stds = [], [], []
        for j, t in enumerate(tasks):
            values = ok[(ok["method"] == m) & (ok["task"] == t)]["tokens_per_s"].astype(float)
            if len(values):
                xs.append(j - 0.4 + width * (i + 0.5))
                means.append(values.mean())
                stds.append(values.std() if len(values) > 1 else 0.0)
        ax.bar(xs, means, width, yerr=stds, capsize=2, label=m, color=colors[m])
    ax.set_xticks(range(len(tasks)), tasks, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("training tokens/s (non-padding)")
    ax.set_title("throughput (warm-up steps excluded; ± std over seeds)")
    ax.legend(fontsize=7, ncols=min(len(methods), 4))
    ax.grid(True, axis="y", alpha=0.3)
    return save(fig, out_dir / "throughput")


def k_sweep_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Comparable runs of the methods recorded with at least two values of k."""
    ok = comparable(df)
    ok = ok[ok["k"].notna() & ok["method_name"].notna()]
    if ok.empty:
        return ok
    swept = [m for m, g in ok.groupby("method_name", sort=False) if g["k"].nunique() >= 2]
    return ok[ok["method_name"].isin(swept)]


def k_sweep(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    sweep = k_sweep_frame(df)
    if sweep.empty:
        return []
    tasks = [t for t in task_order(list(sweep["task"])) if sweep[sweep["task"] == t]["k"].nunique() >= 2]
    if not tasks:
        return []
    fig, axes = _panels(len(tasks), width=3.6)
    for ax, task in zip(axes, tasks, strict=True):
        sub = sweep[sweep["task"] == task]
        for name, g in sub.groupby("method_name", sort=False):
            stats = g.groupby("k")["score"].agg(["mean", "std"]).sort_index()
            ks = [float(k) for k in stats.index]
            ax.errorbar(ks, stats["mean"], yerr=stats["std"].fillna(0.0), marker="o", capsize=2, label=name)
        ks = sorted({float(k) for k in sub["k"]})
        if all(k > 0 for k in ks):
            ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [f"{k:g}" for k in ks])
        ax.minorticks_off()
        ax.set_xlabel("k (weights per output row)")
        ax.set_ylabel(f"{task} ({sub['metric'].iloc[0]})")
        ax.set_title(task)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    return save(fig, out_dir / "k_sweep")


def loss_curves(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Training loss per optimizer step (moving average over 1/25 of the steps), one panel per
    training set: per method the mean over seeds, with a band from the lowest to the highest
    seed. Tasks trained in one job share one curve: each (method, training task, seed) counts once."""
    ok = comparable(df)
    ok = ok[ok["losses"].apply(lambda v: isinstance(v, list) and len(v) > 0)]
    if ok.empty:
        return []
    ok = ok.drop_duplicates(subset=["method", "train_task", "seed"])
    methods = method_order(ok)
    groups = task_order(list(ok["train_task"].fillna(ok["task"])))
    colors = _colors(methods)
    fig, axes = _panels(len(groups), width=4.0)
    for ax, train_task in zip(axes, groups, strict=True):
        sub = ok[ok["train_task"].fillna(ok["task"]) == train_task]
        for m in methods:
            curves = [np.asarray(v, dtype=float) for v in sub[sub["method"] == m]["losses"]]
            if not curves:
                continue
            n = min(len(c) for c in curves)  # seeds of one budget have the same number of steps
            # a moving average over ~1/25 of the steps: one step's loss on 8 examples is noise
            window = max(1, n // 25)
            kernel = np.ones(window) / window
            stacked = np.stack([np.convolve(c[:n], kernel, mode="valid") for c in curves])
            steps = np.arange(window, n + 1)
            ax.plot(steps, stacked.mean(axis=0), color=colors[m], lw=1.2, label=f"{m} ({len(curves)} seed(s))")
            if len(curves) > 1:
                ax.fill_between(steps, stacked.min(axis=0), stacked.max(axis=0), color=colors[m], alpha=0.2, lw=0)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss (moving average)")
        ax.set_title(f"trained on {train_task}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    return save(fig, out_dir / "loss_curves")


def wins_ties_losses(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Heatmap of the win/tie/loss matrix: colour = wins minus losses over tasks (row method
    against column method), each cell annotated ``w/t/l``."""
    table = main_table(df)
    if len(table.methods) < 2 or not table.stats:
        return []
    methods = table.methods
    net = np.zeros((len(methods), len(methods)))
    for i, a in enumerate(methods):
        for j, b in enumerate(methods):
            if a != b:
                w, _, loss = (int(x) for x in table.wtl.loc[a, b].split("/"))
                net[i, j] = w - loss
    limit = max(1.0, float(np.abs(net).max()))
    size = 1.0 + 0.9 * len(methods)
    fig = Figure(figsize=(size + 1.5, size), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(net, cmap="RdBu", vmin=-limit, vmax=limit)
    for i, a in enumerate(methods):
        for j, b in enumerate(methods):
            ax.text(j, i, "–" if a == b else table.wtl.loc[a, b], ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(methods)), methods, fontsize=8)
    ax.set_xlabel("against")
    ax.set_title("wins/ties/losses over tasks (paired tests, α = 0.05)", fontsize=9)
    fig.colorbar(image, ax=ax, label="wins − losses")
    return save(fig, out_dir / "wins_ties_losses")


def learning_rates(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Validation score against learning rate (log x) per method, one panel per training set;
    the chosen rate is circled."""
    frame = tuning_frame(df)
    if frame.empty:
        return []
    colors = _colors(method_order(comparable(df)))
    groups = list(dict.fromkeys(frame["trained_on"]))
    fig, axes = _panels(len(groups), width=4.0)
    for ax, group in zip(axes, groups, strict=True):
        sub = frame[frame["trained_on"] == group]
        for _, r in sub.iterrows():
            pts = sorted((lr, v) for lr, v in r["scores"].items() if v is not None)
            if not pts:
                continue
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, marker="o", ms=3, lw=1.2, color=colors.get(r["method"], "0.3"), label=r["method"])
            if r["lr"] in r["scores"] and r["scores"][r["lr"]] is not None:
                ax.scatter([r["lr"]], [r["scores"][r["lr"]]], s=80, facecolors="none", edgecolors="0.2", zorder=4)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (log)")
        ax.set_ylabel(f"validation {sub['criterion'].iloc[0]}")
        ax.set_title(f"trained on {group} (circled: chosen)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    return save(fig, out_dir / "learning_rates")


def write_all(df: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Every plot that the records allow; returns the files written."""
    out_dir = Path(out_dir)
    if comparable(df).empty:
        return []
    written: list[Path] = []
    for plot in (
        accuracy_vs_params,
        accuracy_vs_memory,
        throughput,
        k_sweep,
        loss_curves,
        wins_ties_losses,
        learning_rates,
    ):
        written += plot(df, out_dir)
    return written
