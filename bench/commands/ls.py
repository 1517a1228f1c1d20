"""``python -m bench ls``: methods, tasks, suites, presets and model aliases."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

SECTIONS = ["methods", "tasks", "suites", "presets", "models"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", nargs="?", default="all", choices=["all", *SECTIONS])
    parser.add_argument(
        "--data-dir", default=os.environ.get("BENCH_DATA_DIR"), help="count eval sizes in this data dir"
    )


def main(args: argparse.Namespace) -> int:
    import methods
    import tasks
    from bench.config import PRESETS
    from bench.models import ALIASES

    for section in SECTIONS if args.what == "all" else [args.what]:
        print(f"{section}:")
        if section == "methods":
            for name in methods.builtins():
                m = methods.get(name)
                doc = " ".join((sys.modules[type(m).__module__].__doc__ or "").split("\n\n")[0].split())
                doc = doc.split(". ")[0].rstrip(".") + "."
                print(f"  {name:<14} lr={m.config_cls().lr:<8g} {doc}")
            print(preset_lines())
        elif section == "tasks":
            print(columns(task_rows(args.data_dir), indent="  "))
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


def preset_lines() -> str:
    """The peft presets: name, default rate, description and parameter formula."""
    import methods
    from methods.peft_config import preset_info

    lines = ["  peft presets (--methods NAME, all of them: --methods peft; any peft config: --methods peft:PATH):"]
    for name in methods.presets():
        info = preset_info(name)
        lines.append(f"  {name:<14} lr={info['lr']:<8g} {info['description']}")
        lines.append(f"  {'':<14} {'':<11} trainable: {info['formula']}")
    return "\n".join(lines)


def task_rows(data_dir: str | None) -> list[list[str]]:
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


def columns(rows: list[list[str]], indent: str = "") -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
