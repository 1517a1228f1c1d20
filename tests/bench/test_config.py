from __future__ import annotations

import dataclasses

import pytest

import methods
from bench.config import (
    PRESETS,
    Budget,
    budget_for,
    build_config,
    config_from_dict,
    config_to_dict,
    method_label,
    parse_overrides,
)
from bench.errors import UsageError


def test_presets_build_valid_budgets():
    for name in PRESETS:
        assert isinstance(budget_for(name), Budget)


def test_cli_overrides_win_and_none_is_ignored():
    b = budget_for("smoke", max_steps=7, eval_limit=None)
    assert b.max_steps == 7 and b.eval_limit == PRESETS["smoke"].budget["eval_limit"]


@pytest.mark.parametrize(
    "field,value",
    [("max_steps", 0), ("batch_size", -1), ("eval_limit", 0), ("warmup_ratio", 1.5), ("weight_decay", -0.1)],
)
def test_budget_rejects_bad_values(field, value):
    with pytest.raises(UsageError, match=field.replace("eval_limit", "--limit")):
        Budget(**{field: value})


def test_grad_accum():
    assert Budget(batch_size=16, micro_batch_size=4).grad_accum == 4


def test_parse_overrides():
    assert parse_overrides(["neuroada.k=16", "lora.r=4", "neuroada.selection=random"]) == {
        "neuroada": {"k": "16", "selection": "random"},
        "lora": {"r": "4"},
    }


@pytest.mark.parametrize("name", methods.names())
def test_every_method_config_roundtrips_through_json(name):
    cls = methods.get(name).config_cls
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
    cfg = cls()
    assert config_from_dict(cls, config_to_dict(cfg)) == cfg
    assert cfg.lr > 0


def test_build_config_converts_types():
    cfg = build_config(methods.get("full_ft").config_cls, "full_ft", {"lr": "1e-4"})
    assert cfg.lr == pytest.approx(1e-4)


def test_method_label():
    assert method_label("neuroada", {}) == "neuroada"
    assert method_label("neuroada", {"k": "16", "lr": "1e-3"}) == "neuroada@k=16,lr=1e-3"


def test_presets_may_differ_between_suites_and_cli_overrides_win():
    assert budget_for("demo", "glue").max_steps == PRESETS["demo"].suites["glue"]["max_steps"]
    assert budget_for("demo", "commonsense_mc").max_steps == PRESETS["demo"].budget["max_steps"]
    assert budget_for("demo", "glue", max_steps=5).max_steps == 5
