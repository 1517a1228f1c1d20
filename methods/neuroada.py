"""NeuroAda (arXiv 2510.18940): a trainable bypass on the k strongest input connections of each neuron.

For each target ``nn.Linear`` weight W (d_out x d_in), ``idx = topk(|W|, k, dim=1)`` picks k input
columns per output row once, before training (data-free for the default ``magnitude`` selection).
Trainable ``values`` of shape (d_out, k), zero at init, add ``sum_j values[i, j] * x[..., idx[i, j]]``
to output i; merging folds them in: ``W[i, idx[i, j]] += values[i, j]``. Row-major ``values``
flattened is the official code's 1-D ``weight_new`` (its positions are ``i * d_in + idx[i, j]``).

Why it is fast (measured on one CPU thread; ``python -m bench micro`` reproduces the numbers):

- forward: ``W + S`` (S = the scattered values) feeds one GEMM and is never saved for backward:
  the k*d_out entries are patched into W in place around the GEMM and restored bit-exactly from a
  cached copy of the original entries (a transient W + S copy for k > 16 or when the base weight
  trains). On CPU a small C loop with prefetching writes the entries (twice as fast as scatter_).
- backward saves only the layer input x (what LoRA saves too) and rebuilds ``W + S`` for
  ``grad_x = g @ (W + S)``. The value gradient ``grad[i, j] = sum_n g[n, i] * x[n, idx[i, j]]``
  never forms a dense d_out x d_in tensor nor a (tokens, d_out, k) one. On CPU in fp32 two small C
  kernels compute it (compiled once per machine with the system compiler; torch has no fused
  gather-multiply-reduce): a gather vectorised over output rows for k <= 3, and for larger k a
  sampled dense-dense product over 64-token blocks transposed in cache. Without a compiler, or in
  fp64, torch ops do it (token-chunked gather for k <= 2, ``torch.sparse.sampled_addmm`` above).
  On other devices (CUDA) a token-chunked gather + einsum in fp32 runs for every k: it uses no
  CPU-only op, and a bf16 base with fp32 values works there as on CPU.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import UsageError
from bench.registry import METHODS
from methods._base import adamw, find_targets, freeze, set_submodule, trainable_parameters
from methods._selection import SELECTIONS, Selection, layer_seed, select_indices, selection_scores

ADAPTER_FILE = "neuroada.safetensors"
_FORMAT = "peft-bench/neuroada/1"

# Measured on a 1-thread CPU (110M LLaMA config, 1024 tokens per step); see the module docstring.
_GATHER_MAX_K = 2  # torch fallback on CPU: token-chunked gather up to this k, sampled_addmm above
_GATHER_CHUNK_TOKENS = 64  # torch fallback: a (64, d_out) gathered block stays in cache; 64-128 measured best
_DEVICE_GATHER_ELEMENTS = 1 << 24  # other devices: bound a (tokens, d_out, k) gather chunk to 16M entries
# Patch W in place up to this k, transient W + S copy above: equal step times at k=16, and the
# copy's cost does not grow with k while 2*k*d_out scattered writes do.
_PATCH_MAX_K = 16


@dataclass(frozen=True)
class NeuroAdaConfig:
    """NeuroAda's knobs.

    Parameter budget: ``k * sum(d_out)`` over the target layers (LLaMA-7B with q, k, v, o, gate,
    up and down: ``k * 1,359,872``, i.e. 0.020% of its parameters at k=1). The selected indices add
    as many int32 buffer entries (int64 in ``faithful`` mode), reported apart from parameters.
    """

    lr: float = 8e-3
    """Learning rate. 8e-3 is the official commonsense k=1 rate: the values start at zero and each
    moves one weight entry, so they tolerate a rate far above LoRA's (official k=20: 7e-4)."""

    k: int = 1
    """Input connections trained per output neuron (the paper uses 1 and 20); must be < d_in."""

    target_modules: tuple[str, ...] | None = None
    """Names (or name suffixes) of the nn.Linear modules to adapt; None: ``default_targets``
    (q, k, v, o, gate, up, down for LLaMA-like models; every attention and MLP linear of encoders).
    Embeddings, norms and heads are never adapted."""

    selection: Selection = "magnitude"
    """Which connections: ``magnitude`` (top-k |W|, the paper's), ``random`` (seeded), ``reverse``
    (the k smallest |W|), ``gradient`` (top-k |dL/dW| over the calibration batches given to apply)."""

    seed: int = 0
    """Seed of ``random`` selection; each layer draws from its own generator derived from it."""

    value_dtype: Literal["float32", "model"] | None = None
    """dtype of the trainable values: ``float32`` (the default; a bf16 base still trains fp32
    values), or ``model`` (the base weight's dtype). None: float32, or the model's when faithful."""

    faithful: bool = False
    """Keep the official code's dtypes: values in the model dtype and int64 indices (the official
    code stores flat int64 positions ``i * d_in + col``, ours per-row columns in the same order)."""

    def __post_init__(self) -> None:
        if isinstance(self.target_modules, (list, str)):
            names = (self.target_modules,) if isinstance(self.target_modules, str) else self.target_modules
            object.__setattr__(self, "target_modules", tuple(names))
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"neuroada.lr={self.lr!r} must be a finite number > 0 (e.g. 8e-3)")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k <= 0:
            raise ValueError(f"neuroada.k={self.k!r} must be a positive integer (e.g. k=1; the paper uses 1 or 20)")
        if self.target_modules is not None and (
            not self.target_modules or not all(isinstance(t, str) and t for t in self.target_modules)
        ):
            raise ValueError(
                f"neuroada.target_modules={self.target_modules!r} must be None (the model's defaults) "
                "or a non-empty tuple of module names such as ('q_proj', 'v_proj')"
            )
        if self.selection not in SELECTIONS:
            raise ValueError(f"neuroada.selection={self.selection!r} must be one of {', '.join(SELECTIONS)}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"neuroada.seed={self.seed!r} must be an integer >= 0 (e.g. 0)")
        if self.value_dtype not in (None, "float32", "model"):
            raise ValueError(f"neuroada.value_dtype={self.value_dtype!r} must be 'float32', 'model' or None")
        if not isinstance(self.faithful, bool):
            raise ValueError(f"neuroada.faithful={self.faithful!r} must be True or False")
        if self.faithful and self.value_dtype == "float32":
            raise ValueError(
                "neuroada.value_dtype='float32' contradicts faithful=True (the official code keeps the "
                "model dtype); drop value_dtype or set faithful=False"
            )

    def values_dtype(self, weight_dtype: torch.dtype) -> torch.dtype:
        """The dtype of the trainable values for a base weight of ``weight_dtype``."""
        if self.value_dtype == "model" or (self.value_dtype is None and self.faithful):
            return weight_dtype
        return torch.float32

    @property
    def index_dtype(self) -> torch.dtype:
        """int32 per-row columns (half the official int64 buffer); int64 when faithful."""
        return torch.int64 if self.faithful else torch.int32


# ---------------------------------------------------------------------------------------------
# The bypass's autograd: W + S for the GEMMs, never saved; the value gradient without dense tensors
# ---------------------------------------------------------------------------------------------
# Small C kernels for CPU (compiled once per machine, see _kernel()): the fp32 value gradient, and
# the scattered writes of the W + S patch. torch has no fused gather-multiply-reduce, and its
# sampled_addmm needs g^T and x^T made contiguous first: on a 2048x768 layer with 1024 tokens
# (1 thread) the kernels take 0.56 ms at k=1 (torch's chunked gather: 1.5 ms) and 2.0 ms at k=16
# (torch's transposes + sampled_addmm: 9.5 ms).
_KERNEL_SOURCE = r"""
#include <stdint.h>
#include <string.h>
#ifdef __AVX512F__
#include <immintrin.h>
/* dst[c * ldd + r] = src[r * lds + c] for a full 16x16 tile, in registers */
static inline void tile16(const float* src, int64_t lds, float* dst, int64_t ldd) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * lds);
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 8; ++i) {
        int a = (i / 4) * 8 + (i % 4);
        t[a] = _mm512_shuffle_f32x4(r[a], r[a + 4], 0x88);
        t[a + 4] = _mm512_shuffle_f32x4(r[a], r[a + 4], 0xDD);
    }
    for (int i = 0; i < 8; ++i) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
    }
    for (int i = 0; i < 16; ++i) _mm512_storeu_ps(dst + i * ldd, r[i]);
}

/* lane u of the result = the sum of p[u]'s 16 lanes (16 dot products finished at once) */
static inline __m512 reduce16(const __m512* p) {
    __m512 a[8], b[4], c[2];
    for (int u = 0; u < 8; ++u)
        a[u] = _mm512_add_ps(_mm512_unpacklo_ps(p[2 * u], p[2 * u + 1]), _mm512_unpackhi_ps(p[2 * u], p[2 * u + 1]));
    for (int v = 0; v < 4; ++v)
        b[v] = _mm512_add_ps(_mm512_shuffle_ps(a[2 * v], a[2 * v + 1], 0x44),
                             _mm512_shuffle_ps(a[2 * v], a[2 * v + 1], 0xEE));
    for (int w = 0; w < 2; ++w)
        c[w] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * w], b[2 * w + 1], 0x88),
                             _mm512_shuffle_f32x4(b[2 * w], b[2 * w + 1], 0xDD));
    return _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], 0x88), _mm512_shuffle_f32x4(c[0], c[1], 0xDD));
}

/* out[j0 + u] += dot(gr, xt row c[u]) for u < r <= 16, over m tokens (m a multiple of 16) */
static inline void dots16(const float* gr, const float* xt, const int32_t* c, int r, int64_t m, float* out) {
    __m512 p[16];
    for (int u = 0; u < 16; ++u) p[u] = _mm512_setzero_ps();
    if (r == 16) {
        for (int64_t t = 0; t < m; t += 16) {
            __m512 gv = _mm512_loadu_ps(gr + t);
            for (int u = 0; u < 16; ++u) p[u] = _mm512_fmadd_ps(gv, _mm512_loadu_ps(xt + (int64_t)c[u] * m + t), p[u]);
        }
        _mm512_storeu_ps(out, _mm512_add_ps(_mm512_loadu_ps(out), reduce16(p)));
        return;
    }
    for (int64_t t = 0; t < m; t += 16) {
        __m512 gv = _mm512_loadu_ps(gr + t);
        for (int u = 0; u < r; ++u) p[u] = _mm512_fmadd_ps(gv, _mm512_loadu_ps(xt + (int64_t)c[u] * m + t), p[u]);
    }
    __mmask16 mask = (__mmask16)((1u << r) - 1u);
    _mm512_mask_storeu_ps(out, mask, _mm512_add_ps(_mm512_maskz_loadu_ps(mask, out), reduce16(p)));
}
#endif

/* dst (cols x rows, contiguous) = src (rows x cols, row stride lds) transposed, in 16x16 tiles */
static void transpose(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int nthreads) {
    #pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t c0 = 0; c0 < cols; c0 += 16) {
        int64_t c1 = c0 + 16 < cols ? c0 + 16 : cols;
        for (int64_t r0 = 0; r0 < rows; r0 += 16) {
            int64_t r1 = r0 + 16 < rows ? r0 + 16 : rows;
#ifdef __AVX512F__
            if (r1 - r0 == 16 && c1 - c0 == 16) {
                tile16(src + r0 * lds + c0, lds, dst + c0 * rows + r0, rows);
                continue;
            }
#endif
            for (int64_t r = r0; r < r1; ++r)
                for (int64_t c = c0; c < c1; ++c) dst[c * rows + r] = src[r * lds + c];
        }
    }
}

/* W[i, idx[i, j]] = src[i, j] (bit copies of elem-byte entries; W rows ldw entries apart), prefetching
   the rows ahead: twice as fast as torch's scatter_ on the scattered, mostly cold cache lines of W. */
#define PUT_ROWS(T) \
    { \
        T* wt = (T*)w; \
        const T* st = (const T*)src; \
        for (int64_t i = 0; i < d_out; ++i) { \
            if (i + 4 < d_out) \
                for (int64_t j = 0; j < k; ++j) __builtin_prefetch(wt + (i + 4) * ldw + idx[(i + 4) * k + j], 1); \
            for (int64_t j = 0; j < k; ++j) wt[i * ldw + idx[i * k + j]] = st[i * k + j]; \
        } \
    }
void neuroada_put_rows(void* w, int64_t ldw, const int32_t* idx, const void* src, int64_t d_out, int64_t k,
                       int64_t elem) {
    if (elem == 2) PUT_ROWS(uint16_t)
    else if (elem == 4) PUT_ROWS(uint32_t)
    else if (elem == 8) PUT_ROWS(uint64_t)
}

/* Small k. out_t[j * d_out + i] = sum_n g[n, i] * x[n, idx_t[j * d_out + i]]: one gather per
   entry from an x row that sits in L1, vectorised over i; output rows split over threads. */
void neuroada_grad_gather(const float* g, int64_t ldg, const float* x, int64_t ldx, const int32_t* idx_t,
                          float* out_t, int64_t n_tok, int64_t d_out, int64_t k, int nthreads) {
    memset(out_t, 0, sizeof(float) * k * d_out);
    int64_t part = (d_out + nthreads - 1) / nthreads;
    #pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t i0 = 0; i0 < d_out; i0 += part) {
        int64_t i1 = i0 + part < d_out ? i0 + part : d_out;
        for (int64_t n0 = 0; n0 < n_tok; n0 += 64) {
            int64_t n1 = n0 + 64 < n_tok ? n0 + 64 : n_tok;
            for (int64_t j = 0; j < k; ++j) {
                float* __restrict a = out_t + j * d_out;
                const int32_t* __restrict c = idx_t + j * d_out;
                for (int64_t n = n0; n < n1; ++n) {
                    const float* __restrict gr = g + n * ldg;
                    const float* __restrict xr = x + n * ldx;
                    #pragma omp simd
                    for (int64_t i = i0; i < i1; ++i) a[i] += gr[i] * xr[c[i]];
                }
            }
        }
    }
}

/* Larger k: a sampled dense-dense product. Per block of nb tokens, g and x are transposed into
   cache-resident scratch (gt: d_out x nb, xt: d_in x nb), then out[i, j] += dot(gt[i], xt[idx[i, j]]);
   with AVX-512, 16 dots of a row are summed by one register transpose instead of 16 reductions. */
void neuroada_grad_sddmm(const float* g, int64_t ldg, const float* x, int64_t ldx, const int32_t* idx,
                         float* out, int64_t n_tok, int64_t d_out, int64_t d_in, int64_t k,
                         float* gt, float* xt, int64_t nb, int nthreads) {
    memset(out, 0, sizeof(float) * d_out * k);
    for (int64_t n0 = 0; n0 < n_tok; n0 += nb) {
        int64_t m = n0 + nb < n_tok ? nb : n_tok - n0;
        transpose(g + n0 * ldg, ldg, m, d_out, gt, nthreads);
        transpose(x + n0 * ldx, ldx, m, d_in, xt, nthreads);
        #pragma omp parallel for num_threads(nthreads) schedule(static)
        for (int64_t i = 0; i < d_out; ++i) {
            const float* __restrict gr = gt + i * m;
#ifdef __AVX512F__
            if (m % 16 == 0) {  /* 16 dots at a time, one register transpose-reduce for all 16 */
                for (int64_t j0 = 0; j0 < k; j0 += 16)
                    dots16(gr, xt, idx + i * k + j0, (int)(k - j0 < 16 ? k - j0 : 16), m, out + i * k + j0);
                continue;
            }
#endif
            for (int64_t j = 0; j < k; ++j) {
                const float* __restrict xr = xt + (int64_t)idx[i * k + j] * m;
                float s = 0.f;
                #pragma omp simd reduction(+ : s)
                for (int64_t t = 0; t < m; ++t) s += gr[t] * xr[t];
                out[i * k + j] += s;
            }
        }
    }
}
"""
_KERNEL_GATHER_MAX_K = 3  # the gather kernel up to this k, the SDDMM kernel above (measured crossover 3-4)
_KERNEL_TOKEN_BLOCK = 64  # SDDMM tokens per block: gt and xt stay in L2; 64 and 128 measured equal


@functools.lru_cache(maxsize=1)
def _kernel() -> ctypes.CDLL | None:
    """The C kernels, compiled once per machine into the bench cache; None (torch fallback) if no compiler.

    ``PEFT_BENCH_NEUROADA_KERNEL=0`` disables them. The library's name hashes the source, the flags
    and the CPU's feature flags, since ``-march=native`` code must not run on another CPU.
    """
    if os.environ.get("PEFT_BENCH_NEUROADA_KERNEL", "1") == "0":
        return None
    from bench.models import cache_dir

    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    try:
        cpu = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
    except OSError:
        cpu = platform.processor()
    last_error = "no C compiler (cc or gcc) on PATH"
    for flags in (["-O3", "-march=native", "-fopenmp"], ["-O3", "-march=native"], ["-O2"]):
        key = hashlib.sha256("\0".join([_KERNEL_SOURCE, *flags, cpu, platform.machine()]).encode()).hexdigest()[:16]
        lib_path = cache_dir() / "kernels" / f"neuroada_{key}.so"
        try:
            if not lib_path.exists():
                if cc is None:
                    break
                lib_path.parent.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryDirectory(dir=lib_path.parent) as tmp:
                    src, out = Path(tmp) / "neuroada.c", Path(tmp) / "neuroada.so"
                    src.write_text(_KERNEL_SOURCE)
                    subprocess.run(
                        [cc, *flags, "-shared", "-fPIC", str(src), "-o", str(out)], check=True, capture_output=True
                    )
                    os.replace(out, lib_path)  # atomic: concurrent builders race harmlessly
            lib = ctypes.CDLL(str(lib_path))
        except (OSError, subprocess.CalledProcessError) as err:
            last_error = getattr(err, "stderr", b"").decode(errors="replace")[-300:] or str(err)
            continue
        p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
        lib.neuroada_grad_gather.argtypes = [p, i64, p, i64, p, p, i64, i64, i64, i32]
        lib.neuroada_grad_sddmm.argtypes = [p, i64, p, i64, p, p, i64, i64, i64, i64, p, p, i64, i32]
        lib.neuroada_put_rows.argtypes = [p, i64, p, p, i64, i64, i64]
        return lib
    warnings.warn(
        f"neuroada: C kernels unavailable ({last_error.strip()}); using torch ops (slower on CPU)", stacklevel=2
    )
    return None


def _value_grad_kernel(lib: ctypes.CDLL, g2: torch.Tensor, x2: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """fp32 (d_out, k) value gradient from the C kernels; g2 and x2 fp32 with unit column stride."""
    n, d_out = g2.shape
    d_in, k = x2.shape[1], idx.shape[1]
    threads = torch.get_num_threads()
    idx32 = idx.to(torch.int32)
    if k <= _KERNEL_GATHER_MAX_K:
        idx_t = idx32.t().contiguous()
        out_t = torch.empty(k, d_out)
        lib.neuroada_grad_gather(
            g2.data_ptr(), g2.stride(0), x2.data_ptr(), x2.stride(0), idx_t.data_ptr(), out_t.data_ptr(),
            n, d_out, k, threads,
        )  # fmt: skip
        return out_t.t()
    idx32 = idx32.contiguous()
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
    return out.to(values_dtype)


def _put_entries(weight: torch.Tensor, idx: torch.Tensor, src: torch.Tensor) -> None:
    """``weight[i, idx[i, j]] = src[i, j]`` in place (the C kernel on CPU, else ``scatter_``)."""
    lib = _kernel() if weight.device.type == "cpu" and weight.stride(1) == 1 else None
    if lib is None or weight.element_size() not in (2, 4, 8):
        weight.scatter_(1, idx.long(), src)
        return
    idx32 = idx.to(torch.int32).contiguous()
    src = src.to(weight.dtype).contiguous()
    d_out, k = idx32.shape
    lib.neuroada_put_rows(
        weight.data_ptr(), weight.stride(0), idx32.data_ptr(), src.data_ptr(), d_out, k, weight.element_size()
    )


class _BypassFunction(torch.autograd.Function):
    """``y = x (W + S)^T + b`` saving only x (and the values, a parameter) for backward."""

    @staticmethod
    def forward(ctx, x, values, weight, bias, layer):
        with layer.effective_weight() as w_eff:
            y = F.linear(x, w_eff, bias)
        ctx.layer, ctx.x_dtype = layer, x.dtype
        needs_x = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        ctx.save_for_backward(x if needs_x else None, values)
        return y

    @staticmethod
    def backward(ctx, g):
        x, values = ctx.saved_tensors
        layer = ctx.layer
        weight, bias, idx = layer.weight, layer.bias, layer.neuroada_idx
        d_out = weight.shape[0]
        g2 = g.reshape(-1, d_out)
        grad_x = grad_values = grad_weight = grad_bias = None
        # The value gradient first: g is still in cache from the op that produced it.
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            x2 = x.reshape(-1, weight.shape[1])
            if ctx.needs_input_grad[1]:
                grad_values = value_grad(g2, x2, idx, values.dtype)
            if ctx.needs_input_grad[2]:  # only when a caller unfroze the base weight
                grad_weight = (g2.t() @ x2).to(weight.dtype)
        if ctx.needs_input_grad[0]:
            with layer.effective_weight() as w_eff:
                grad_x = (g2 @ w_eff.to(g2.dtype)).view(*g.shape[:-1], weight.shape[1]).to(ctx.x_dtype)
        if bias is not None and ctx.needs_input_grad[3]:
            grad_bias = g2.sum(0).to(bias.dtype)
        return grad_x, grad_values, grad_weight, grad_bias, None


# ---------------------------------------------------------------------------------------------
# The layer
# ---------------------------------------------------------------------------------------------
class NeuroAdaLinear(nn.Module):
    """A frozen ``nn.Linear`` plus trainable values at k selected input columns per output row."""

    def __init__(
        self,
        base_layer: nn.Linear,
        idx: torch.Tensor,
        *,
        value_dtype: torch.dtype = torch.float32,
        index_dtype: torch.dtype = torch.int32,
        config: NeuroAdaConfig | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(base_layer, nn.Linear):
            raise UsageError(f"NeuroAdaLinear wraps an nn.Linear, got a {type(base_layer).__name__}")
        weight = base_layer.weight
        d_out, d_in = weight.shape
        if idx.dim() != 2 or idx.shape[0] != d_out or idx.shape[1] < 1 or idx.shape[1] >= d_in:
            raise UsageError(
                f"indices of shape {tuple(idx.shape)} do not fit a {d_out}x{d_in} weight; "
                f"expected ({d_out}, k) with 1 <= k < {d_in}"
            )
        if idx.min() < 0 or idx.max() >= d_in:
            raise UsageError(f"indices must lie in [0, {d_in}); got values in [{int(idx.min())}, {int(idx.max())}]")
        if d_in >= 2**31:
            index_dtype = torch.int64
        idx = idx.to(device=weight.device, dtype=torch.int64).sort(dim=1).values
        if (idx[:, 1:] == idx[:, :-1]).any():
            raise UsageError("indices must be distinct within each row")
        self.base_layer = base_layer
        self.config = config
        self.neuroada_values = nn.Parameter(torch.zeros(d_out, idx.shape[1], dtype=value_dtype, device=weight.device))
        self.register_buffer("neuroada_idx", idx.to(index_dtype))
        self.merged = False
        self._unmerged_entries: torch.Tensor | None = None  # W at idx before merge(), for a bit-exact unmerge
        self._entries: torch.Tensor | None = None  # W at idx, cached for effective_weight()
        self._entries_key: tuple[int, int] | None = None  # (data_ptr, _version) of W when cached

    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    @property
    def k(self) -> int:
        return self.neuroada_idx.shape[1]

    @property
    def weight(self) -> torch.Tensor:
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base_layer.bias

    def delta_weight(self) -> torch.Tensor:
        """The dense update ΔW (values' dtype), ``ΔW[i, idx[i, j]] = values[i, j]``; differentiable."""
        zeros = torch.zeros(self.weight.shape, dtype=self.neuroada_values.dtype, device=self.weight.device)
        return zeros.scatter(1, self.neuroada_idx.long(), self.neuroada_values)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the values into W in place; a second call is a no-op (never a double add)."""
        if self.merged:
            return
        weight, cols = self.weight, self.neuroada_idx.long()
        self._unmerged_entries = weight.gather(1, cols)
        weight.scatter_add_(1, cols, self.neuroada_values.to(weight.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Restore W bit-for-bit (the entries saved by ``merge``); a no-op when not merged."""
        if not self.merged:
            return
        self.weight.scatter_(1, self.neuroada_idx.long(), self._unmerged_entries.to(self.weight.device))
        self._unmerged_entries = None
        self.merged = False

    @contextmanager
    def effective_weight(self) -> Iterator[torch.Tensor]:
        """``W + S`` (W's dtype) for the duration of the block; W is bit-for-bit unchanged afterwards.

        Writes ``W[i, c] + v`` at each selected entry: exactly what ``merge`` and the official
        ``W.flatten().scatter_add(...)`` produce. W itself is patched in place and restored from the
        cached original entries (two scattered passes over k*d_out entries, no d_out x d_in copy);
        a transient copy is used instead when k > _PATCH_MAX_K or the base weight trains.
        """
        weight, idx = self.weight, self.neuroada_idx
        with torch.no_grad():
            key = (weight.data_ptr(), weight._version)
            if self._entries_key != key or self._entries is None:
                self._entries = weight.gather(1, idx.long())  # refreshed whenever W changed since
            patched = self._entries + self.neuroada_values.detach().to(weight.dtype)
            if idx.shape[1] > _PATCH_MAX_K or weight.requires_grad:
                yield weight.detach().clone(memory_format=torch.contiguous_format).scatter_(1, idx.long(), patched)
                self._entries_key = key
                return
            _put_entries(weight, idx, patched)
            try:
                yield weight
            finally:
                _put_entries(weight, idx, self._entries)
                self._entries_key = (weight.data_ptr(), weight._version)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base_layer(x)
        return _BypassFunction.apply(x, self.neuroada_values, self.weight, self.bias, self)

    def extra_repr(self) -> str:
        return f"k={self.k}, values={self.neuroada_values.dtype}, merged={self.merged}"


# ---------------------------------------------------------------------------------------------
# The method
# ---------------------------------------------------------------------------------------------
def neuroada_layers(model: nn.Module) -> list[tuple[str, NeuroAdaLinear]]:
    """The model's NeuroAda layers, by qualified name."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, NeuroAdaLinear)]


def _require_fresh(model: nn.Module) -> None:
    if neuroada_layers(model):
        raise UsageError(
            "the model already has NeuroAda layers; apply or load NeuroAda onto a fresh base model "
            "(or merge the adapted one first)"
        )


def _inject(
    model: nn.Module, layers: dict[str, tuple[nn.Linear, torch.Tensor]], cfg: NeuroAdaConfig
) -> dict[str, NeuroAdaLinear]:
    freeze(model)
    out = {}
    for name, (linear, idx) in layers.items():
        layer = NeuroAdaLinear(
            linear,
            idx,
            value_dtype=cfg.values_dtype(linear.weight.dtype),
            index_dtype=cfg.index_dtype,
            config=cfg,
        )
        set_submodule(model, name, layer)
        out[name] = layer
    return out


def _adapter_file(path: str | Path) -> Path:
    path = Path(path)
    return path if path.suffix == ".safetensors" else path / ADAPTER_FILE


@METHODS.register
class NeuroAdaMethod:
    name = "neuroada"
    config_cls = NeuroAdaConfig

    def apply(self, model: nn.Module, cfg: NeuroAdaConfig, calibration: Iterable[dict] | None = None) -> nn.Module:
        """Select indices for every target (all validated before the model changes), inject, freeze."""
        _require_fresh(model)
        targets = find_targets(model, cfg.target_modules)
        scores = selection_scores(model, targets, cfg.selection, calibration, "neuroada")
        layers = {
            name: (
                linear,
                select_indices(
                    linear.weight,
                    cfg.k,
                    cfg.selection,
                    seed=layer_seed(cfg.seed, name),
                    score=scores.get(name),
                    name=name,
                ),
            )
            for name, linear in targets
        }
        _inject(model, layers, cfg)
        return model

    def merge(self, model: nn.Module) -> nn.Module:
        """Fold every layer's values into its weight and put the plain ``nn.Linear`` back."""
        for name, layer in neuroada_layers(model):
            layer.merge()
            set_submodule(model, name, layer.base_layer)
        return model

    def optimizer(self, model: nn.Module, cfg: NeuroAdaConfig, weight_decay: float) -> torch.optim.Optimizer:
        return adamw(trainable_parameters(model), cfg.lr, weight_decay)

    def save(self, model: nn.Module, path: str) -> None:
        """Values, indices and config as one safetensors file (``path`` a folder or a ``.safetensors`` file)."""
        from safetensors.torch import save_file

        layers = neuroada_layers(model)
        if not layers:
            raise UsageError("the model has no NeuroAda layers to save; apply neuroada first")
        cfg = layers[0][1].config or NeuroAdaConfig(k=layers[0][1].k)
        tensors = {}
        for name, layer in layers:
            if layer.merged:
                raise UsageError(f"layer '{name}' is merged; unmerge it before saving the adapter")
            tensors[f"{name}.neuroada_values"] = layer.neuroada_values.detach().cpu().contiguous()
            tensors[f"{name}.neuroada_idx"] = layer.neuroada_idx.cpu().contiguous()
        file = _adapter_file(path)
        file.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(file), metadata={"format": _FORMAT, "config": json.dumps(asdict(cfg))})

    def load(self, model: nn.Module, path: str) -> nn.Module:
        """Adapt a fresh base ``model`` with the saved indices and values (no selection is re-run)."""
        from safetensors import safe_open

        file = _adapter_file(path)
        if not file.exists():
            raise UsageError(f"no NeuroAda adapter at '{file}'; pass the folder or file that save() wrote")
        with safe_open(str(file), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != _FORMAT:
                raise UsageError(f"'{file}' is not a NeuroAda adapter (format {meta.get('format')!r})")
            cfg = NeuroAdaConfig(**json.loads(meta["config"]))
            saved = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open has no iterator)
        _require_fresh(model)
        names = sorted(key.removesuffix(".neuroada_idx") for key in saved if key.endswith(".neuroada_idx"))
        layers = {}
        for name in names:
            try:
                linear = model.get_submodule(name)
            except AttributeError:
                raise UsageError(
                    f"adapter layer '{name}' is not in {type(model).__name__}; "
                    "load onto the base model it was trained on"
                ) from None
            if not isinstance(linear, nn.Linear):
                raise UsageError(f"adapter layer '{name}' is a {type(linear).__name__} here, not an nn.Linear")
            idx = saved[f"{name}.neuroada_idx"]
            if idx.shape[0] != linear.out_features or int(idx.max()) >= linear.in_features:
                raise UsageError(
                    f"adapter layer '{name}' has indices {tuple(idx.shape)} up to {int(idx.max())}, which do not fit "
                    f"a {linear.out_features}x{linear.in_features} weight; load onto the base model it was trained on"
                )
            layers[name] = (linear, idx)
        for name, layer in _inject(model, layers, cfg).items():
            with torch.no_grad():
                layer.neuroada_values.copy_(saved[f"{name}.neuroada_values"])
        return model
