"""The error classes: ``BenchError`` is what the user can fix, ``UsageError`` is one and also a
``ValueError``. How the CLI prints them (one line, exit code 2) is tested in ``test_cli``."""

from __future__ import annotations

import pytest

from bench.config import Budget, budget_for
from bench.errors import BenchError, UsageError
from bench.registry import UnknownNameError


def test_the_hierarchy():
    assert issubclass(BenchError, Exception) and not issubclass(BenchError, ValueError)
    assert issubclass(UsageError, BenchError) and issubclass(UsageError, ValueError)
    assert UsageError.__mro__[1:3] == (BenchError, ValueError)
    assert not issubclass(UsageError, (RuntimeError, KeyError))


def test_the_message_is_kept_as_given():
    message = "unknown preset 'smok'; did you mean 'smoke'? available: smoke, demo"
    err = UsageError(message)
    assert str(err) == message and err.args == (message,)


@pytest.mark.parametrize("kind", [BenchError, ValueError, UsageError])
def test_a_usage_error_is_caught_as(kind):
    with pytest.raises(kind):
        raise UsageError("bad value")


def test_a_bench_error_is_not_a_value_error():
    with pytest.raises(BenchError) as err:
        raise BenchError("no baseline")
    assert not isinstance(err.value, (ValueError, UsageError))


def test_the_project_raises_usage_errors_for_bad_input():
    with pytest.raises(UsageError, match=r"^budget\.max_steps=0 must be a positive integer$"):
        Budget(max_steps=0)
    with pytest.raises(BenchError, match=r"^unknown preset 'smok'; did you mean 'smoke'\?"):
        budget_for("smok")


def test_an_unknown_name_is_a_usage_error_and_a_key_error():
    err = UnknownNameError("unknown method 'x' available: lora")
    assert isinstance(err, UsageError) and isinstance(err, BenchError) and isinstance(err, KeyError)
    assert str(err) == "unknown method 'x' available: lora"  # not KeyError's quoted repr
