"""NeuroAda: its autograd against dense references, merge, save/load, selection, errors, budgets.

Tiny in-code models on CPU. Exactness checks run in fp64 (the torch value-gradient paths); the fp32
C kernels are checked against an fp64 reference with fp32 tolerances. The official-style reference
is the official code's forward: ``F.linear(x, W.flatten().scatter_add(0, pos, v).view_as(W), b)``.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertForSequenceClassification, LlamaForCausalLM

import methods
from bench.errors import UsageError
from bench.models import tiny_bert, tiny_llama
from methods import _sparse_ops, neuroada
from methods._base import count_parameters, find_targets
from methods._selection import select_indices
from methods.neuroada import ADAPTER_FILE, NeuroAdaConfig, NeuroAdaLinear, neuroada_layers

METHOD = methods.get("neuroada")
IDS = torch.tensor([[1, 40, 41, 42, 43, 44, 2, 0], [1, 50, 51, 52, 2, 0, 0, 0]])
D_IN, D_OUT, TOKENS = 40, 24, (3, 7)  # d_in >= 32 so that k=16 fits; 21 tokens
FP64_TOL = dict(rtol=1e-12, atol=1e-12)  # fp64: only summation order differs
# fp32 against an fp64 reference: sums of ~100-1000 O(1) products, observed error < 3e-6.
FP32_TOL = dict(rtol=1e-5, atol=2e-5)
EXACT = dict(rtol=0.0, atol=0.0)


@pytest.fixture(params=["kernel", "torch"])
def value_path(request, monkeypatch):
    """Run a test with the C kernels (fp32 CPU value gradient) and again with the torch fallback."""
    if request.param == "torch":
        monkeypatch.setattr(_sparse_ops, "_kernel", lambda: None)
    elif _sparse_ops._kernel() is None:
        pytest.skip("no C compiler: the kernel path is unavailable")
    return request.param


def _layer(k: int, dtype=torch.float64, seed: int = 0, bias: bool = True) -> NeuroAdaLinear:
    gen = torch.Generator().manual_seed(seed)
    lin = nn.Linear(D_IN, D_OUT, bias=bias, dtype=dtype)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(D_OUT, D_IN, generator=gen, dtype=dtype))
        if bias:
            lin.bias.copy_(torch.randn(D_OUT, generator=gen, dtype=dtype))
    lin.requires_grad_(False)
    layer = NeuroAdaLinear(lin, select_indices(lin.weight, k), value_dtype=dtype)
    with torch.no_grad():
        layer.neuroada_values.copy_(torch.randn(D_OUT, k, generator=gen, dtype=dtype))
    return layer


def _dense_scatter(x, weight, bias, idx, values):
    """The official code's forward: W + scatter(values) rebuilt, then F.linear (autograd keeps W_eff)."""
    pos = (torch.arange(weight.shape[0])[:, None] * weight.shape[1] + idx.long()).reshape(-1)
    return F.linear(x, weight.flatten().scatter_add(0, pos, values.reshape(-1)).view_as(weight), bias)


def _inputs(dtype, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*TOKENS, D_IN, generator=gen, dtype=dtype)
    gy = torch.randn(*TOKENS, D_OUT, generator=gen, dtype=dtype)
    return x, gy


def _logits(model, ids=IDS):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=(ids != 0).long()).logits


def _randomize_values(model, scale: float = 0.5, seed: int = 3):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in neuroada_layers(model):
            layer.neuroada_values.copy_(torch.randn(layer.neuroada_values.shape, generator=gen) * scale)


# ---------------------------------------------------------------------------------------------
# Autograd: values' gradient, forward and grad_x against dense references
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 2, 3, 16])  # 1-2: gather paths; 3, 16: SDDMM paths
def test_values_grad_equals_dense_weight_grad_gathered(k):
    layer = _layer(k)
    x, gy = _inputs(torch.float64)
    layer(x).backward(gy)
    w_eff = (layer.weight + layer.delta_weight()).detach().requires_grad_(True)
    F.linear(x, w_eff, layer.bias).backward(gy)
    torch.testing.assert_close(layer.neuroada_values.grad, w_eff.grad.gather(1, layer.neuroada_idx.long()), **FP64_TOL)


@pytest.mark.parametrize("k", [1, 2, 3, 16])
def test_matches_dense_scatter_reference_fp64(k):
    layer = _layer(k)
    x, gy = _inputs(torch.float64)
    x_ours, x_ref = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    v_ref = layer.neuroada_values.detach().clone().requires_grad_(True)
    y = layer(x_ours)
    y_ref = _dense_scatter(x_ref, layer.weight, layer.bias, layer.neuroada_idx, v_ref)
    torch.testing.assert_close(y, y_ref, **EXACT)  # the same W + S entries feed the same GEMM
    y.backward(gy)
    y_ref.backward(gy)
    torch.testing.assert_close(x_ours.grad, x_ref.grad, **FP64_TOL)
    torch.testing.assert_close(layer.neuroada_values.grad, v_ref.grad, **FP64_TOL)


@pytest.mark.parametrize("k", [1, 2, 3, 16])
def test_matches_dense_scatter_reference_fp32(k, value_path):
    layer = _layer(k, dtype=torch.float32)
    x, gy = _inputs(torch.float32)
    x_ours, x_ref = x.clone().requires_grad_(True), x.double().requires_grad_(True)
    v_ref = layer.neuroada_values.detach().double().requires_grad_(True)
    y = layer(x_ours)
    y_ref = _dense_scatter(x_ref, layer.weight.double(), layer.bias.double(), layer.neuroada_idx, v_ref)
    y.backward(gy)
    y_ref.backward(gy.double())
    torch.testing.assert_close(y.double(), y_ref, **FP32_TOL)
    torch.testing.assert_close(x_ours.grad.double(), x_ref.grad, **FP32_TOL)
    torch.testing.assert_close(layer.neuroada_values.grad.double(), v_ref.grad, **FP32_TOL)


@pytest.mark.parametrize("patch_max_k", [16, 0])  # in-place patch, transient copy
@pytest.mark.parametrize("k", [1, 16])
def test_weight_bit_identical_after_forward_and_backward(k, patch_max_k, monkeypatch):
    monkeypatch.setattr(neuroada, "_PATCH_MAX_K", patch_max_k)
    layer = _layer(k, dtype=torch.float32)
    before = layer.weight.clone()
    x, gy = _inputs(torch.float32)
    layer(x.requires_grad_(True)).backward(gy)
    with torch.no_grad():
        layer(x)
    torch.testing.assert_close(layer.weight, before, **EXACT)
    assert layer.neuroada_values.grad is not None and x.grad is not None


def test_weight_changed_outside_is_picked_up():
    """The cached W entries refresh when W changes (e.g. new base weights loaded in place)."""
    layer = _layer(2)
    x, _ = _inputs(torch.float64)
    layer(x)
    with torch.no_grad():
        layer.weight.mul_(2.0)
    expected = _dense_scatter(x, layer.weight, layer.bias, layer.neuroada_idx, layer.neuroada_values)
    torch.testing.assert_close(layer(x), expected, **EXACT)


def test_bf16_base_trains_fp32_values(value_path):
    model = tiny_llama(0).to(torch.bfloat16)
    METHOD.apply(model, NeuroAdaConfig(k=2))
    layer = dict(neuroada_layers(model))["model.layers.0.mlp.down_proj"]
    assert layer.neuroada_values.dtype == torch.float32 and layer.weight.dtype == torch.bfloat16
    model(input_ids=IDS, labels=IDS).loss.backward()
    grads = [m.neuroada_values.grad for _, m in neuroada_layers(model)]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


# ---------------------------------------------------------------------------------------------
# The W + S patch held from a forward to its backward
# ---------------------------------------------------------------------------------------------
def _dense_grads(layer, x, gy):
    """x's and the values' gradients through a dense W + S, for the layer's current values."""
    x = x.clone().requires_grad_(True)
    v = layer.neuroada_values.detach().clone().requires_grad_(True)
    w0 = layer.base_layer.weight.detach().clone()
    F.linear(x, w0.scatter_add(1, layer.neuroada_idx.long(), v), layer.bias).backward(gy)
    return x.grad, v.grad


def _count_puts(monkeypatch) -> list[int]:
    calls = []
    real = neuroada.put_entries
    monkeypatch.setattr(neuroada, "put_entries", lambda *a: (calls.append(1), real(*a)))
    return calls


@pytest.mark.parametrize("k", [1, 16])
def test_a_training_forward_keeps_w_plus_s_until_its_backward(monkeypatch, k):
    layer = _layer(k)
    w0 = layer.base_layer.weight.clone()
    x, gy = _inputs(torch.float64)
    dx, dv = _dense_grads(layer, x, gy)
    puts = _count_puts(monkeypatch)
    x = x.clone().requires_grad_(True)
    y = layer(x)
    dense = w0.scatter_add(1, layer.neuroada_idx.long(), layer.neuroada_values.detach())
    assert torch.equal(layer.base_layer.weight, dense)  # W + S stays in W for backward's GEMM
    y.backward(gy)
    assert torch.equal(layer.base_layer.weight, w0)  # restored bit for bit by the backward
    assert len(puts) == 2  # one write and one restore per step, not two of each
    torch.testing.assert_close(x.grad, dx, **FP64_TOL)
    torch.testing.assert_close(layer.neuroada_values.grad, dv, **FP64_TOL)


def test_a_forward_without_backward_restores_w_when_its_graph_goes():
    layer = _layer(2)
    w0 = layer.base_layer.weight.clone()
    x, _ = _inputs(torch.float64)
    y = layer(x.requires_grad_(True))
    assert not torch.equal(layer.base_layer.weight, w0)
    del y  # the graph, and with it the hold, is freed
    assert torch.equal(layer.base_layer.weight, w0)
    with torch.no_grad():
        layer(x)  # no backward can come: nothing is held
    assert torch.equal(layer.base_layer.weight, w0)
    layer(x.detach())  # a backward would not need W (only the values' gradient): nothing is held
    assert torch.equal(layer.base_layer.weight, w0)


def test_readers_between_forward_and_backward_see_w_and_backward_still_exact():
    layer = _layer(3)
    w0 = layer.base_layer.weight.clone()
    x, gy = _inputs(torch.float64)
    dx, dv = _dense_grads(layer, x, gy)
    for read in (lambda: layer.weight, lambda: layer.state_dict()["base_layer.weight"]):
        x_in = x.clone().requires_grad_(True)
        layer.neuroada_values.grad = None
        y = layer(x_in)
        assert torch.equal(read(), w0)  # the held patch is undone for whoever reads W
        y.backward(gy)  # which patches again for its GEMM
        assert torch.equal(layer.base_layer.weight, w0)
        torch.testing.assert_close(x_in.grad, dx, **FP64_TOL)
        torch.testing.assert_close(layer.neuroada_values.grad, dv, **FP64_TOL)


def test_two_forwards_one_backward_and_a_retained_graph():
    layer = _layer(2)
    w0 = layer.base_layer.weight.clone()
    x, gy = _inputs(torch.float64)
    _, dv = _dense_grads(layer, x, gy)
    x.requires_grad_(True)
    loss = (layer(x) * gy).sum() + (layer(x) * gy).sum()  # two holds on one patch
    assert layer._state.holds == 2
    loss.backward(retain_graph=True)
    assert torch.equal(layer.base_layer.weight, w0)  # released by the last backward of the two
    torch.testing.assert_close(layer.neuroada_values.grad, 2 * dv, **FP64_TOL)
    loss.backward()  # the holds are spent: this backward patches and restores by itself
    assert torch.equal(layer.base_layer.weight, w0)
    torch.testing.assert_close(layer.neuroada_values.grad, 4 * dv, **FP64_TOL)


def test_values_moved_while_held_are_written_before_the_next_forward():
    layer = _layer(1)
    w0 = layer.base_layer.weight.clone()
    x, _ = _inputs(torch.float64)
    y = layer(x.requires_grad_(True))  # holds W + S with the current values
    with torch.no_grad():
        layer.neuroada_values.add_(1.0)  # e.g. an optimizer step in between, without a backward
    dense = w0.scatter_add(1, layer.neuroada_idx.long(), layer.neuroada_values.detach())
    torch.testing.assert_close(layer(x), F.linear(x, dense, layer.bias), **EXACT)
    assert torch.equal(layer.base_layer.weight, dense)  # y's hold now keeps the new values in W
    del y
    assert torch.equal(layer.base_layer.weight, w0)


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
# Compact inputs: backward keeps only the columns of x that idx reads
# ---------------------------------------------------------------------------------------------
def _twin_layers(idx: torch.Tensor, dtype) -> tuple[NeuroAdaLinear, NeuroAdaLinear]:
    """The same layer twice, keeping all of x and keeping only idx's columns."""
    plain = _layer(1, dtype)
    layers = []
    for compact in (False, True):
        base = nn.Linear(D_IN, D_OUT, dtype=dtype).requires_grad_(False)
        base.load_state_dict(plain.base_layer.state_dict())
        layer = NeuroAdaLinear(base, idx, value_dtype=dtype, compact_input=compact)
        with torch.no_grad():
            layer.neuroada_values.copy_(torch.linspace(-1, 1, idx.numel(), dtype=dtype).view_as(idx))
        layers.append(layer)
    return layers[0], layers[1]


def _saved_shapes(fn) -> list[tuple[int, ...]]:
    shapes = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: (shapes.append(tuple(t.shape)), t)[1], lambda t: t):
        fn()
    return shapes


@pytest.mark.parametrize("k", [1, 2, 4])  # gather kernel, gather kernel, SDDMM kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_compact_input_keeps_only_the_columns_read_and_gives_identical_gradients(k, dtype, value_path):
    gen = torch.Generator().manual_seed(5)
    columns = torch.tensor([3, 7, 8, 19, 20, 33, 39])  # 7 of 40 input columns
    idx = torch.stack([columns[torch.randperm(7, generator=gen)[:k]] for _ in range(D_OUT)])
    plain, compact = _twin_layers(idx, dtype)
    assert plain.input_columns(plain.neuroada_idx) is None
    cols, pos = compact.input_columns(compact.neuroada_idx)
    assert cols.tolist() == columns.tolist() and torch.equal(cols[pos.long()], compact.neuroada_idx)
    x, gy = _inputs(dtype)
    grads, saved = [], []
    for layer in (plain, compact):
        x_in = x.clone().requires_grad_(True)
        saved.append(_saved_shapes(lambda layer=layer, x_in=x_in: layer(x_in).backward(gy)))
        grads.append((x_in.grad, layer.neuroada_values.grad))
    assert (*TOKENS, D_IN) in saved[0] and (*TOKENS, D_IN) not in saved[1]
    assert (*TOKENS, 7) in saved[1]  # the 7 columns, not the 40
    assert torch.equal(grads[1][0], grads[0][0]) and torch.equal(grads[1][1], grads[0][1])  # bit for bit
    _, dv = _dense_grads(compact, x, gy)
    torch.testing.assert_close(grads[1][1], dv, **(FP64_TOL if dtype == torch.float64 else FP32_TOL))


def test_a_compact_input_keeps_all_of_x_when_idx_reads_more_than_half_of_it():
    idx = torch.arange(D_OUT)[:, None] % 21  # 21 distinct columns of 40
    layer = _twin_layers(idx, torch.float64)[1]
    assert layer.input_columns(layer.neuroada_idx) is None
    x, gy = _inputs(torch.float64)
    assert (*TOKENS, D_IN) in _saved_shapes(lambda: layer(x.requires_grad_(True)).backward(gy))


def test_compact_columns_follow_indices_loaded_in_place():
    plain, compact = _twin_layers(torch.arange(D_OUT)[:, None] % 5, torch.float64)
    assert compact.input_columns(compact.neuroada_idx)[0].tolist() == [0, 1, 2, 3, 4]
    new_idx = (torch.arange(D_OUT)[:, None] % 3 + 30).to(compact.neuroada_idx.dtype)
    for layer in (plain, compact):
        layer.load_state_dict({**layer.state_dict(), "neuroada_idx": new_idx})
    assert compact.input_columns(compact.neuroada_idx)[0].tolist() == [30, 31, 32]
    x, gy = _inputs(torch.float64)
    for layer in (plain, compact):
        layer(x).backward(gy)
    assert torch.equal(compact.neuroada_values.grad, plain.neuroada_values.grad)


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
# Merge and unmerge
# ---------------------------------------------------------------------------------------------
def test_layer_merge_hand_set_exact_and_unmerge_restores_bits():
    lin = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1 / 3, -2.0, 0.5, 7.0], [0.1, 0.2, -0.3, 0.4]]))
    original = lin.weight.clone()
    layer = NeuroAdaLinear(lin, torch.tensor([[0, 3], [1, 2]]))
    with torch.no_grad():
        layer.neuroada_values.copy_(torch.tensor([[1e-9, 1.0], [0.25, -0.5]]))
    expected = original.clone()
    expected[0, 0] += 1e-9  # rounds away in fp32: a subtractive unmerge could not restore 1/3
    expected[0, 3] += 1.0
    expected[1, 1] += 0.25
    expected[1, 2] += -0.5
    delta = torch.tensor([[1e-9, 0.0, 0.0, 1.0], [0.0, 0.25, -0.5, 0.0]])
    torch.testing.assert_close(layer.delta_weight(), delta, **EXACT)
    layer.merge()
    torch.testing.assert_close(lin.weight, expected, **EXACT)
    layer.merge()  # a second merge is a no-op, never a double add
    torch.testing.assert_close(lin.weight, expected, **EXACT)
    layer.unmerge()
    assert torch.equal(lin.weight, original)
    layer.unmerge()
    assert torch.equal(lin.weight, original)


def test_merged_layer_forward_equals_adapted():
    layer = _layer(3, dtype=torch.float32)
    x, _ = _inputs(torch.float32)
    adapted = layer(x)
    layer.merge()
    torch.testing.assert_close(layer(x), adapted, **EXACT)
    layer.unmerge()
    torch.testing.assert_close(layer(x), adapted, **EXACT)


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
