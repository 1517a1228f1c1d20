"""``python -m bench``: a table of commands (:data:`COMMANDS`), each a module with
``add_arguments(parser)`` and ``main(args)``.

Every name is resolved and every config validated before any model loads; user errors are
printed as one line (``error: ...``) with exit code 2, and a traceback only with ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from bench.args import Parser
from bench.errors import BenchError

COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("bench.commands.run", "run methods x tasks x seeds and record each job"),
    "tune": ("bench.commands.tune", "search each method's learning rate on a validation split (no final run)"),
    "ls": ("bench.commands.ls", "list methods, tasks, suites, presets and model aliases"),
    "doctor": (
        "bench.commands.doctor",
        "check this machine for a run: torch, CUDA, GPU, NVML, bf16, kernels, models, data (--gpu: GPU checks)",
    ),
    "report": ("bench.commands.report", "tables (md, tex, csv) and plots from a folder of records"),
    "rerun": ("bench.commands.rerun", "repeat a job from its record and say whether it scores the same"),
    "regress": (
        "bench.regress",
        "the fixed regression suite against results/baselines/ci.json (accuracy, counts, bytes, time ratios)",
    ),
    "scale": ("bench.scale", "the same toy sweep on 1, 2, ... Ray workers: the speed-up"),
    "evalspeed": (
        "bench.evalspeed",
        "native evaluator against lm-eval on the same items and model: requests/s, ratio, score differences",
    ),
    "micro": (
        "bench.micro",
        "NeuroAda step micro-benchmark (time, memory) against frozen, LoRA, DoRA, full FT, masked sparse",
    ),
}
"""Command name -> (module with ``add_arguments`` and ``main``, one-line help)."""

EPILOG = """examples:
  python -m bench run --methods neuroada,lora --tasks glue_sst2,arc_easy_mc --preset demo --data-dir ../shared/data
  python -m bench run --methods all --tasks toy --preset smoke --output-dir /tmp/runs
  python -m bench ls tasks
  python -m bench doctor --gpu
  python -m bench report --records results/runs
"""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m bench",
        description="peft-bench: fair, reproducible PEFT comparisons.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, (module, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, formatter_class=argparse.RawDescriptionHelpFormatter)
        importlib.import_module(module).add_arguments(command)
        command.set_defaults(module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return importlib.import_module(args.module).main(args)
    except (BenchError, ValueError) as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("canceled", file=sys.stderr)
        return 130
