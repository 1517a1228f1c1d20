"""The method registry: names are the method file stems, errors say "did you mean"."""

from __future__ import annotations

from pathlib import Path

import pytest

import methods
from bench.errors import UsageError
from bench.registry import METHODS, Registry, UnknownNameError


class _Named:
    def __init__(self, name: str) -> None:
        self.name = name


def test_method_names_equal_file_stems():
    """STYLE #5: ``methods/__init__.py`` imports every ``methods/<name>.py``; ``_*.py`` is shared code."""
    stems = {p.stem for p in Path(methods.__file__).parent.glob("*.py") if not p.stem.startswith("_")}
    assert set(methods.names()) == stems
    assert len(methods.names()) == len(stems)


def test_every_method_has_name_and_config():
    for name in methods.names():
        method = methods.get(name)
        assert method.name == name
        assert isinstance(method, methods.Method)
        assert isinstance(method.config_cls, type)


def test_unknown_name_says_did_you_mean_and_lists_the_available():
    with pytest.raises(UnknownNameError) as err:
        methods.get("lorra")
    message = str(err.value)
    assert "did you mean 'lora'" in message
    assert "available: " + ", ".join(methods.names()) in message
    assert isinstance(err.value, UsageError) and isinstance(err.value, KeyError)


def test_unknown_name_with_nothing_close_still_lists_the_available():
    with pytest.raises(UnknownNameError) as err:
        methods.get("zzzzzz")
    assert "did you mean" not in str(err.value)
    assert "available: " in str(err.value)


def test_duplicate_registration_is_an_error():
    registry: Registry = Registry("thing")
    registry.register(_Named("alpha"))
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(_Named("alpha"))
    assert registry.names() == ["alpha"]
    with pytest.raises(ValueError, match="registered twice"):
        METHODS.register(_Named("lora"))


@pytest.mark.parametrize("bad", ["LoRA", "Full_FT", "9lives", "with-dash", "", None])
def test_names_must_be_lowercase_identifiers(bad):
    registry: Registry = Registry("thing")
    with pytest.raises(ValueError, match="must match"):
        registry.register(_Named(bad))
    assert len(registry) == 0


def test_register_as_class_decorator_instantiates():
    registry: Registry = Registry("thing")

    @registry.register
    class Thing:
        name = "thing_one"

    assert isinstance(registry.get("thing_one"), Thing)
    assert "thing_one" in registry and list(registry) == [registry.get("thing_one")]
