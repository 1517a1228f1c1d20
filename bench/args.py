"""Flag types and flags shared by the commands, so that a flag behaves the same in each."""

from __future__ import annotations

import argparse

from bench.errors import UsageError


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2 (argparse's own code for usage errors)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def int_list(text: str, flag: str) -> list[int]:
    """``0,1,2`` -> [0, 1, 2]: non-negative integers, each once."""
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
    """An argparse ``type`` that accepts integers > 0 and names ``flag`` otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} '{text}' must be a positive integer") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{flag} '{text}' must be a positive integer")
        return value

    return parse


def add_progress(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``: no progress bars (every long-running command takes it)."""
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
