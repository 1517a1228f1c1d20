"""``python -m bench report``: tables (Markdown, LaTeX, CSV) and plots from a folder of records."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", default="results/runs", help="folder of records (default: results/runs)")
    parser.add_argument("--out", default="results", help="writes OUT/tables/ and OUT/plots/ (default: results)")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    parser.add_argument("--output", default=None, help="write the printed Markdown to this file as well")


def main(args: argparse.Namespace) -> int:
    from bench import report
    from bench.records import write_atomic

    text, written = report.write_report(args.records, args.out, plots=not args.no_plots)
    print(text)
    if written:
        print(f"wrote {len(written)} file(s) under {args.out}/ (tables/, plots/)", file=sys.stderr)
    if args.output:
        write_atomic(Path(args.output), text)
        print(f"wrote {args.output}", file=sys.stderr)
    return 0
