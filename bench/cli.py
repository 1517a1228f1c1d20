"""``python -m bench``: run, ls, report, regress, micro.

Every name is resolved and every config validated before any model loads; user errors are
printed as one line (``error: ...``) with exit code 2, and a traceback only with ``--debug``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import tempfile
from pathlib import Path

from bench.errors import BenchError, UsageError

EPILOG = """examples:
  python -m bench run --methods neuroada,lora --tasks glue_sst2,arc_easy_mc --preset demo --data-dir ../shared/data
  python -m bench run --methods all --tasks toy --preset smoke --output-dir /tmp/runs
  python -m bench run --methods neuroada --set neuroada.k=16 --tasks commonsense --seeds 0,1,2
  python -m bench ls tasks
  python -m bench report --records results/runs
"""


def positive_int_list(text: str, flag: str) -> list[int]:
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise UsageError(f"{flag} '{text}' must be a comma list of non-negative integers, e.g. {flag} 0,1,2")
        out.append(int(part))
    if len(set(out)) != len(out):
        raise UsageError(f"{flag} '{text}' repeats a value; list each once")
    return out


def positive_int(flag: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} '{text}' must be a positive integer") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{flag} '{text}' must be a positive integer")
        return value

    return parse


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2 (argparse's own code for usage errors)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m bench",
        description="peft-bench: fair, reproducible PEFT comparisons.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    run = sub.add_parser(
        "run",
        help="run methods x tasks x seeds and record each job",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = run.add_argument_group("what to run")
    what.add_argument(
        "--methods", default="neuroada,lora", help="comma list of methods, or 'all' (default: neuroada,lora)"
    )
    what.add_argument(
        "--tasks",
        default="glue_sst2,arc_easy_mc",
        help="comma list of tasks, suite names (commonsense, arithmetic, glue, toy), or 'all'",
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
        "--evaluator",
        choices=["native", "lm-eval"],
        default="native",
        help="score with our batched evaluator (default) or with lm-evaluation-harness on the merged model",
    )
    budget = run.add_argument_group("budget (identical for every method)")
    budget.add_argument("--preset", default="demo", help="budget preset: smoke, demo, default, paper (default: demo)")
    budget.add_argument("--max-steps", type=positive_int("--max-steps"), help="optimizer steps")
    budget.add_argument("--batch-size", type=positive_int("--batch-size"), help="examples per optimizer step")
    budget.add_argument(
        "--micro-batch-size", type=positive_int("--micro-batch-size"), help="examples per forward pass"
    )
    budget.add_argument("--max-length", type=positive_int("--max-length"), help="max training tokens per example")
    budget.add_argument(
        "--limit", type=positive_int("--limit"), help="evaluate on the first N items only (marks a smoke run)"
    )
    budget.add_argument("--eval-batch-size", type=positive_int("--eval-batch-size"))
    where = run.add_argument_group("where")
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
    resume = run.add_argument_group("resume")
    resume.add_argument("--force", action="store_true", help="rerun jobs even if their record exists")
    resume.add_argument(
        "--rerun-failed",
        action="store_true",
        help="rerun jobs whose record is failed or diverged (canceled ones always rerun)",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    from bench import executors

    executors.add_arguments(run)

    ls = sub.add_parser("ls", help="list methods, tasks, suites, presets and model aliases")
    ls.add_argument(
        "what", nargs="?", default="all", choices=["all", "methods", "tasks", "suites", "presets", "models"]
    )
    ls.add_argument("--data-dir", default=os.environ.get("BENCH_DATA_DIR"), help="count eval sizes in this data dir")

    report = sub.add_parser("report", help="tables (md, tex, csv) and plots from a folder of records")
    report.add_argument("--records", default="results/runs", help="folder of records (default: results/runs)")
    report.add_argument("--out", default="results", help="writes OUT/tables/ and OUT/plots/ (default: results)")
    report.add_argument("--no-plots", action="store_true", help="tables only")
    report.add_argument("--output", default=None, help="write the printed Markdown to this file as well")

    from bench import regress

    regress_parser = sub.add_parser(
        "regress",
        help="the fixed regression suite against results/baselines/ci.json (accuracy, counts, bytes, time ratios)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    regress.add_arguments(regress_parser)

    from bench import scale

    scale.add_arguments(sub.add_parser("scale", help="the same toy sweep on 1, 2, ... Ray workers: the speed-up"))

    from bench import micro

    micro_parser = sub.add_parser(
        "micro", help="NeuroAda step micro-benchmark (time, memory) against frozen, LoRA, DoRA, full FT, masked sparse"
    )
    micro.add_arguments(micro_parser)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from bench import executors, records, report, runner
    from bench.config import PRESETS, budget_for, parse_overrides

    seeds = positive_int_list(args.seeds, "--seeds")
    overrides = {
        "max_steps": args.max_steps,
        "batch_size": args.batch_size,
        "micro_batch_size": args.micro_batch_size,
        "max_length": args.max_length,
        "eval_limit": args.limit,
        "eval_batch_size": args.eval_batch_size,
    }
    budget = budget_for(args.preset, **overrides)
    options = executors.options_from_args(args, budget)  # --executor and its flags, before anything runs
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise UsageError(
            f"--data-dir '{args.data_dir}' is not a folder; point it at shared/data (or unset BENCH_DATA_DIR)"
        )
    out = Path(args.output_dir)
    _check_writable(out)
    threads = args.threads or (1 if os.environ.get("CI") else None)
    jobs = runner.plan(
        methods_spec=args.methods,
        tasks_spec=args.tasks,
        seeds=seeds,
        model=args.model,
        budget=lambda task: budget_for(args.preset, task.suite, **overrides),
        preset=args.preset,
        smoke=PRESETS[args.preset].smoke or args.limit is not None,
        overrides=parse_overrides(args.set),
        data_dir=args.data_dir,
        output_dir=str(out),
        threads=threads,
        device=args.device,
        command=_rerun_command(args, threads),
        trust_remote_code=args.trust_remote_code,
        progress=not args.no_progress,
        train_per_task=args.train_per_task,
        evaluator=args.evaluator,
    )
    print(f"{len(jobs)} job(s) -> {out}/", file=sys.stderr)
    outcomes = runner.run_sweep(
        jobs,
        force=args.force,
        rerun_failed=args.rerun_failed,
        progress=not args.no_progress,
        executor=args.executor,
        options=options,
    )
    paths = [p for job, _ in outcomes for p in job.record_paths if p.exists()]
    frame = report.frame_of([(p, records.load(p)) for p in paths])
    print(report.summary_table(frame))
    statuses = [status for _, status in outcomes]
    if "canceled" in statuses:
        return 130
    # Skipped records count too ("skipped (failed)"): a resumed sweep with failures still fails.
    return 1 if any("failed" in s or "diverged" in s for s in statuses) else 0


def _rerun_command(args: argparse.Namespace, threads: int | None) -> str:
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


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(
            f"--output-dir '{out}' cannot be created ({err.strerror}); choose a writable folder"
        ) from None
    if not out.is_dir():
        raise UsageError(f"--output-dir '{out}' is not a folder; choose a folder")
    if not os.access(out, os.R_OK | os.X_OK):
        raise UsageError(
            f"--output-dir '{out}' is not readable (resuming reads its records); choose a readable folder"
        )
    try:  # a real write: os.access misses read-only mounts, immutable folders, and root's view
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise UsageError(f"--output-dir '{out}' is not writable ({err.strerror}); choose a writable folder") from None


def cmd_ls(args: argparse.Namespace) -> int:
    import methods
    import tasks
    from bench.config import PRESETS
    from bench.models import ALIASES

    sections = ["methods", "tasks", "suites", "presets", "models"] if args.what == "all" else [args.what]
    for section in sections:
        print(f"{section}:")
        if section == "methods":
            for name in methods.names():
                m = methods.get(name)
                doc = " ".join((sys.modules[type(m).__module__].__doc__ or "").split("\n\n")[0].split())
                doc = doc.split(". ")[0].rstrip(".") + "."
                print(f"  {name:<14} lr={m.config_cls().lr:<8g} {doc}")
        elif section == "tasks":
            print(_columns(_task_rows(args.data_dir), indent="  "))
        elif section == "suites":
            for suite, names in tasks.suites().items():
                print(f"  {suite:<16} {', '.join(names)}")
        elif section == "presets":
            for p in PRESETS.values():
                print(f"  {p.name:<10} {p.description}")
        elif section == "models":
            for a in ALIASES.values():
                print(f"  {a.name:<14} {a.description}" + (f" [hub: {a.hub_name}]" if a.hub_name else ""))
        print()
    return 0


def _task_rows(data_dir: str | None) -> list[list[str]]:
    """One row per task for ``ls tasks``: eval sizes are counted when a data dir is known."""
    import tasks

    rows = [["task", "suite", "kind", "metric", "protocol", "train set", "eval size"]]
    for name in tasks.names():
        t = tasks.get(name)
        train = t.train_file or ("in code" if t.generator else "hub")
        if t.generator is not None:
            size = str(len(t.generator("eval")))
        elif data_dir and t.eval_file and (Path(data_dir) / t.eval_file).is_file():
            with open(Path(data_dir) / t.eval_file, encoding="utf-8") as fh:
                size = str(sum(1 for line in fh if line.strip()))
        else:
            size = "?" if t.eval_file else "hub"
        rows.append([name, t.suite, t.kind, t.primary_metric, t.protocol.split(":")[0], train, size])
    return rows


def _columns(rows: list[list[str]], indent: str = "") -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def cmd_report(args: argparse.Namespace) -> int:
    from bench import report
    from bench.records import write_atomic

    text, written = report.write_report(args.records, args.out, plots=not args.no_plots)
    print(text)
    if written:
        print(f"wrote {len(written)} files under {args.out}/ (tables/, plots/)", file=sys.stderr)
    if args.output:
        write_atomic(Path(args.output), text)
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            # SIGTERM (a scheduler, `kill`) stops a sweep like Ctrl-C: the running job records
            # itself `canceled`, and the next run resumes it.
            signal.signal(signal.SIGTERM, _terminate)
            return cmd_run(args)
        if args.command == "ls":
            return cmd_ls(args)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "regress":
            from bench import regress

            return regress.main(args)
        if args.command == "micro":
            from bench import micro

            return micro.main(args)
        if args.command == "scale":
            from bench import scale

            return scale.main(args)
    except (BenchError, ValueError) as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("canceled", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command}")
    return 2
