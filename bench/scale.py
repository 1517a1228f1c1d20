"""``python -m bench scale``: the same toy sweep on 1, 2, ... Ray workers, and the speed-up.

Each worker count gets a fresh local Ray cluster with that many CPUs (one job per CPU, one
torch thread per job) and a fresh output folder. The cluster's start-up is not timed: the
wall time is the sweep's, from submitting the first job to the last record. The records of
every worker count must hold the same metrics (the exit code is 1 otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from bench.args import add_progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", default="1,2", help="comma list of Ray worker (CPU) counts (default: 1,2)")
    parser.add_argument("--methods", default="full_ft", help="methods of the toy sweep (default: full_ft)")
    parser.add_argument("--tasks", default="toy", help="tasks of the sweep (default: toy, 3 tasks)")
    parser.add_argument("--seeds", default="0,1", help="seeds (default: 0,1; with the defaults, 6 jobs)")
    parser.add_argument("--preset", default="smoke", help="budget preset (default: smoke)")
    parser.add_argument("--output-dir", default=None, help="keep the records here (default: a temporary folder)")
    add_progress(parser)


def main(args: argparse.Namespace) -> int:
    from bench import executors
    from bench.args import int_list
    from bench.config import PRESETS, budget_for
    from bench.launch import ExecutorOptions
    from bench.plan import RunRequest, plan

    ray = executors.require("ray")
    workers = int_list(args.workers, "--workers")
    seeds = int_list(args.seeds, "--seeds")
    budget = budget_for(args.preset)
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        base = Path(args.output_dir or tmp)
        rows, results = [], {}
        for n in workers:
            request = RunRequest(
                methods=args.methods,
                tasks=args.tasks,
                seeds=tuple(seeds),
                budget=budget,
                preset=args.preset,
                smoke=PRESETS[args.preset].smoke,
                output_dir=str(base / f"workers{n}"),
                threads=1,
                device="cpu",
                command=f"python -m bench scale --workers {args.workers}",
                progress=False,
            )
            jobs = plan(request)
            load = os.getloadavg()[0]  # other work on the machine shrinks the speed-up: say how busy it was
            ray.init(num_cpus=n, include_dashboard=False, log_to_driver=False)
            try:
                start = time.perf_counter()
                outcomes = executors.run(
                    "ray", jobs, force=True, progress=not args.no_progress, options=ExecutorOptions(gpus_per_job=0)
                )
                seconds = time.perf_counter() - start
            finally:
                ray.shutdown()
            statuses = sorted({status for _, status in outcomes})
            results[n] = {
                p.name: json.loads(p.read_text())["result"].get("metrics")
                for job, _ in outcomes
                for p in job.record_paths
            }
            rows.append((n, len(jobs), seconds, ",".join(statuses), load))
            print(f"{n} worker(s): {len(jobs)} jobs in {seconds:.1f}s ({','.join(statuses)})", flush=True)
    base_seconds = rows[0][2]
    print(f"\n{os.cpu_count()} CPU cores; load average (1 min) before each run in the last column")
    print("| workers | jobs | wall s | jobs/min | speed-up | ideal | load before |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n, count, seconds, _, load in rows:
        rate, speedup, ideal = 60 * count / seconds, base_seconds / seconds, n / workers[0]
        print(f"| {n} | {count} | {seconds:.1f} | {rate:.1f} | {speedup:.2f}x | {ideal:.2f}x | {load:.1f} |")
    same = all(r == results[workers[0]] for r in results.values())
    ok = same and all(row[3] == "ok" for row in rows)
    print(f"\nmetrics identical across worker counts: {'yes' if same else 'NO'}")
    return 0 if ok else 1
