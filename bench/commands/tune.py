"""``python -m bench tune``: the learning-rate search of ``bench run --tune-lr`` alone (bench.tune):
the trials run (and resume) under OUTPUT_DIR/tune/, and the chosen rate of each method and
task group is printed; no final run."""

from __future__ import annotations

import argparse

from bench.commands import run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    run.add_arguments(parser)


def main(args: argparse.Namespace) -> int:
    args.tune_lr = True
    return run.main(args, final=False)
