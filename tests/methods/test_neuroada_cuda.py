"""NeuroAda on CUDA (``gpu``-marked: ``pytest -m gpu``; skipped without CUDA): an fp32 base and a
bf16 base with fp32 values, against the dense ``W + S`` layer. The forward, the value gradient
(the dense ``dL/dW`` gathered at the indices), the input gradient, ``W`` untouched by a step, and
merge/unmerge bit for bit. ``k`` covers the in-place patch (k <= 16) and the transient copy.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from methods.neuroada import NeuroAdaLinear

pytestmark = pytest.mark.gpu

D_IN, D_OUT, BATCH, SEQ = 96, 80, 4, 16
# Value and input gradients (fp32): sums of 64 products in another order than the dense GEMM's.
# bf16 inputs are exact in fp32, so the value gradient keeps this tolerance with a bf16 base.
FP32_TOL = dict(rtol=1e-4, atol=1e-4)
# The input gradient with a bf16 base leaves the layer in bf16 (8-bit mantissa; cuBLAS may reduce
# partial sums in bf16): sums of 80 N(0, 1) products (~9) against an fp32 reference.
BF16_GRAD_X_TOL = dict(rtol=1.6e-2, atol=6e-2)


def _skip_without_bf16(dtype: torch.dtype) -> None:
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported(including_emulation=False):
        pytest.skip("this GPU has no native bf16 (compute capability < 8.0)")


def _case(dtype: torch.dtype, k: int):
    """A NeuroAda layer on cuda with ``dtype`` base and fp32 values, an input, and the dense W + S."""
    gen = torch.Generator().manual_seed(k)
    lin = nn.Linear(D_IN, D_OUT)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(D_OUT, D_IN, generator=gen))
        lin.bias.copy_(torch.randn(D_OUT, generator=gen))
    lin = lin.to(device="cuda", dtype=dtype).requires_grad_(False)
    idx = torch.rand(D_OUT, D_IN, generator=gen).argsort(dim=1)[:, :k]
    layer = NeuroAdaLinear(lin, idx, value_dtype=torch.float32)
    with torch.no_grad():
        layer.neuroada_values.copy_(torch.randn(D_OUT, k, generator=gen))
    x = torch.randn(BATCH, SEQ, D_IN, generator=gen).to(device="cuda", dtype=dtype).requires_grad_(True)
    r = torch.randn(BATCH, SEQ, D_OUT, generator=gen).cuda()
    w0 = lin.weight.detach().clone()
    cols = layer.neuroada_idx.long()
    # W + S in the base dtype: each selected entry W[i, c] + v rounded once, as merge() writes it.
    dense = w0.clone().scatter_(1, cols, w0.gather(1, cols) + layer.neuroada_values.detach().to(dtype))
    return layer, x, r, w0, dense


@pytest.mark.parametrize("k", [1, 3, 20])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_cuda_forward_and_gradients_equal_the_dense_layer(dtype, k):
    _skip_without_bf16(dtype)
    layer, x, r, w0, dense = _case(dtype, k)
    y = layer(x)
    (y.float() * r).sum().backward()
    assert y.dtype == dtype and layer.neuroada_values.grad.dtype == torch.float32
    # the same GEMM on bit-identical weights (torch's default tolerances allow another kernel choice)
    torch.testing.assert_close(y, F.linear(x.detach(), dense, layer.bias))
    g = r.to(dtype).float().reshape(-1, D_OUT)  # what reaches the layer: r cast to y's dtype
    x2 = x.detach().float().reshape(-1, D_IN)
    cols = layer.neuroada_idx.long()
    torch.testing.assert_close(layer.neuroada_values.grad, (g.t() @ x2).gather(1, cols), **FP32_TOL)
    grad_x_tol = BF16_GRAD_X_TOL if dtype == torch.bfloat16 else FP32_TOL
    torch.testing.assert_close(x.grad.float(), (g @ dense.float()).view_as(x), **grad_x_tol)
    assert torch.equal(layer.weight, w0)  # the W + S patch was undone bit for bit


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_cuda_merge_is_dense_and_unmerge_restores_bits(dtype):
    _skip_without_bf16(dtype)
    layer, x, _, w0, dense = _case(dtype, 3)
    with torch.no_grad():
        adapted = layer(x)
    layer.merge()
    layer.merge()  # idempotent
    assert torch.equal(layer.weight, dense)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), adapted)  # the same GEMM on the same weight
    layer.unmerge()
    assert torch.equal(layer.weight, w0)


def test_cuda_training_steps_move_only_the_values():
    _skip_without_bf16(torch.bfloat16)
    layer, x, r, w0, _ = _case(torch.bfloat16, 3)
    opt = torch.optim.AdamW([layer.neuroada_values], lr=1e-2)
    before = layer.neuroada_values.detach().clone()
    for _ in range(3):
        opt.zero_grad()
        (layer(x).float() * r).sum().backward()
        opt.step()
    assert not torch.equal(layer.neuroada_values, before)
    assert torch.equal(layer.weight, w0) and layer.base_layer.bias.grad is None
