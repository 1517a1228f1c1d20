"""``python -m bench rerun RECORD.json``: repeat a job from its record and say whether it scores
the same. On CPU, with the same seed, threads and code, it must: a mismatch is a bug or a
change of code, data or packages (the record's git sha and package versions tell which).

The job runs as any other (a fresh process, ``bench.launch``) into a temporary folder, or
``--output-dir``; only the record's task is evaluated (a job that trained a suite's shared set
trains on the same set again).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from typing import Any

from bench.args import add_progress
from bench.errors import UsageError

SPEC_FIELDS = (
    "method",
    "method_config",
    "seed",
    "model",
    "budget",
    "preset",
    "smoke",
    "data_dir",
    "threads",
    "device",
    "command",
    "trust_remote_code",
    "train_per_task",
    "evaluator",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("record", help="a record written by `bench run` (RESULTS/<method>--<task>--seed<N>.json)")
    parser.add_argument("--output-dir", default=None, help="keep the rerun's record here (default: a temp folder)")
    add_progress(parser)


def spec_of(record, output_dir: str, progress: bool):
    """The :class:`~bench.spec.JobSpec` that reruns ``record``'s task."""
    from bench.spec import JobSpec

    run = record.run
    missing = [f for f in ("method", "method_label", "task", "seed", "budget", "model") if f not in run]
    if missing:
        raise UsageError(f"the record lacks run.{', run.'.join(missing)}; it cannot be rerun")
    fields: dict[str, Any] = {f: run.get(f) for f in SPEC_FIELDS if f in run}
    fields.setdefault("preset", "custom")
    fields.setdefault("smoke", False)
    fields.setdefault("data_dir", None)
    fields.setdefault("threads", None)
    fields.setdefault("device", "cpu")
    fields.setdefault("command", "")
    fields.setdefault("method_config", {})
    return JobSpec(
        **fields,
        label=run["method_label"],
        task=run["task"],
        eval_tasks=(run["task"],),
        output_dir=output_dir,
        progress=progress,
    )


def differences(old, new) -> list[tuple[str, Any, Any]]:
    """(what, recorded, rerun) for each metric, the training losses and the per-item predictions
    that differ."""
    out = []
    a, b = old.result.get("metrics", {}), new.result.get("metrics", {})
    for name in sorted(set(a) | set(b)):
        if a.get(name) != b.get(name):
            out.append((f"metric {name}", a.get(name), b.get(name)))
    if old.result.get("losses") != new.result.get("losses"):
        out.append(("training losses", old.result.get("final_loss"), new.result.get("final_loss")))
    items_a = (old.result.get("items") or {}).get("prediction")
    items_b = (new.result.get("items") or {}).get("prediction")
    if items_a is not None and items_b is not None and items_a != items_b:
        n = sum(x != y for x, y in zip(items_a, items_b, strict=False)) + abs(len(items_a) - len(items_b))
        out.append(("item predictions", f"{n} of {len(items_a)} differ", ""))
    if old.status != new.status:
        out.append(("status", old.status, new.status))
    return out


def main(args: argparse.Namespace) -> int:
    from bench import launch, records

    old = records.load(args.record)
    if old.status != "ok":
        raise UsageError(f"record '{args.record}' ended {old.status}: there are no metrics to compare")
    with tempfile.TemporaryDirectory(prefix="bench-rerun-") as tmp:
        out = args.output_dir or tmp
        spec = spec_of(old, out, not args.no_progress)
        print(f"rerun: {spec.title} -> {out}/", file=sys.stderr)
        launch.run_in_subprocess(spec)
        new = records.load(spec.record_path)
    diffs = differences(old, new)
    metrics = old.result.get("metrics", {})
    for name, value in sorted(metrics.items()):
        print(f"{name:<16} recorded {value!r:<22} rerun {new.result.get('metrics', {}).get(name)!r}")
    if diffs:
        for what, a, b in diffs:
            print(f"differs: {what}: {a!r} -> {b!r}")
        print(f"rerun: MISMATCH ({len(diffs)} difference(s)); recorded with git {old.run.get('git_sha')}")
        return 1
    print("rerun: match: every metric, training loss and item prediction is the same")
    return 0
