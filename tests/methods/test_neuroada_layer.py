"""NeuroAda's layer (``methods/_neuroada_layer.py``): its autograd against dense references, the
W + S patch held from a forward to its backward, compact inputs, merge and unmerge.

Tiny in-code layers on CPU. Exactness checks run in fp64 (the torch value-gradient paths); the fp32
C kernels are checked against an fp64 reference with fp32 tolerances. The official-style reference
is the official code's forward: ``F.linear(x, W.flatten().scatter_add(0, pos, v).view_as(W), b)``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from methods import _neuroada_layer
from methods._neuroada_layer import NeuroAdaLinear
from methods._selection import select_indices

D_IN, D_OUT, TOKENS = 40, 24, (3, 7)  # d_in >= 32 so that k=16 fits; 21 tokens
FP64_TOL = dict(rtol=1e-12, atol=1e-12)  # fp64: only summation order differs
# fp32 against an fp64 reference: sums of ~100-1000 O(1) products, observed error < 3e-6.
FP32_TOL = dict(rtol=1e-5, atol=2e-5)
EXACT = dict(rtol=0.0, atol=0.0)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
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
    monkeypatch.setattr(_neuroada_layer, "_PATCH_MAX_K", patch_max_k)
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
    real = _neuroada_layer.put_entries
    monkeypatch.setattr(_neuroada_layer, "put_entries", lambda *a: (calls.append(1), real(*a)))
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
    assert (TOKENS[0] * TOKENS[1], 7) in saved[1]  # the 7 columns (of x's 2-D view), not the 40
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
