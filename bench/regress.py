"""``python -m bench regress``: a fixed small suite, compared with a committed baseline.

The suite (:data:`SUITE`) runs all five methods through the real runner (one subprocess per
job, records in a temp folder) on tiny in-code models and one packaged model, on one CPU thread:

- accuracy (the task's primary metric, mean over seeds) must stay within the baseline file's
  ``tolerance.accuracy_points`` of the baseline, in either direction: a method that suddenly
  scores better has changed too;
- parameter counts (trainable, total, buffers, head) must be equal, exactly;
- the CPU memory breakdown of one training step (``record.cost.breakdown``: parameter,
  gradient, optimizer-state and saved-for-backward bytes) must be equal, exactly, per seed;
- time only as ratios: each method's training tokens/s over full fine-tuning's on the same task
  in the same run. A ratio more than ``tolerance.time_ratio_factor`` away from the baseline's is
  a warning, not a failure (``--strict-time`` makes it one): these jobs take milliseconds per
  step on a shared 2-core CI machine, where another process or Python's own overhead moves a
  ratio by tens of percent, while the checks above are exact or nearly so.

It prints what moved and exits 1 on a regression. ``--update`` rewrites the baseline
(atomically) from the run; commit it with the change that moved it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.args import add_progress
from bench.errors import UsageError
from bench.regress_rules import (  # noqa: F401  (the rules, re-exported for tests and users)
    ACCURACY_POINTS,
    BREAKDOWN_BYTES,
    COUNTS,
    METHODS,
    TIME_RATIO_FACTOR,
    TIME_REFERENCE,
    Row,
    compare,
    format_ratios,
    format_rows,
)

BASELINE = Path(__file__).resolve().parent.parent / "results" / "baselines" / "ci.json"
BASELINE_SCHEMA = 1
"""Bumped when the baseline file's layout changes."""


@dataclass(frozen=True)
class Case:
    """Tasks run by every method of :data:`METHODS` with one model, budget and seed list."""

    tasks: tuple[str, ...]
    model: str | None
    """``None``: each task's default model (tiny-llama for toy_sum/toy_mc, tiny-bert for toy_cls)."""
    seeds: tuple[int, ...]
    budget: dict[str, Any] = field(default_factory=dict)
    """Overrides of :class:`bench.config.Budget` defaults; identical for every method."""


# A toy step takes milliseconds: a job's cost is its process start and model load (~5 s of CPU
# for the tiny models, ~10 s for MiniLM). 35 jobs, two at a time: ~2-3 minutes on 2 cores.
_TOY_BUDGET = {
    "max_steps": 300,  # ~37 epochs of the 64 toy rows: LoRA and the sparse methods learn (30-100%)
    "batch_size": 8,
    "micro_batch_size": 8,
    "max_length": 32,
    "eval_batch_size": 32,
    "throughput_warmup_steps": 2,  # the first steps pay for lazy allocation
}
SUITE: tuple[Case, ...] = (
    Case(tasks=("toy_sum", "toy_mc", "toy_cls"), model=None, seeds=(0, 1), budget=_TOY_BUDGET),
    Case(
        tasks=("glue_sst2",),
        model="minilm-l6",  # packaged with pip (no network), a real pretrained encoder
        seeds=(0,),
        budget={
            "max_steps": 16,  # a real model and data path; too few steps to learn much (time)
            "batch_size": 8,
            "micro_batch_size": 8,
            "max_length": 48,
            "eval_limit": 100,
            "eval_batch_size": 50,
            "throughput_warmup_steps": 2,
        },
    ),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run a fixed small suite (all five methods; tiny and packaged models; fixed seeds) and compare it\n"
        "with a committed baseline: accuracy within a tolerance, parameter counts and memory bytes exactly,\n"
        "time as ratios between methods (warning only). Exit code 1 on a regression."
    )
    parser.epilog = (
        "examples:\n"
        "  python -m bench regress                       # run the suite, compare, exit 1 on a regression\n"
        "  python -m bench regress --update              # rewrite results/baselines/ci.json from a fresh run\n"
        "  python -m bench regress --output-dir /tmp/rg  # keep the records ...\n"
        "  python -m bench regress --records /tmp/rg     # ... and compare them again without running\n"
    )
    parser.add_argument("--baseline", default=str(BASELINE), help=f"baseline file (default: {_rel(BASELINE)})")
    parser.add_argument("--update", action="store_true", help="run the suite and rewrite the baseline from it")
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("BENCH_DATA_DIR"),
        help="task data laid out like shared/data, for glue_sst2 (default: $BENCH_DATA_DIR)",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--output-dir", default=None, help="keep the suite's records here (default: a temp folder)")
    where.add_argument("--records", default=None, help="compare the records in this folder instead of running")
    parser.add_argument(
        "--strict-time", action="store_true", help="time ratios outside the tolerance fail too (default: warn)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="jobs run at once, each on one thread (default: 2, or 1 on a 1-core machine)",
    )
    add_progress(parser)


# ---------------------------------------------------------------------------------------------
# Running the suite
# ---------------------------------------------------------------------------------------------
def suite_description() -> list[dict[str, Any]]:
    """The suite as JSON, stored in the baseline: a baseline made for another suite is refused."""
    return json.loads(json.dumps([{**asdict(c), "methods": list(METHODS)} for c in SUITE]))  # tuples as lists


def plan_suite(output_dir: Path, data_dir: str | None) -> list:
    from bench.config import Budget
    from bench.plan import RunRequest, plan

    jobs = []
    for case in SUITE:
        request = RunRequest(
            methods=",".join(METHODS),
            tasks=",".join(case.tasks),
            seeds=tuple(case.seeds),
            model=case.model,
            budget=Budget(**case.budget),
            preset="regress",
            smoke=True,  # kept out of report tables, like every run with a reduced budget
            data_dir=data_dir,
            output_dir=str(output_dir),
            threads=1,  # comparable throughput, deterministic reductions
            device="cpu",  # the byte breakdown is exact on CPU
            command="python -m bench regress",
            progress=False,
        )
        jobs += plan(request)
    return jobs


def run_suite(output_dir: Path, data_dir: str | None, workers: int = 1, progress: bool = False) -> float:
    """Run every job of the suite into ``output_dir`` (always rerun); returns the wall seconds.

    ``workers`` local sweeps share the jobs round-robin (records are locked per job, so they
    never collide). Each job has one thread, so accuracy and bytes do not depend on it; time
    ratios are taken between jobs that ran under the same load.
    """
    from concurrent.futures import ThreadPoolExecutor

    from bench import executors

    if data_dir is None or not Path(data_dir).is_dir():
        needs = sorted({t for c in SUITE for t in c.tasks if not t.startswith("toy_")})
        raise UsageError(
            f"regress needs the task data of {', '.join(needs)}: pass --data-dir or set BENCH_DATA_DIR "
            f"to a folder laid out like shared/data (got {data_dir!r})"
        )
    if workers < 1:
        raise UsageError(f"--workers {workers} must be a positive integer")
    jobs = plan_suite(output_dir, data_dir)
    print(f"regress: {len(jobs)} jobs, {workers} at a time -> {output_dir}/", file=sys.stderr)
    started = time.time()
    lanes = [jobs[i::workers] for i in range(workers)]
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda lane: executors.run("local", lane, force=True, progress=progress), lanes))
    return time.time() - started


# ---------------------------------------------------------------------------------------------
# Records -> one summary per (method, task, model), the baseline's ``results``
# ---------------------------------------------------------------------------------------------
def case_key(method: str, task: str, model: str) -> str:
    return f"{method}|{task}|{model}"


def expected_keys() -> list[str]:
    import tasks as task_registry

    return [
        case_key(m, t, c.model or task_registry.get(t).default_model) for c in SUITE for t in c.tasks for m in METHODS
    ]


def check_suite_records(folder: Path) -> None:
    """Records made by this suite: its budgets and seeds, each case's model (``--records``)."""
    import tasks as task_registry
    from bench import records
    from bench.config import Budget

    expected: dict[tuple[str, str], tuple[dict[str, Any], tuple[int, ...]]] = {}
    for case in SUITE:
        for t in case.tasks:
            model = case.model or task_registry.get(t).default_model
            expected[(t, model)] = (asdict(Budget(**case.budget)), case.seeds)
    for path, rec in records.iter_records(folder):
        budget, seeds = expected.get((rec.run["task"], rec.run["model"]), (None, ()))
        if (
            rec.run["method_label"] not in METHODS
            or rec.run.get("budget") != budget
            or rec.run.get("seed") not in seeds
        ):
            raise UsageError(
                f"record '{path}' is not one of the regress suite's jobs (another method, task, model, seed or "
                "budget); compare a folder that only `python -m bench regress --output-dir` wrote"
            )


def summarize(folder: Path) -> dict[str, dict[str, Any]]:
    """Per case key: status, the primary metric (mean and per seed), counts, per-seed byte
    breakdown, and tokens/s (mean over seeds) as a ratio to :data:`TIME_REFERENCE`'s."""
    from bench import records

    groups: dict[str, list] = {}
    for _, rec in records.iter_records(folder):
        run = rec.run
        groups.setdefault(case_key(run["method_label"], run["task"], run["model"]), []).append(rec)
    out: dict[str, dict[str, Any]] = {}
    for key, recs in sorted(groups.items()):
        recs.sort(key=lambda r: r.run["seed"])
        metric = recs[0].result.get("primary_metric") or recs[0].run.get("primary_metric")
        statuses = sorted({r.status for r in recs})
        per_seed = {str(r.run["seed"]): r.result.get("metrics", {}).get(metric) for r in recs}
        scores = [v for v in per_seed.values() if isinstance(v, (int, float))]
        tps = [r.cost.get("train_tokens_per_s") for r in recs]
        tps = [v for v in tps if isinstance(v, (int, float)) and v > 0]
        entry: dict[str, Any] = {
            "status": statuses[0] if len(statuses) == 1 else ",".join(statuses),
            "metric": metric,
            "score": round(sum(scores) / len(scores), 4) if len(scores) == len(recs) else None,
            "per_seed": per_seed,
            **{c: recs[0].cost.get(c) for c in COUNTS},
            "breakdown": {
                str(r.run["seed"]): {b: r.cost["breakdown"][b] for b in BREAKDOWN_BYTES if b in r.cost["breakdown"]}
                for r in recs
                if isinstance(r.cost.get("breakdown"), dict) and "param_bytes" in r.cost["breakdown"]
            },
            "_tokens_per_s": sum(tps) / len(tps) if tps else None,
        }
        for r in recs[1:]:  # counts do not depend on the seed; if they do, that is news
            for c in COUNTS:
                if r.cost.get(c) != entry[c]:
                    entry[c] = f"differs between seeds: {entry[c]} vs {r.cost.get(c)}"
        out[key] = entry
    speed = {key: entry.pop("_tokens_per_s") for key, entry in out.items()}
    for key, entry in out.items():
        _, task, model = key.split("|")
        mine, ref = speed[key], speed.get(case_key(TIME_REFERENCE, task, model))
        entry["tokens_per_s_vs_full_ft"] = round(mine / ref, 4) if mine and ref else None
    return out


# ---------------------------------------------------------------------------------------------
# Baseline file
# ---------------------------------------------------------------------------------------------
def load_baseline(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UsageError(f"no baseline at '{path}'; create it with `python -m bench regress --update`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UsageError(
            f"baseline '{path}' is not valid JSON ({err.msg}, line {err.lineno}); restore it from git or --update"
        ) from None
    version = data.get("schema_version")
    if not isinstance(version, int) or version > BASELINE_SCHEMA:
        raise UsageError(
            f"baseline '{path}' has schema_version {version!r}; this peft-bench reads {BASELINE_SCHEMA}: "
            "upgrade peft-bench, or rewrite it with --update"
        )
    if data.get("suite") != suite_description():
        raise UsageError(
            f"baseline '{path}' was made for another suite than bench/regress.py's SUITE; "
            "rewrite it with `python -m bench regress --update` and commit it with the suite change"
        )
    for name in ("accuracy_points", "time_ratio_factor"):
        value = data.get("tolerance", {}).get(name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise UsageError(f"baseline '{path}': tolerance.{name}={value!r} must be a positive number")
    return data


def write_baseline(path: Path, results: dict[str, dict[str, Any]], old: dict[str, Any] | None) -> None:
    from bench import measure, runner
    from bench.records import write_atomic

    tolerance = (old or {}).get("tolerance") or {
        "accuracy_points": ACCURACY_POINTS,
        "time_ratio_factor": TIME_RATIO_FACTOR,
    }
    import torch

    env = measure.environment(torch.device("cpu"))
    data = {
        "schema_version": BASELINE_SCHEMA,
        "about": (
            "Baseline of `python -m bench regress`; rewrite with `python -m bench regress --update`. "
            "accuracy: primary metric, mean over seeds, must stay within tolerance.accuracy_points; "
            "parameter counts and breakdown bytes: exact; tokens_per_s_vs_full_ft: warn outside "
            "tolerance.time_ratio_factor (not gated)."
        ),
        "tolerance": tolerance,
        "suite": suite_description(),
        "made_with": {
            **runner.git_state(),
            "packages": env.get("packages"),
            "cpu": env.get("cpu"),
            "python": env.get("python"),
        },
        "results": results,
    }
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------
def main(args: argparse.Namespace) -> int:
    baseline_path = Path(args.baseline)
    old = None
    if not args.update:
        old = load_baseline(baseline_path)  # before the run: a missing or stale baseline fails at once
    elif baseline_path.is_file():
        try:
            old = load_baseline(baseline_path)  # kept for its tolerance, and to show what moved
        except UsageError:
            old = None  # another suite or layout: --update replaces it

    seconds = None
    if args.records:
        check_suite_records(Path(args.records))
        now = summarize(Path(args.records))
        source = f"the records in {args.records}"
    else:
        tmp = None if args.output_dir else tempfile.mkdtemp(prefix="bench-regress-")
        folder = Path(args.output_dir or tmp)
        try:
            seconds = run_suite(folder, args.data_dir, args.workers, progress=not args.no_progress)
            now = summarize(folder)
        finally:
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)
        source = f"a fresh run ({seconds / 60:.1f} min)"
    print(f"regress: {len(now)} cases (method x task x model) from {source}; baseline {_rel(baseline_path)}")

    failures: list[Row] = []
    warnings: list[Row] = []
    if old is not None:
        tol = old["tolerance"]
        print(
            f"rules: {_metric_names(now)} within ±{tol['accuracy_points']:g} points of the baseline (mean over "
            f"seeds); parameter counts and memory-breakdown bytes exact; time as tokens/s ratios to "
            f"{TIME_REFERENCE} in the same run, {'failing' if args.strict_time else 'warning'} outside "
            f"x{tol['time_ratio_factor']:g}\n"
        )
        rows, checks, ratios = compare(old["results"], now, tol, strict_time=args.strict_time)
        if rows:
            print(f"what moved ({len(rows)} of {checks} checks):")
            print(format_rows(rows))
        else:
            print(f"nothing moved: all {checks} checks equal the baseline")
        print(f"\ntime: train tokens/s ÷ {TIME_REFERENCE}'s on the same task, this run (baseline):")
        print(format_ratios(ratios) + "\n")
        failures = [r for r in rows if r.fails]
        warnings = [r for r in rows if r.verdict.startswith("warning")]

    if args.update:
        unfinished = [k for k in expected_keys() if now.get(k, {}).get("status") != "ok"]
        if unfinished:
            raise UsageError(
                f"not writing a baseline from a run whose jobs did not all finish ok ({', '.join(unfinished[:4])}); "
                "fix them first"
            )
        write_baseline(baseline_path, now, old)
        print(f"regress: wrote {_rel(baseline_path)} ({len(now)} cases); commit it with the change that moved it")
        return 0
    verdict = f"{len(failures)} regression(s), {len(warnings)} warning(s)"
    if failures:
        print(f"regress: FAIL: {verdict}; if the change is intended: python -m bench regress --update")
        return 1
    print(f"regress: ok: {verdict}")
    return 0


def _metric_names(now: dict[str, dict[str, Any]]) -> str:
    names = sorted({str(v.get("metric")) for v in now.values()})
    return "/".join(names) if names else "accuracy"
