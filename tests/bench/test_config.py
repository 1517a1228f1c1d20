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
    epoch_steps,
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


# ---------------------------------------------------------------------------------------------
# Epochs (#14): steps follow from the train set as the official scripts' HF Trainer counts them
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "n,batch,micro,epochs,expected",
    [
        (170_420, 16, 16, 3, (10_652, 31_956)),  # commonsense_170k, NeuroAda k=20: ceil(n/16) x 3
        (170_420, 8, 8, 3, (21_303, 63_909)),  # k=1: batch 8
        (9, 8, 2, 3, (1, 3)),  # ceil(9/2)=5 micro-batches // 4 = 1 per epoch (transformers 4.45 floors)
        (3, 8, 2, 3, (1, 3)),  # 2 micro-batches // 4 = 0, raised to 1
        (10, 4, 2, 1.5, (2, 3)),  # 5 // 2 = 2 per epoch, ceil(1.5 x 2)
    ],
)
def test_epoch_steps_follow_hf_trainer_4_45(n, batch, micro, epochs, expected):
    assert epoch_steps(n, Budget(batch_size=batch, micro_batch_size=micro, epochs=epochs)) == expected


def test_epoch_steps_needs_epochs_and_rows():
    with pytest.raises(ValueError, match="needs budget.epochs"):
        epoch_steps(10, Budget())
    with pytest.raises(UsageError, match="training set is empty"):
        epoch_steps(0, Budget(epochs=1))


@pytest.mark.parametrize("value", [0, -1, True, "3"])
def test_epochs_must_be_positive(value):
    with pytest.raises(UsageError, match="--epochs"):
        Budget(epochs=value)


def test_protocol_and_warmup_steps_are_checked():
    with pytest.raises(UsageError, match="--protocol 'lorft' must be one of harness, loreft"):
        Budget(protocol="lorft")
    with pytest.raises(UsageError, match="warmup_steps=-1"):
        Budget(warmup_steps=-1)
    assert Budget(warmup_steps=100).warmup_for(31_956) == 100
    assert Budget(warmup_ratio=0.06).warmup_for(31_956) == 1918  # ceil(0.06 x 31956), as HF


def test_paper_preset_counts_epochs_and_max_steps_clears_them():
    paper = budget_for("paper", "commonsense")
    assert (paper.epochs, paper.protocol, paper.dtype, paper.max_length) == (3, "loreft", "bfloat16", 512)
    assert budget_for("paper", "glue").protocol == "harness"  # no loreft protocol for GLUE
    assert budget_for("paper", "commonsense", max_steps=50).epochs is None  # --max-steps counts steps
    assert budget_for("paper", "commonsense", max_steps=50, epochs=2).epochs == 2
