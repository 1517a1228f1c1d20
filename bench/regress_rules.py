"""The rules of ``bench regress``: what must stay equal to the baseline, within what tolerance,
and how what moved is printed. ``bench.regress`` runs the suite and reads and writes the file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

METHODS = ("neuroada", "lora", "dora", "masked_sparse", "full_ft")
"""Fixed, not ``methods.names()``: a newly registered method must not change the suite silently."""
TIME_REFERENCE = "full_ft"
"""Throughput is compared as a ratio to this method's, measured on the same task in the same run."""

ACCURACY_POINTS = 5.0
"""Default tolerance written by ``--update``: 5 points is about 3 of the 64 toy items (2 seeds x 32)
or 5 of the 100 SST-2 items flipping, which float differences between CPUs (AVX2 vs AVX-512,
another BLAS) can cause on near-ties; a method that stops learning moves far more."""
TIME_RATIO_FACTOR = 2.0
"""Default time tolerance written by ``--update``: warn when a ratio halves or doubles."""

BREAKDOWN_BYTES = (
    "param_bytes",
    "trainable_param_bytes",
    "buffer_bytes",
    "grad_bytes",
    "optimizer_state_bytes",
    "saved_bytes",
    "saved_param_bytes",
    "saved_input_bytes",
    "saved_activation_bytes",
    "total_bytes",
)
COUNTS = ("trainable_params", "total_params", "buffer_params", "head_params")


# ---------------------------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------------------------
@dataclass
class Row:
    check: str
    key: str
    baseline: Any
    now: Any
    verdict: str
    """``REGRESSION``, ``warning``, ``within tolerance`` (moved, allowed) or ``new`` (not in the baseline)."""

    @property
    def fails(self) -> bool:
        return self.verdict.startswith("REGRESSION")


def compare(
    baseline: dict[str, dict[str, Any]],
    now: dict[str, dict[str, Any]],
    tolerance: dict[str, Any],
    *,
    strict_time: bool = False,
) -> tuple[list[Row], int, dict[str, tuple[Any, Any]]]:
    """Rows for every check that moved, the number of checks made, and the time ratios
    ``{key: (baseline, now)}`` (reported in full, since they are not exact)."""
    points = float(tolerance["accuracy_points"])
    factor = float(tolerance["time_ratio_factor"])
    rows: list[Row] = []
    checks = 0
    ratios: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(baseline) | set(now)):
        base, cur = baseline.get(key), now.get(key)
        checks += 1
        if cur is None:
            rows.append(Row("record", key, "present", "missing", "REGRESSION (the job did not run)"))
            continue
        if base is None:
            rows.append(Row("record", key, "absent", "present", "new (not in the baseline; --update adds it)"))
            continue
        if cur["status"] != "ok":
            rows.append(Row("status", key, base["status"], cur["status"], "REGRESSION (the job did not finish ok)"))
            continue
        checks += 1
        b, c = base.get("score"), cur.get("score")
        if b != c:
            if not isinstance(b, (int, float)) or not isinstance(c, (int, float)):
                rows.append(Row(cur["metric"], key, b, c, "REGRESSION (no score)"))
            elif abs(c - b) > points + 1e-9:
                side = "worse" if c < b else "better: if intended, --update"
                rows.append(Row(cur["metric"], key, b, c, f"REGRESSION ({side}; beyond ±{points:g})"))
            else:
                rows.append(Row(cur["metric"], key, b, c, f"within tolerance (±{points:g})"))
        for count in COUNTS:
            checks += 1
            if base.get(count) != cur.get(count):
                rows.append(Row(count, key, base.get(count), cur.get(count), "REGRESSION (exact)"))
        base_bd, cur_bd = base.get("breakdown") or {}, cur.get("breakdown") or {}
        both = []
        for seed in sorted(set(base_bd) | set(cur_bd), key=int):
            if seed not in cur_bd:
                rows.append(Row(f"breakdown seed {seed}", key, "present", "missing", "REGRESSION (not measured)"))
            elif seed not in base_bd:
                rows.append(Row(f"breakdown seed {seed}", key, "absent", "present", "new (--update adds it)"))
            else:
                both.append(seed)
        for name in BREAKDOWN_BYTES:
            moved: dict[tuple[Any, Any], list[str]] = {}  # (baseline, now) -> seeds: one row for equal moves
            for seed in both:
                checks += 1
                pair = (base_bd[seed].get(name), cur_bd[seed].get(name))
                if pair[0] != pair[1]:
                    moved.setdefault(pair, []).append(seed)
            for (b, c), seeds in moved.items():
                label = f"{name} (seed{'s' if len(seeds) > 1 else ''} {','.join(seeds)})"
                rows.append(Row(label, key, b, c, "REGRESSION (exact)"))
        b, c = base.get("tokens_per_s_vs_full_ft"), cur.get("tokens_per_s_vs_full_ft")
        if key.startswith(TIME_REFERENCE + "|"):
            continue  # 1.0 by definition
        ratios[key] = (b, c)
        checks += 1
        if isinstance(b, (int, float)) and isinstance(c, (int, float)) and b > 0 and c > 0:
            moved = c / b
            if moved > factor or moved < 1 / factor:
                verdict = "REGRESSION" if strict_time else "warning"
                rows.append(Row("tokens/s ÷ full_ft", key, b, c, f"{verdict} (x{moved:.2f}; outside x{factor:g})"))
    return rows, checks, ratios


# ---------------------------------------------------------------------------------------------
# Printing
# ---------------------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.2f}" if math.isfinite(value) else str(value)
    return str(value)


def _change(b: Any, c: Any) -> str:
    if isinstance(b, (int, float)) and isinstance(c, (int, float)) and not isinstance(b, bool):
        d = c - b
        if isinstance(b, int) and isinstance(c, int):
            return f"{d:+,}"
        return f"{d:+.2f}"
    return ""


def _table(rows: list[list[str]], indent: str = "  ") -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def format_rows(rows: list[Row]) -> str:
    head = ["check", "method", "task", "model", "baseline", "now", "change", "verdict"]
    body = [
        [r.check, *r.key.split("|"), _fmt(r.baseline), _fmt(r.now), _change(r.baseline, r.now), r.verdict]
        for r in rows
    ]
    return _table([head, *body])


def format_ratios(ratios: dict[str, tuple[Any, Any]]) -> str:
    cases: dict[tuple[str, str], dict[str, str]] = {}
    for key, (b, c) in ratios.items():
        method, task, model = key.split("|")
        cases.setdefault((task, model), {})[method] = f"{_fmt(c)} ({_fmt(b)})"
    methods = [m for m in METHODS if m != TIME_REFERENCE]
    body = [[task, model, *(cells.get(m, "-") for m in methods)] for (task, model), cells in cases.items()]
    return _table([["task", "model", *methods], *body])
