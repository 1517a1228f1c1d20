"""NeuroAda the method: apply on tiny models, gradients through them, compact inputs' defaults,
merge, save/load, selection, errors, budgets (the layer itself: ``test_neuroada_layer.py``).
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from transformers import BertForSequenceClassification, LlamaForCausalLM

import methods
from bench.errors import UsageError
from bench.models import tiny_bert, tiny_llama
from methods._base import count_parameters, find_targets
from methods.neuroada import ADAPTER_FILE, NeuroAdaConfig, NeuroAdaLinear, neuroada_layers

METHOD = methods.get("neuroada")
IDS = torch.tensor([[1, 40, 41, 42, 43, 44, 2, 0], [1, 50, 51, 52, 2, 0, 0, 0]])
EXACT = dict(rtol=0.0, atol=0.0)


def _logits(model, ids=IDS):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=(ids != 0).long()).logits


def _randomize_values(model, scale: float = 0.5, seed: int = 3):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in neuroada_layers(model):
            layer.neuroada_values.copy_(torch.randn(layer.neuroada_values.shape, generator=gen) * scale)


# ---------------------------------------------------------------------------------------------
# Gradients through a model (the layer's own checks: test_neuroada_layer.py)
# ---------------------------------------------------------------------------------------------


def test_bf16_base_trains_fp32_values(value_path):
    model = tiny_llama(0).to(torch.bfloat16)
    METHOD.apply(model, NeuroAdaConfig(k=2))
    layer = dict(neuroada_layers(model))["model.layers.0.mlp.down_proj"]
    assert layer.neuroada_values.dtype == torch.float32 and layer.weight.dtype == torch.bfloat16
    model(input_ids=IDS, labels=IDS).loss.backward()
    grads = [m.neuroada_values.grad for _, m in neuroada_layers(model)]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("reentrant", [True, False])
def test_gradient_checkpointing_gives_the_same_gradients_and_restores_w(reentrant):
    def grads(checkpointing):
        model = METHOD.apply(tiny_llama(0), NeuroAdaConfig(k=2))
        _randomize_values(model)
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
        model.train()
        weights = {n: layer.base_layer.weight.clone() for n, layer in neuroada_layers(model)}
        model(input_ids=IDS, labels=IDS).loss.backward()
        assert all(torch.equal(layer.base_layer.weight, weights[n]) for n, layer in neuroada_layers(model))
        return {n: layer.neuroada_values.grad for n, layer in neuroada_layers(model)}

    plain, checkpointed = grads(False), grads(True)
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Compact inputs: which layers
# ---------------------------------------------------------------------------------------------


def test_compact_inputs_default_to_down_proj_and_can_be_named_or_turned_off():
    def compacted(**kwargs):
        model = METHOD.apply(tiny_llama(0), NeuroAdaConfig(**kwargs))
        return sorted({n.rsplit(".", 1)[-1] for n, layer in neuroada_layers(model) if layer.compact_input})

    assert compacted() == ["down_proj"]
    assert compacted(compact_inputs=()) == []
    assert compacted(compact_inputs=("o_proj", "down_proj")) == ["down_proj", "o_proj"]
    assert compacted(target_modules=("q_proj",)) == []  # no down_proj adapted: nothing to compact
    bert = METHOD.apply(tiny_bert(0), NeuroAdaConfig())
    assert not any(layer.compact_input for _, layer in neuroada_layers(bert))
    model = tiny_llama(0)
    with pytest.raises(UsageError, match=r"compact_inputs=\('down_proj',\) names no layer that NeuroAda adapts"):
        METHOD.apply(model, NeuroAdaConfig(target_modules=("q_proj",), compact_inputs=("down_proj",)))
    assert not neuroada_layers(model) and all(p.requires_grad for p in model.parameters())  # nothing changed
    with pytest.raises(UsageError, match="matches no module"):
        METHOD.apply(tiny_llama(0), NeuroAdaConfig(compact_inputs=("downproj",)))


def test_compact_inputs_survive_save_and_load(tmp_path):
    model = METHOD.apply(tiny_llama(0), NeuroAdaConfig(compact_inputs=("up_proj",)))
    METHOD.save(model, str(tmp_path))
    loaded = METHOD.load(tiny_llama(0), str(tmp_path))
    assert sorted({n.rsplit(".", 1)[-1] for n, m in neuroada_layers(loaded) if m.compact_input}) == ["up_proj"]


# ---------------------------------------------------------------------------------------------
# Merge
# ---------------------------------------------------------------------------------------------


def test_method_merge_returns_plain_model_with_equal_outputs():
    model = METHOD.apply(tiny_llama(0), NeuroAdaConfig(k=2))
    targets = [name for name, _ in neuroada_layers(model)]
    _randomize_values(model)
    adapted = _logits(model)
    merged = METHOD.merge(model)
    assert isinstance(merged, LlamaForCausalLM)
    assert not any(isinstance(m, NeuroAdaLinear) for m in merged.modules())
    assert all(type(merged.get_submodule(name)) is nn.Linear for name in targets)
    assert not any("neuroada" in name for name, _ in merged.named_parameters())
    assert not any("neuroada" in name for name, _ in merged.named_buffers())
    torch.testing.assert_close(_logits(merged), adapted, **EXACT)  # same W + S bits, same GEMMs
    weights = {n: p.clone() for n, p in merged.named_parameters()}
    METHOD.merge(merged)  # nothing left to fold in: merging twice never adds twice
    assert all(torch.equal(p, weights[n]) for n, p in merged.named_parameters())


# ---------------------------------------------------------------------------------------------
# Save and load
# ---------------------------------------------------------------------------------------------
def test_save_load_on_fresh_base(tmp_path):
    cfg = NeuroAdaConfig(k=3, selection="random", seed=7)
    model = METHOD.apply(tiny_llama(0), cfg)
    _randomize_values(model)
    METHOD.save(model, str(tmp_path))
    from safetensors import safe_open

    with safe_open(str(tmp_path / ADAPTER_FILE), framework="pt") as f:
        keys = set(f.keys())
        meta = f.metadata()
    names = [n for n, _ in neuroada_layers(model)]
    assert keys == {f"{n}.neuroada_values" for n in names} | {f"{n}.neuroada_idx" for n in names}
    assert json.loads(meta["config"])["seed"] == 7

    loaded = METHOD.load(tiny_llama(0), str(tmp_path))
    torch.testing.assert_close(_logits(loaded), _logits(model), **EXACT)
    for (n, a), (m, b) in zip(neuroada_layers(model), neuroada_layers(loaded), strict=True):
        assert n == m and torch.equal(a.neuroada_idx, b.neuroada_idx)
        assert torch.equal(a.neuroada_values, b.neuroada_values)
        assert b.neuroada_values.requires_grad and not b.weight.requires_grad
        assert b.config == cfg


def test_load_onto_wrong_base_is_a_usage_error(tmp_path):
    model = METHOD.apply(tiny_llama(0), NeuroAdaConfig())
    METHOD.save(model, str(tmp_path / "adapter.safetensors"))
    with pytest.raises(UsageError, match="trained on"):
        METHOD.load(tiny_bert(0), str(tmp_path / "adapter.safetensors"))
    with pytest.raises(UsageError, match="no NeuroAda adapter"):
        METHOD.load(tiny_llama(0), str(tmp_path / "missing"))


# ---------------------------------------------------------------------------------------------
# Selection
# ---------------------------------------------------------------------------------------------
HAND_W = torch.tensor([[0.1, -0.9, 0.3, 0.05, -0.4], [2.0, 0.0, -3.0, 1.0, 0.5]])


class _OneLinear(nn.Module):
    """``loss = sum((lin(x) - y)^2)``: dL/dW = 2 (W x - y) x^T, so with W = 0, |grad[i, c]| = 2|y_i x_c|."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(5, 2, bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(HAND_W)

    def forward(self, x, y):
        return SimpleNamespace(loss=((self.lin(x) - y) ** 2).sum())


@pytest.mark.parametrize(
    "selection, k, expected",
    [
        ("magnitude", 1, [[1], [2]]),
        ("magnitude", 2, [[1, 4], [0, 2]]),  # |W| top-2, negative entries included, sorted per row
        ("reverse", 2, [[0, 3], [1, 4]]),  # the smallest |W|
    ],
)
def test_selection_on_hand_set_weights(selection, k, expected):
    model = METHOD.apply(_OneLinear(), NeuroAdaConfig(k=k, selection=selection, target_modules=("lin",)))
    assert model.lin.neuroada_idx.tolist() == expected
    assert model.lin.neuroada_idx.dtype == torch.int32


def test_gradient_selection_uses_calibration_batches():
    model = _OneLinear()
    with torch.no_grad():
        model.lin.weight.zero_()  # the gradient ranks columns by |x_c|, unlike the magnitude of W
    batch = {"x": torch.tensor([[1.0, -3.0, 0.5, 2.0, 0.0]]), "y": torch.tensor([[1.0, -1.0]])}
    cfg = NeuroAdaConfig(k=2, selection="gradient", target_modules=("lin",))
    METHOD.apply(model, cfg, calibration=[batch, batch])
    assert model.lin.neuroada_idx.tolist() == [[1, 3], [1, 3]]
    assert model.lin.weight.grad is None and not model.lin.weight.requires_grad
    with pytest.raises(UsageError, match="calibration"):
        METHOD.apply(_OneLinear(), cfg)


def test_random_selection_is_seeded_distinct_and_sorted():
    def idx(seed):
        model = METHOD.apply(tiny_llama(0), NeuroAdaConfig(k=4, selection="random", seed=seed))
        return {n: m.neuroada_idx for n, m in neuroada_layers(model)}

    a, b, c = idx(0), idx(0), idx(1)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert any(not torch.equal(a[n], c[n]) for n in a)
    q, k = a["model.layers.0.self_attn.q_proj"], a["model.layers.0.self_attn.k_proj"]
    assert not torch.equal(q[: k.shape[0]], k)  # each layer draws its own pattern
    for t in a.values():
        assert (t[:, 1:] > t[:, :-1]).all()  # sorted, hence distinct, per row


# ---------------------------------------------------------------------------------------------
# Budgets, freezing, identity at init
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("build, cls", [(tiny_llama, LlamaForCausalLM), (tiny_bert, BertForSequenceClassification)])
@pytest.mark.parametrize("k", [1, 3])
def test_trainable_count_is_k_times_sum_d_out(build, cls, k):
    base = build(0)
    d_out = sum(m.out_features for _, m in find_targets(base, None))
    model = METHOD.apply(build(0), NeuroAdaConfig(k=k))
    assert isinstance(model, cls)
    assert count_parameters(model, trainable_only=True) == k * d_out
    assert all("neuroada_values" in n for n, p in model.named_parameters() if p.requires_grad)
    names = {n.rsplit(".", 1)[-1] for n, _ in neuroada_layers(model)}
    expected = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert names == (expected if cls is LlamaForCausalLM else {"query", "key", "value", "dense"})
    assert not any(part in n for n, _ in neuroada_layers(model) for part in ("lm_head", "classifier", "pooler"))


def test_identity_at_init_and_only_values_train():
    base_logits = _logits(tiny_llama(0))
    cfg = NeuroAdaConfig(k=2)
    model = METHOD.apply(tiny_llama(0), cfg)
    torch.testing.assert_close(_logits(model), base_logits, **EXACT)
    frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    opt = METHOD.optimizer(model, cfg, weight_decay=0.1)
    for _ in range(3):
        opt.zero_grad()
        model(input_ids=IDS, labels=IDS).loss.backward()
        opt.step()
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if not p.requires_grad)
    assert all(m.neuroada_values.abs().sum() > 0 for _, m in neuroada_layers(model))


def test_faithful_keeps_model_dtype_and_int64_indices():
    model = METHOD.apply(tiny_llama(0).to(torch.bfloat16), NeuroAdaConfig(faithful=True))
    layer = neuroada_layers(model)[0][1]
    assert layer.neuroada_values.dtype == torch.bfloat16 and layer.neuroada_idx.dtype == torch.int64
    model = METHOD.apply(tiny_llama(0).to(torch.bfloat16), NeuroAdaConfig(value_dtype="model"))
    assert neuroada_layers(model)[0][1].neuroada_idx.dtype == torch.int32


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"k": 0}, r"neuroada\.k=0 must be a positive integer"),
        ({"k": -2}, r"neuroada\.k=-2"),
        ({"k": 1.5}, r"neuroada\.k=1\.5"),
        ({"lr": 0.0}, r"neuroada\.lr=0\.0"),
        ({"selection": "largest"}, r"neuroada\.selection='largest' must be one of magnitude"),
        ({"target_modules": ()}, r"neuroada\.target_modules"),
        ({"compact_inputs": ("",)}, r"neuroada\.compact_inputs=\(''(,)?\) must be None"),
        ({"value_dtype": "float16"}, r"neuroada\.value_dtype"),
        ({"faithful": True, "value_dtype": "float32"}, r"contradicts faithful=True"),
    ],
)
def test_config_errors_name_field_and_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NeuroAdaConfig(**kwargs)


def test_k_not_below_d_in_is_a_usage_error_before_any_change():
    model = tiny_llama(0)  # hidden 64: q_proj has d_in 64
    with pytest.raises(UsageError, match=r"k=64 must be smaller than the input size 64"):
        METHOD.apply(model, NeuroAdaConfig(k=64))
    assert not neuroada_layers(model) and all(p.requires_grad for p in model.parameters())


def test_bad_targets_and_double_apply_are_usage_errors():
    with pytest.raises(UsageError, match="not an nn.Linear"):
        METHOD.apply(tiny_llama(0), NeuroAdaConfig(target_modules=("input_layernorm",)))
    with pytest.raises(UsageError, match="matches no module"):
        METHOD.apply(tiny_llama(0), NeuroAdaConfig(target_modules=("qproj",)))
    model = METHOD.apply(tiny_llama(0), NeuroAdaConfig())
    with pytest.raises(UsageError, match="already has NeuroAda layers"):
        METHOD.apply(model, NeuroAdaConfig())
    with pytest.raises(UsageError, match="wraps an nn.Linear"):
        NeuroAdaLinear(nn.Conv1d(2, 2, 1), torch.zeros(2, 1, dtype=torch.long))
