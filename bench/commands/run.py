"""``python -m bench run``: plan methods x tasks x seeds, run every job, print the table."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench.args import add_progress, int_list, positive_int
from bench.errors import UsageError

EPILOG = """examples:
  python -m bench run --methods neuroada,lora --tasks glue_sst2,arc_easy_mc --preset demo --data-dir ../shared/data
  python -m bench run --methods all --tasks toy --preset smoke --output-dir /tmp/runs
  python -m bench run --methods neuroada --set neuroada.k=16 --tasks commonsense --seeds 0,1,2
  python -m bench run --methods neuroada,shira,ia3,vera,peft:my_adapter/ --tasks glue_sst2
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    what = parser.add_argument_group("what to run")
    what.add_argument(
        "--methods",
        default="base,neuroada,lora",
        help="comma list of methods and peft presets (bench ls methods), peft:PATH (a peft adapter_config.json), "
        "'all' (the built-in methods) or 'peft' (every preset) (default: base,neuroada,lora)",
    )
    what.add_argument(
        "--tasks",
        default="glue_sst2",
        help="comma list of tasks, suite names (commonsense, arithmetic, glue, toy), or 'all' (default: glue_sst2)",
    )
    what.add_argument("--seeds", default="0", help="comma list of seeds (default: 0)")
    what.add_argument(
        "--model", default=None, help="alias, local folder or hub name (default: each task's default model)"
    )
    what.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="METHOD.FIELD=VALUE",
        help="override a method setting, e.g. --set neuroada.k=16 (repeatable)",
    )
    what.add_argument(
        "--train-per-task",
        action="store_true",
        help="train each task on its own train file (default: tasks sharing a training set, such as the "
        "commonsense mixture or math_10k, train once and are evaluated one by one, as in the papers)",
    )
    what.add_argument(
        "--match-params",
        default=None,
        metavar="METHOD",
        help="size every other method (LoRA/DoRA r, NeuroAda/masked sparse k, a peft preset's r) to METHOD's "
        "trainable count on each model; methods without a size knob run unmatched",
    )
    what.add_argument(
        "--evaluator",
        choices=["native", "lm-eval"],
        default="native",
        help="score with our batched evaluator (default) or with lm-evaluation-harness on the merged model",
    )
    add_budget_arguments(parser.add_argument_group("budget (identical for every method)"))
    add_tune_arguments(parser.add_argument_group("learning-rate search (bench.tune; the same for every method)"))
    where = parser.add_argument_group("where")
    where.add_argument(
        "--data-dir",
        default=os.environ.get("BENCH_DATA_DIR"),
        help="offline task data laid out like shared/data (default: $BENCH_DATA_DIR; unset: load from the hub)",
    )
    where.add_argument("--output-dir", default="results/runs", help="where records go (default: results/runs)")
    where.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    where.add_argument(
        "--threads",
        type=positive_int("--threads"),
        default=None,
        help="torch CPU threads (default: 1 under CI, else torch's default)",
    )
    where.add_argument(
        "--trust-remote-code", action="store_true", help="allow hub models to run their own code (off by default)"
    )
    resume = parser.add_argument_group("resume")
    resume.add_argument("--force", action="store_true", help="rerun jobs even if their record exists")
    resume.add_argument(
        "--rerun-failed",
        action="store_true",
        help="rerun jobs whose record is failed or diverged (canceled ones always rerun)",
    )
    add_progress(parser)
    from bench import executor_args

    executor_args.add_arguments(parser)


def add_tune_arguments(group) -> None:
    group.add_argument(
        "--tune-lr",
        action="store_true",
        help="search each method's rate on a validation split of the training file before the final runs",
    )
    group.add_argument(
        "--lr-grid",
        type=positive_int("--lr-grid"),
        default=5,
        metavar="N",
        help="rates per method, half a decade apart around its configured rate (default: 5, x0.1 to x10)",
    )
    group.add_argument(
        "--val-size",
        type=positive_int("--val-size"),
        default=200,
        metavar="N",
        help="training rows held out as the validation split (default: 200); the final runs never train on them",
    )


def add_budget_arguments(group) -> None:
    group.add_argument("--preset", default="demo", help="budget preset: smoke, demo, default, paper (default: demo)")
    group.add_argument("--max-steps", type=positive_int("--max-steps"), help="optimizer steps")
    group.add_argument(
        "--epochs", type=float, help="passes over the training set; steps follow from its size (replaces --max-steps)"
    )
    group.add_argument(
        "--protocol",
        choices=["harness", "loreft"],
        help="prompt and scoring of commonsense/arithmetic: the tasks' own (harness) or the official "
        "NeuroAda/LoReFT scripts' (loreft; the paper preset's)",
    )
    group.add_argument("--batch-size", type=positive_int("--batch-size"), help="examples per optimizer step")
    group.add_argument("--micro-batch-size", type=positive_int("--micro-batch-size"), help="examples per forward pass")
    group.add_argument("--max-length", type=positive_int("--max-length"), help="max training tokens per example")
    group.add_argument(
        "--limit", type=positive_int("--limit"), help="evaluate on the first N items only (marks a smoke run)"
    )
    group.add_argument("--eval-batch-size", type=positive_int("--eval-batch-size"))


def main(args: argparse.Namespace, final: bool = True) -> int:
    """Plan, search learning rates (``--tune-lr``), run the final jobs (unless ``final`` is
    False: ``bench tune``), print the table."""
    from bench import executor_args, executors, records, report, tune
    from bench.config import PRESETS, budget_for, parse_overrides
    from bench.plan import RunRequest, plan

    # SIGTERM (a scheduler, `kill`) stops a sweep like Ctrl-C: the running job records itself
    # `canceled`, and the next run resumes it.
    signal.signal(signal.SIGTERM, _terminate)
    seeds = int_list(args.seeds, "--seeds")
    overrides = {
        "max_steps": args.max_steps,
        "batch_size": args.batch_size,
        "micro_batch_size": args.micro_batch_size,
        "max_length": args.max_length,
        "eval_limit": args.limit,
        "eval_batch_size": args.eval_batch_size,
        "epochs": args.epochs,
        "protocol": args.protocol,
    }
    budget = budget_for(args.preset, **overrides)
    options = executor_args.options_from_args(args, budget)  # --executor and its flags, before anything runs
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise UsageError(
            f"--data-dir '{args.data_dir}' is not a folder; point it at shared/data (or unset BENCH_DATA_DIR)"
        )
    out = Path(args.output_dir)
    check_writable(out)
    threads = args.threads or (1 if os.environ.get("CI") else None)
    request = RunRequest(
        methods=args.methods,
        tasks=args.tasks,
        seeds=tuple(seeds),
        model=args.model,
        budget=lambda task: budget_for(args.preset, task.suite, **overrides),
        preset=args.preset,
        smoke=PRESETS[args.preset].smoke or args.limit is not None,
        overrides=parse_overrides(args.set),
        data_dir=args.data_dir,
        output_dir=str(out),
        threads=threads,
        device=args.device,
        command=rerun_command(args, threads),
        trust_remote_code=args.trust_remote_code,
        progress=not args.no_progress,
        train_per_task=args.train_per_task,
        evaluator=args.evaluator,
        match_params=args.match_params,
        budget_overrides={k: v for k, v in overrides.items() if v is not None},
    )
    jobs = plan(request)
    run_options = dict(force=args.force, rerun_failed=args.rerun_failed, progress=not args.no_progress)
    if args.tune_lr:
        trials = tune.trial_jobs(jobs, args.lr_grid, args.val_size)
        flat = [t for group in trials.values() for t in group]
        print(f"{len(flat)} learning-rate trial(s) -> {out}/tune/", file=sys.stderr)
        started = time.time()
        executors.run(args.executor, flat, options=options, **run_options)
        print(f"stage: learning-rate search took {(time.time() - started) / 60:.1f} min", file=sys.stderr)
        jobs = tune.tuned(jobs, trials, args.val_size)
        for line in tune.report_lines(jobs):
            print(line, file=sys.stderr)
    if not final:
        return 0
    print(f"{len(jobs)} job(s) -> {out}/ (job logs in {out}/logs/)", file=sys.stderr)
    started = time.time()
    outcomes = executors.run(args.executor, jobs, options=options, **run_options)
    print(f"stage: {len(jobs)} final job(s) took {(time.time() - started) / 60:.1f} min", file=sys.stderr)
    paths = [p for job, _ in outcomes for p in job.record_paths if p.exists()]
    frame = report.frame_of([(p, records.load(p)) for p in paths])
    print(report.summary_table(frame))
    statuses = [status for _, status in outcomes]
    if "canceled" in statuses:
        return 130
    # Skipped records count too ("skipped (failed)"): a resumed sweep with failures still fails.
    return 1 if any("failed" in s or "diverged" in s for s in statuses) else 0


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt


def rerun_command(args: argparse.Namespace, threads: int | None) -> str:
    """The command line, with the defaults taken from the environment spelled out, so that the
    record's ``run.command`` reruns the job anywhere ($BENCH_DATA_DIR, $CI's one thread)."""
    argv = sys.argv[1:]
    given = {a.split("=", 1)[0] for a in argv}
    extra = []
    if args.data_dir is not None and "--data-dir" not in given:
        extra += ["--data-dir", str(Path(args.data_dir).resolve())]
    if threads is not None and "--threads" not in given:
        extra += ["--threads", str(threads)]
    return "python -m bench " + shlex.join(argv + extra)


def check_writable(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--output-dir '{out}' is not a folder; choose a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(
            f"--output-dir '{out}' cannot be created ({err.strerror}); choose a writable folder"
        ) from None
    if not os.access(out, os.R_OK | os.X_OK):
        raise UsageError(
            f"--output-dir '{out}' is not readable (resuming reads its records); choose a readable folder"
        )
    try:  # a real write: os.access misses read-only mounts, immutable folders, and root's view
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise UsageError(f"--output-dir '{out}' is not writable ({err.strerror}); choose a writable folder") from None
