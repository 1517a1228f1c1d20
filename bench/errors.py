"""Errors the user can fix: the CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class BenchError(Exception):
    """A user-facing error whose message names the bad value and how to fix it."""


class UsageError(BenchError, ValueError):
    """Bad input on the command line or in a config (unknown name, bad value, missing file)."""
