"""Learning-rate search (``bench tune``, ``bench run --tune-lr``): the same search for every method,
on a validation split, before the eval set is touched.

Per method and task group: a log grid of ``n`` rates around the method's configured rate
(steps of half a decade: ``n=5`` is x0.1, x0.32, x1, x3.2, x10), each trial an ordinary job
(:class:`~bench.spec.JobSpec` with ``evaluate_on="validation"``) that trains under the final
budget on the training file minus ``holdout`` rows and is scored on those rows
(:mod:`bench.validation`: the task's metric, or the loss). Trials run on any executor and
resume like runs; their records go to ``OUTPUT_DIR/tune/``. The rate with the best validation
score becomes the final jobs' rate, and the search (grid, every trial's score, the criterion,
whether the choice sits at the grid's edge, the trials' cost) goes into each final record
(``run.lr_search``). The final jobs hold out the same rows, so they never train on them.

Methods that train nothing on a group (``base`` on a causal task) are not searched.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import records
from bench.errors import UsageError
from bench.spec import JobSpec

HALF_DECADE = math.sqrt(10.0)


def grid(center: float, n: int) -> list[float]:
    """``n`` rates around ``center`` in steps of half a decade (even ``n``: one more above)."""
    if n < 1:
        raise UsageError(f"--lr-grid {n} must be at least 1")
    low = -((n - 1) // 2)
    return [float(f"{center * HALF_DECADE**i:.3g}") for i in range(low, low + n)]


def searched(job: JobSpec) -> bool:
    """Whether ``job``'s method trains anything on its task, so that its rate matters."""
    import methods
    import tasks

    method = methods.get(job.method)
    return getattr(method, "trains_backbone", True) or tasks.get(job.task).head == "sequence_classification"


def trial_jobs(finals: list[JobSpec], n: int, holdout: int) -> dict[tuple[str, str], list[JobSpec]]:
    """Per (label, task group) of the final jobs, one trial per rate, on the group's first seed."""
    out: dict[tuple[str, str], list[JobSpec]] = {}
    for job in finals:
        key = (job.label, job.task)
        if key in out or not searched(job):
            continue
        out[key] = [
            replace(
                job,
                label=f"{job.label}@lr={lr:g}",
                method_config={**job.method_config, "lr": lr},
                output_dir=str(Path(job.output_dir) / "tune"),
                eval_tasks=(job.task,),
                holdout=holdout,
                evaluate_on="validation",
            )
            for lr in grid(job.method_config["lr"], n)
        ]
    return out


def trial_result(job: JobSpec) -> dict[str, Any]:
    """One trial's rate, status, validation score and cost, from its record."""
    rate = job.method_config["lr"]
    try:
        rec = records.load(job.record_path)
    except (UsageError, OSError):
        return {"lr": rate, "status": "missing", "score": None}
    metric = rec.run.get("primary_metric")
    score = (rec.result.get("metrics") or {}).get(metric)
    seconds = sum(rec.cost.get(k) or 0.0 for k in ("train_seconds", "eval_seconds"))
    return {
        "lr": rate,
        "status": rec.status,
        "score": score if isinstance(score, (int, float)) and math.isfinite(score) else None,
        "metric": metric,
        "higher_is_better": (rec.result.get("higher_is_better") or {}).get(metric, True),
        "seconds": seconds,
    }


def choose(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """The search's summary: the best scored trial's rate (ties: the smaller rate), every trial,
    and ``edge`` when the best rate is the grid's smallest or largest."""
    scored = [t for t in trials if t["status"] == "ok" and t["score"] is not None]
    summary: dict[str, Any] = {
        "grid": [t["lr"] for t in trials],
        "trials": [{k: t.get(k) for k in ("lr", "status", "score")} for t in trials],
        "seconds": sum(t.get("seconds") or 0.0 for t in trials),
    }
    if not scored:
        return {**summary, "chosen": None, "criterion": None, "edge": False}
    higher = scored[0]["higher_is_better"]
    best = max(scored, key=lambda t: (t["score"] if higher else -t["score"], -t["lr"]))
    edge = len(trials) > 1 and best["lr"] in (min(summary["grid"]), max(summary["grid"]))
    return {
        **summary,
        "chosen": best["lr"],
        "criterion": scored[0]["metric"],
        "higher_is_better": higher,
        "edge": edge,
    }


def tuned(finals: list[JobSpec], trials: dict[tuple[str, str], list[JobSpec]], holdout: int) -> list[JobSpec]:
    """The final jobs with the chosen rates and their searches; the same held-out rows."""
    searches = {key: choose([trial_result(t) for t in jobs]) for key, jobs in trials.items()}
    out = []
    for job in finals:
        search = searches.get((job.label, job.task))
        if search is None:
            out.append(replace(job, holdout=holdout, lr_search={"note": "nothing trains: no search"}))
            continue
        search = {**search, "holdout": holdout, "seed": trials[(job.label, job.task)][0].seed}
        config = dict(job.method_config)
        if search["chosen"] is not None:
            config["lr"] = search["chosen"]
        out.append(replace(job, method_config=config, holdout=holdout, lr_search=search))
    return out


def report_lines(finals: list[JobSpec]) -> list[str]:
    """One line per searched (method, task group): the chosen rate and the trials' scores."""
    lines, seen = [], set()
    for job in finals:
        search = job.lr_search or {}
        if (job.label, job.task) in seen or "grid" not in search:
            continue
        seen.add((job.label, job.task))
        scores = ", ".join(
            f"{t['lr']:g}: {t['score']:.4g}" if t["score"] is not None else f"{t['lr']:g}: {t['status']}"
            for t in search["trials"]
        )
        chosen = "none (every trial failed)" if search["chosen"] is None else f"{search['chosen']:g}"
        edge = "  [at the edge of the grid: widen it]" if search["edge"] else ""
        lines.append(f"lr {job.label} x {job.task}: {chosen} ({search['criterion']}: {scores}){edge}")
    return lines
