"""Skeletons: weightless models from a config, the checks run on them before any job, and the
random-weight variant used to count parameters."""

from __future__ import annotations

import pytest

import methods
from bench import skeleton
from bench.config import build_config
from bench.errors import UsageError


def test_a_skeleton_has_shapes_but_no_weights():
    model = skeleton.model_skeleton("tiny-llama", "causal_lm", 0)
    assert {p.device.type for p in model.parameters()} == {"meta"}
    weights = skeleton.model_skeleton("tiny-llama", "causal_lm", 0, device="cpu")
    assert {p.device.type for p in weights.parameters()} == {"cpu"}
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in weights.named_parameters()]


def test_a_k_too_large_for_a_layer_is_named():
    model = skeleton.model_skeleton("tiny-bert", "sequence_classification", 2)
    cfg = build_config(methods.get("neuroada").config_cls, "neuroada", {"k": "4096"})
    (problem,) = skeleton.validate_on_skeleton(model, cfg, method="neuroada", model="tiny-bert")
    assert problem.startswith("neuroada.k=4096 must be smaller than the input size")
    assert "use neuroada.k <=" in problem


def test_unknown_targets_are_named():
    model = skeleton.model_skeleton("tiny-llama", "causal_lm", 0)
    cfg = build_config(methods.get("lora").config_cls, "lora", {"target_modules": "nope"})
    (problem,) = skeleton.validate_on_skeleton(model, cfg, method="lora", model="tiny-llama")
    assert problem.startswith("lora.target_modules on model 'tiny-llama':")


def test_neuroada_compact_inputs_are_resolved_on_the_skeleton():
    model = skeleton.model_skeleton("tiny-llama", "causal_lm", 0)
    config_cls = methods.get("neuroada").config_cls
    for settings in ({}, {"compact_inputs": ""}, {"compact_inputs": "up_proj"}):
        cfg = build_config(config_cls, "neuroada", settings)
        assert skeleton.validate_on_skeleton(model, cfg, method="neuroada", model="tiny-llama") == []
    cfg = build_config(config_cls, "neuroada", {"compact_inputs": "upproj"})
    (problem,) = skeleton.validate_on_skeleton(model, cfg, method="neuroada", model="tiny-llama")
    assert problem.startswith("neuroada.compact_inputs: target module 'upproj' matches no module")
    assert problem.endswith("(model 'tiny-llama')")


def test_methods_without_targets_have_nothing_to_check():
    model = skeleton.model_skeleton("tiny-llama", "causal_lm", 0)
    for name in ("full_ft", "base"):
        assert skeleton.validate_on_skeleton(model, methods.get(name).config_cls(), method=name, model="x") == []


def test_a_folder_without_a_readable_config_is_a_usage_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    (tmp_path / "model.safetensors").write_bytes(b"")  # a folder with weights: its config decides
    with pytest.raises(UsageError, match="unreadable config.json"):
        skeleton.model_skeleton(str(tmp_path), "causal_lm", 0)
