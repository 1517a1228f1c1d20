"""NeuroAda's sparse ops (``methods/_sparse_ops.py``): the value gradient on every path, and the
scattered writes, against hand-computed values and fp64 dense references.

The value gradient is ``grad[i, j] = sum_n g[n, i] * x[n, idx[i, j]]``, i.e. the dense ``g^T x``
gathered at ``idx``. Paths: the C kernels (fp32 CPU), torch's token-chunked gather (k <= 2) and
``sampled_addmm`` (k > 2) on CPU, and the device path (gather + einsum) that CUDA takes.
"""

from __future__ import annotations

import pytest
import torch

from methods import _sparse_ops
from methods._selection import select_indices

D_IN, D_OUT = 40, 24
FP64_TOL = dict(rtol=1e-12, atol=1e-12)  # fp64: only summation order differs
# fp32 against an fp64 reference: sums of ~100-1000 O(1) products, observed error < 3e-6.
FP32_TOL = dict(rtol=1e-5, atol=2e-5)
EXACT = dict(rtol=0.0, atol=0.0)

# 2 tokens, d_out 2, d_in 3, k 2: small integers and halves, so every path is exact.
HAND_G = [[1.0, 2.0], [3.0, -1.0]]
HAND_X = [[1.0, 0.0, 2.0], [-1.0, 4.0, 0.5]]
HAND_IDX = [[0, 2], [1, 2]]
# [0, 0] = 1*1 + 3*(-1) = -2; [0, 1] = 1*2 + 3*0.5 = 3.5; [1, 0] = 2*0 - 1*4 = -4; [1, 1] = 2*2 - 1*0.5 = 3.5
HAND_GRAD = [[-2.0, 3.5], [-4.0, 3.5]]


def _kernel_or_skip():
    lib = _sparse_ops._kernel()
    if lib is None:
        pytest.skip("no C compiler: the kernel path is unavailable")
    return lib


def _problem(k: int, n: int = 21, dtype=torch.float64, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(n, D_OUT, generator=gen, dtype=dtype)
    x = torch.randn(n, D_IN, generator=gen, dtype=dtype)
    idx = select_indices(torch.randn(D_OUT, D_IN, generator=gen), k).to(torch.int32)
    return g, x, idx, (g.double().t() @ x.double()).gather(1, idx.long())


# ---------------------------------------------------------------------------------------------
# The value gradient
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["kernel", "torch_fp32", "torch_fp64"])
def test_value_grad_hand_computed(path, monkeypatch):
    dtype = torch.float64 if path == "torch_fp64" else torch.float32
    if path == "kernel":
        _kernel_or_skip()
    else:
        monkeypatch.setattr(_sparse_ops, "_kernel", lambda: None)
    g, x = torch.tensor(HAND_G, dtype=dtype), torch.tensor(HAND_X, dtype=dtype)
    got = _sparse_ops.value_grad(g, x, torch.tensor(HAND_IDX, dtype=torch.int32), dtype)
    assert got.dtype == dtype and got.shape == (2, 2)
    torch.testing.assert_close(got, torch.tensor(HAND_GRAD, dtype=dtype), **EXACT)


def test_value_grad_returns_the_values_dtype():
    g, x = torch.tensor(HAND_G, dtype=torch.bfloat16), torch.tensor(HAND_X, dtype=torch.bfloat16)
    idx = torch.tensor(HAND_IDX, dtype=torch.int32)
    got = _sparse_ops.value_grad(g, x, idx, torch.bfloat16)  # accumulates in fp32, returns bf16
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got, torch.tensor(HAND_GRAD, dtype=torch.bfloat16), **EXACT)


@pytest.mark.parametrize("k", [1, 2, 3, 16])  # gather up to _GATHER_MAX_K = 2, sampled_addmm above
def test_torch_cpu_paths_fp64(k, monkeypatch):
    monkeypatch.setattr(_sparse_ops, "_kernel", lambda: None)
    g, x, idx, expected = _problem(k)
    torch.testing.assert_close(_sparse_ops.value_grad(g, x, idx, torch.float64), expected, **FP64_TOL)
    torch.testing.assert_close(_sparse_ops._value_grad_gather(g, x, idx, torch.float64), expected, **FP64_TOL)
    torch.testing.assert_close(_sparse_ops._value_grad_sddmm(g, x, idx, torch.float64), expected, **FP64_TOL)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("k", [1, 2, 3, 5, 16, 20])  # gather (<= 3); SDDMM: partial, full, full + partial groups
@pytest.mark.parametrize("shape", [(24, 40, 21), (40, 48, 135)])  # ragged 16x16 tiles and 64-token blocks
def test_kernels_against_fp64(k, shape, threads):
    lib = _kernel_or_skip()
    d_out, d_in, n = shape
    gen = torch.Generator().manual_seed(k)
    g, x = torch.randn(n, d_out, generator=gen), torch.randn(n, d_in, generator=gen)
    idx = select_indices(torch.randn(d_out, d_in, generator=gen), k).to(torch.int32)
    expected = (g.double().t() @ x.double()).gather(1, idx.long())
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = _sparse_ops._value_grad_kernel(lib, g, x, idx)
        strided = torch.cat([g, g], 1)[:, :d_out]  # row stride != d_out
        got_strided = _sparse_ops._value_grad_kernel(lib, strided, x, idx)
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(got.double(), expected, **FP32_TOL)
    torch.testing.assert_close(got_strided, got, **EXACT)


@pytest.mark.parametrize("k", [1, 16])
def test_device_path_math_on_cpu(k, monkeypatch):
    """The path CUDA takes (gather + einsum in bounded token chunks), run on CPU tensors in fp64."""
    monkeypatch.setattr(_sparse_ops, "_DEVICE_GATHER_ELEMENTS", D_OUT * k * 4)  # 4 tokens per chunk
    g, x, idx, expected = _problem(k, seed=k)
    torch.testing.assert_close(_sparse_ops._value_grad_device(g, x, idx, torch.float64), expected, **FP64_TOL)
    got32 = _sparse_ops._value_grad_device(g.to(torch.bfloat16), x.to(torch.bfloat16), idx, torch.float32)
    assert got32.dtype == torch.float32  # a bf16 base accumulates in fp32
    torch.testing.assert_close(got32.double(), expected, rtol=0.05, atol=0.1)  # bf16 inputs: 8-bit mantissa


# ---------------------------------------------------------------------------------------------
# Scattered writes
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])  # 4-, 8-, 2-byte kernel copies
@pytest.mark.parametrize("use_kernel", [True, False])
def test_put_entries_hand_set(dtype, use_kernel, monkeypatch):
    if use_kernel:
        _kernel_or_skip()
    else:
        monkeypatch.setattr(_sparse_ops, "_kernel", lambda: None)
    weight = torch.arange(8, dtype=dtype).view(2, 4)
    idx = torch.tensor([[0, 3], [1, 2]], dtype=torch.int32)
    _sparse_ops.put_entries(weight, idx, torch.tensor([[-1.0, 0.5], [9.0, 2.25]], dtype=dtype))  # src in W's dtype
    expected = torch.tensor([[-1.0, 1.0, 2.0, 0.5], [4.0, 9.0, 2.25, 7.0]], dtype=dtype)
    torch.testing.assert_close(weight, expected, **EXACT)


def test_put_entries_on_a_strided_weight():
    """A weight whose rows are further apart than its width (a view): only the selected entries change."""
    storage = torch.zeros(2, 6)
    weight = storage[:, :4]
    _sparse_ops.put_entries(weight, torch.tensor([[3], [0]], dtype=torch.int32), torch.tensor([[1.5], [-2.0]]))
    expected = torch.zeros(2, 6)
    expected[0, 3], expected[1, 0] = 1.5, -2.0
    torch.testing.assert_close(storage, expected, **EXACT)
