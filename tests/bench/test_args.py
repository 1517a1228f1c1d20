"""Flag types shared by the commands: integer lists, positive integers, one-line parser errors."""

from __future__ import annotations

import argparse

import pytest

from bench import args
from bench.errors import UsageError


def test_int_list():
    assert args.int_list("0,1, 2", "--seeds") == [0, 1, 2]
    with pytest.raises(UsageError, match=r"--seeds 'a,1' must be a comma list of non-negative integers"):
        args.int_list("a,1", "--seeds")
    with pytest.raises(UsageError, match="repeats a value"):
        args.int_list("1,1", "--seeds")


@pytest.mark.parametrize("bad", ["0", "-3", "x"])
def test_positive_int(bad):
    assert args.positive_int("--n")("7") == 7
    with pytest.raises(argparse.ArgumentTypeError, match=f"--n '{bad}' must be a positive integer"):
        args.positive_int("--n")(bad)


def test_parser_errors_are_one_line_and_exit_2(capsys):
    parser = args.Parser(prog="p")
    args.add_progress(parser)
    assert parser.parse_args(["--no-progress"]).no_progress is True
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["--bogus"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: unrecognized arguments: --bogus")
