"""``python -m bench report``: tables (Markdown, LaTeX, CSV) and plots from a folder of records."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", default="results/runs", help="folder of records (default: results/runs)")
    parser.add_argument("--out", default="results", help="writes OUT/tables/ and OUT/plots/ (default: results)")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    parser.add_argument("--output", default=None, help="write the printed Markdown to this file as well")
    parser.add_argument(
        "--reference",
        default=None,
        metavar="NAME",
        help="add the published numbers of NAME (paper: NeuroAda, LoRA, DoRA on LLaMA-7B) beside ours, "
        "with our difference and whether it is within the tolerance (tables/reference.md)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="accuracy points within which a difference from the paper counts as reproduced (default: 1.0)",
    )


def main(args: argparse.Namespace) -> int:
    from bench import report
    from bench.records import write_atomic

    if args.reference is not None:
        from bench.report.reference import load

        load(args.reference)  # an unknown name is a usage error before anything is read
    if args.tolerance is not None and not args.tolerance >= 0:
        raise UsageError(f"--tolerance {args.tolerance} must be >= 0 (accuracy points, e.g. 1.0)")
    text, written = report.write_report(
        args.records, args.out, plots=not args.no_plots, reference=args.reference, tolerance=args.tolerance
    )
    print(text)
    if written:
        print(f"wrote {len(written)} file(s) under {args.out}/ (tables/, plots/)", file=sys.stderr)
    if args.output:
        write_atomic(Path(args.output), text)
        print(f"wrote {args.output}", file=sys.stderr)
    return 0
