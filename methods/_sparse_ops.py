"""NeuroAda's sparse ops on a per-row index set ``idx`` (d_out, k): the value gradient and the
scattered writes of the ``W + S`` patch (see ``methods/_neuroada_layer.py`` for how the bypass uses them).

- :func:`value_grad`: ``grad[i, j] = sum_n g[n, i] * x[n, idx[i, j]]``, without a dense d_out x d_in
  tensor nor a (tokens, d_out, k) one. On CPU in fp32 the C kernels of ``neuroada_kernels.c``
  compute it (loaded by :mod:`methods._kernels`): a gather vectorised over output rows for
  k <= 3, and for larger k a sampled dense-dense product over 64-token blocks transposed in cache.
  Without a compiler, or in fp64, torch ops do it (token-chunked gather for k <= 2,
  ``torch.sparse.sampled_addmm`` above). On other devices (CUDA) a token-chunked gather + einsum in
  fp32 runs for every k: it uses no CPU-only op, and a bf16 base with fp32 values works there as on CPU.
- :func:`put_entries`: ``W[i, idx[i, j]] = src[i, j]`` in place; on CPU a C loop with prefetching
  (twice as fast as ``scatter_``).
"""

from __future__ import annotations

import ctypes
import functools
import warnings
from pathlib import Path

import torch

from methods import _kernels

KERNEL_SOURCE = Path(__file__).with_name("neuroada_kernels.c")
_P, _I64, _I32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
_ARGTYPES = {
    "neuroada_grad_gather": [_P, _I64, _P, _I64, _P, _P, _I64, _I64, _I64, _I32],
    "neuroada_grad_sddmm": [_P, _I64, _P, _I64, _P, _P, _I64, _I64, _I64, _I64, _P, _P, _I64, _I32],
    "neuroada_put_rows": [_P, _I64, _P, _P, _I64, _I64, _I64],
}

# Measured on a 1-thread CPU (110M LLaMA config, 1024 tokens per step); ``python -m bench micro``.
_GATHER_MAX_K = 2  # torch fallback on CPU: token-chunked gather up to this k, sampled_addmm above
_GATHER_CHUNK_TOKENS = 64  # torch fallback: a (64, d_out) gathered block stays in cache; 64-128 measured best
_DEVICE_GATHER_ELEMENTS = 1 << 24  # other devices: bound a (tokens, d_out, k) gather chunk to 16M entries
_KERNEL_GATHER_MAX_K = 3  # the gather kernel up to this k, the SDDMM kernel above (measured crossover 3-4)
_KERNEL_TOKEN_BLOCK = 64  # SDDMM tokens per block: gt and xt stay in L2; 64 and 128 measured equal


@functools.lru_cache(maxsize=1)
def _kernel() -> ctypes.CDLL | None:
    """The C kernels, built once per machine; None (torch ops) without a compiler or with
    ``BENCH_NEUROADA_KERNEL=0`` (or the older ``PEFT_BENCH_NEUROADA_KERNEL=0``)."""
    return _kernels.load(KERNEL_SOURCE, _ARGTYPES, switch="BENCH_NEUROADA_KERNEL")


# ---------------------------------------------------------------------------------------------
# The value gradient: one entry point, four paths
# ---------------------------------------------------------------------------------------------
def value_grad(g2: torch.Tensor, x2: torch.Tensor, idx: torch.Tensor, values_dtype: torch.dtype) -> torch.Tensor:
    """``grad[i, j] = sum_n g2[n, i] * x2[n, idx[i, j]]`` as ``values_dtype``, without a dense d_out x d_in
    or a (tokens, d_out, k) tensor. Accumulates in fp32 (fp64 when an input is fp64)."""
    dtype = torch.promote_types(torch.promote_types(x2.dtype, values_dtype), torch.float32)
    if g2.device.type != "cpu":
        out = _value_grad_device(g2, x2, idx, dtype)
    elif dtype == torch.float32 and (lib := _kernel()) is not None:
        g32 = g2 if g2.dtype == dtype and g2.stride(1) == 1 else g2.to(dtype).contiguous()
        x32 = x2 if x2.dtype == dtype and x2.stride(1) == 1 else x2.to(dtype).contiguous()
        out = _value_grad_kernel(lib, g32, x32, idx)
    elif idx.shape[1] <= _GATHER_MAX_K:
        out = _value_grad_gather(g2, x2, idx, dtype)
    else:
        out = _value_grad_sddmm(g2, x2, idx, dtype)
    return out if out.dtype == values_dtype else out.to(values_dtype)


def _value_grad_kernel(lib: ctypes.CDLL, g2: torch.Tensor, x2: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """fp32 (d_out, k) value gradient from the C kernels; g2 and x2 fp32 with unit column stride."""
    n, d_out = g2.shape
    d_in, k = x2.shape[1], idx.shape[1]
    threads = torch.get_num_threads()
    idx32 = _int32(idx)
    if k <= _KERNEL_GATHER_MAX_K:
        idx_t = idx32.t().contiguous()
        out_t = torch.empty(k, d_out)
        lib.neuroada_grad_gather(
            g2.data_ptr(), g2.stride(0), x2.data_ptr(), x2.stride(0), idx_t.data_ptr(), out_t.data_ptr(),
            n, d_out, k, threads,
        )  # fmt: skip
        return out_t.t()
    out = torch.empty(d_out, k)
    nb = _KERNEL_TOKEN_BLOCK
    gt, xt = torch.empty(d_out * nb), torch.empty(d_in * nb)
    lib.neuroada_grad_sddmm(
        g2.data_ptr(), g2.stride(0), x2.data_ptr(), x2.stride(0), idx32.data_ptr(), out.data_ptr(),
        n, d_out, d_in, k, gt.data_ptr(), xt.data_ptr(), nb, threads,
    )  # fmt: skip
    return out


def _value_grad_gather(g2: torch.Tensor, x2: torch.Tensor, idx: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``grad[i, j] = sum_n g[n, i] * x[n, idx[i, j]]`` in ``dtype`` with torch ops (CPU), 64 tokens at a time."""
    n, d_out = g2.shape
    k = idx.shape[1]
    out = torch.zeros(k, d_out, dtype=dtype)
    cols = idx.t().contiguous()  # (k, d_out): one contiguous index vector per j
    chunk = _GATHER_CHUNK_TOKENS
    buf = torch.empty(chunk, d_out, dtype=x2.dtype)
    for s in range(0, n, chunk):
        gc = g2[s : s + chunk].to(dtype)
        xc = x2[s : s + chunk]
        xs = buf[: xc.shape[0]]
        for j in range(k):
            torch.index_select(xc, 1, cols[j], out=xs)
            out[j] += xs.to(dtype).mul_(gc).sum(0)
    return out.t()


def _value_grad_device(g2: torch.Tensor, x2: torch.Tensor, idx: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The same gradient on any device (the CUDA path): all k at once, in token chunks that bound the
    gathered (chunk, d_out, k) block to _DEVICE_GATHER_ELEMENTS entries; only index_select and einsum."""
    n, d_out = g2.shape
    k = idx.shape[1]
    out = torch.zeros(k, d_out, dtype=dtype, device=g2.device)
    chunk = max(1, _DEVICE_GATHER_ELEMENTS // (d_out * k))
    flat_cols = idx.reshape(-1).long()
    for s in range(0, n, chunk):
        gc = g2[s : s + chunk].to(dtype)
        xs = x2[s : s + chunk].index_select(1, flat_cols).view(-1, d_out, k).to(dtype)
        out += torch.einsum("ni,nij->ji", gc, xs)
    return out.t()


def _value_grad_sddmm(g2: torch.Tensor, x2: torch.Tensor, idx: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The same gradient as torch's sampled dense-dense product on idx's CSR pattern (CPU; fp32/fp64).

    ``sampled_addmm`` runs fast only with the token dimension contiguous in both operands, hence
    the g^T and x^T copies; its result has idx's pattern, so ``.values()`` is row-major (d_out, k).
    """
    d_out, k = idx.shape
    gt = torch.empty(d_out, g2.shape[0], dtype=dtype).copy_(g2.t())
    xt = torch.empty(x2.shape[1], x2.shape[0], dtype=dtype).copy_(x2.t())
    crow = torch.arange(0, d_out * k + 1, k, dtype=idx.dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        pattern = torch.sparse_csr_tensor(
            crow,
            idx.reshape(-1),
            torch.zeros(d_out * k, dtype=dtype),
            size=(d_out, xt.shape[0]),
            check_invariants=False,
        )
        return torch.sparse.sampled_addmm(pattern, gt, xt.t(), beta=0.0).values().view(d_out, k)


# ---------------------------------------------------------------------------------------------
# Scattered writes
# ---------------------------------------------------------------------------------------------
def put_entries(weight: torch.Tensor, idx: torch.Tensor, src: torch.Tensor) -> None:
    """``weight[i, idx[i, j]] = src[i, j]`` in place (the C kernel on CPU, else ``scatter_``)."""
    lib = _kernel() if weight.device.type == "cpu" and weight.stride(1) == 1 else None
    if lib is None or weight.element_size() not in (2, 4, 8):
        weight.scatter_(1, idx.long(), src)
        return
    idx32 = _int32(idx)
    src = src if src.dtype == weight.dtype and src.is_contiguous() else src.to(weight.dtype).contiguous()
    d_out, k = idx32.shape
    lib.neuroada_put_rows(
        weight.data_ptr(), weight.stride(0), idx32.data_ptr(), src.data_ptr(), d_out, k, weight.element_size()
    )


def _int32(idx: torch.Tensor) -> torch.Tensor:
    """idx as contiguous int32 for the kernels, without a dispatch when it is already (the usual case:
    a step calls this for every layer, and a no-op ``.to`` costs 2 us)."""
    return idx if idx.dtype == torch.int32 and idx.is_contiguous() else idx.to(torch.int32).contiguous()
