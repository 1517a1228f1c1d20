"""NeuroAda's layer (see :mod:`methods.neuroada` for the method and its config): a frozen ``nn.Linear``
plus trainable values at k selected input columns per output row, and its autograd function.

Why it is fast (measured on one CPU thread; ``python -m bench micro`` reproduces the numbers):

- forward: ``W + S`` (S = the scattered values) feeds one GEMM and is never saved for backward:
  the k*d_out entries are patched into W in place and restored bit-exactly from a cached copy of
  the original entries (a transient W + S copy for k > 16 or when the base weight trains). A
  forward whose backward needs W (for grad_x) keeps the patch until that backward has used it (or
  its graph is freed), so a training step writes the entries twice, not four times; ``state_dict()``,
  ``merge()`` and ``unmerge()`` restore W first. On CPU a small C loop with prefetching writes the
  entries (twice as fast as scatter_).
- backward saves only the layer input x (what LoRA saves too), or only the columns of x that idx
  reads for the layers in ``compact_inputs`` (by default down_proj, whose input nothing else keeps:
  at k=1 a quarter to a third of its columns), and rebuilds ``W + S`` for ``grad_x = g @ (W + S)``.
  The value gradient ``grad[i, j] = sum_n g[n, i] * x[n, idx[i, j]]`` never forms a dense
  d_out x d_in tensor nor a (tokens, d_out, k) one: C kernels on CPU in fp32
  (``methods/neuroada_kernels.c``, compiled once per machine by ``methods/_kernels.py``; torch has
  no fused gather-multiply-reduce), torch ops otherwise (``methods/_sparse_ops.py``).
  ``BENCH_NEUROADA_KERNEL=0`` turns the C kernels off.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import UsageError
from methods._sparse_ops import put_entries, value_grad

# Patch W in place up to this k, transient W + S copy above: equal step times at k=16, and the
# copy's cost does not grow with k while 2*k*d_out scattered writes do.
_PATCH_MAX_K = 16


# ---------------------------------------------------------------------------------------------
# The layer, and its autograd: W + S for the GEMMs, never saved; the value gradient without dense tensors
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
        config: Any = None,  # the method's NeuroAdaConfig, kept for save()
        compact_input: bool = False,
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
        self.compact_input = compact_input  # keep only the input columns idx reads (see input_columns)
        self._unmerged_entries: torch.Tensor | None = None  # W at idx before merge(), for a bit-exact unmerge
        self._state = _State()
        self.register_state_dict_pre_hook(lambda module, prefix, keep_vars: module.unpatch())
        self.register_load_state_dict_pre_hook(lambda module, *args: module.unpatch())

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
        """W itself: a patch still held for a backward is restored first (that backward patches anew)."""
        self.unpatch()
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base_layer.bias

    def delta_weight(self) -> torch.Tensor:
        """The dense update ΔW (values' dtype), ``ΔW[i, idx[i, j]] = values[i, j]``; differentiable."""
        w = self.base_layer.weight
        zeros = torch.zeros(w.shape, dtype=self.neuroada_values.dtype, device=w.device)
        return zeros.scatter(1, self.neuroada_idx.long(), self.neuroada_values)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the values into W in place; a second call is a no-op (never a double add)."""
        self.unpatch()
        if self.merged:
            return
        weight, cols = self.base_layer.weight, self.neuroada_idx.long()
        self._unmerged_entries = weight.gather(1, cols)
        weight.scatter_add_(1, cols, self.neuroada_values.to(weight.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Restore W bit-for-bit (the entries saved by ``merge``); a no-op when not merged."""
        self.unpatch()
        if not self.merged:
            return
        w = self.base_layer.weight
        w.scatter_(1, self.neuroada_idx.long(), self._unmerged_entries.to(w.device))
        self._unmerged_entries = None
        self.merged = False

    # The patch. The hot path (a training forward and its backward, per layer) passes W, idx and the
    # values along instead of reading them off the module again: an nn.Module attribute read costs
    # 1.3 us and a write 3 us, so the bookkeeping lives in a slotted _State (0.1 us per access).
    def _patch_in_place(self, w: torch.Tensor, idx: torch.Tensor) -> bool:
        return idx.shape[1] <= _PATCH_MAX_K and not w.requires_grad

    def _patched_entries(self, w: torch.Tensor, idx: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """W's own entries at idx plus the values (no graph); the entries are cached and re-read
        whenever W changed since (never while W + S is in W)."""
        p = self._state
        if p.version is None:
            key = (w.data_ptr(), w._version)
            if p.entries is None or p.entries_key != key:
                p.entries, p.entries_key = w.detach().gather(1, idx.long()), key
        v = values.detach()
        return p.entries + (v if v.dtype == w.dtype else v.to(w.dtype))

    def _write_patch(self, w: torch.Tensor, idx: torch.Tensor, values: torch.Tensor) -> None:
        put_entries(w, idx, self._patched_entries(w, idx, values))
        self._state.version = values._version

    def _restore(self, w: torch.Tensor, idx: torch.Tensor) -> None:
        p = self._state
        put_entries(w, idx, p.entries)
        p.entries_key, p.version = (w.data_ptr(), w._version), None

    def hold_patch(self, w: torch.Tensor, idx: torch.Tensor, values: torch.Tensor) -> _Hold:
        """Write W + S into W (if a hold has not already) and keep it there until the returned hold is
        released: by the backward of the forward that took it, or when that graph is freed."""
        p = self._state
        if p.holds == 0 or p.version != values._version:  # not in W yet, or the values moved since
            self._write_patch(w, idx, values)
        p.holds += 1
        return _Hold(self, p.epoch)

    def _release(self, epoch: int) -> None:
        p = self._state
        if epoch != p.epoch or p.holds == 0:
            return
        p.holds -= 1
        if p.holds == 0:
            self._restore(self.base_layer.weight, self.neuroada_idx)

    def unpatch(self) -> None:
        """Restore W now if a forward still holds W + S in it (their backward then patches again)."""
        p = self._state
        if p.holds:
            self._restore(self.base_layer.weight, self.neuroada_idx)
            p.holds = 0
            p.epoch += 1

    @contextmanager
    def effective_weight(self, w: torch.Tensor, idx: torch.Tensor, values: torch.Tensor) -> Iterator[torch.Tensor]:
        """``W + S`` (W's dtype) for the block: ``W[i, c] + v`` at each selected entry, exactly what
        ``merge`` and the official ``W.flatten().scatter_add(...)`` produce. W is patched in place
        (two scattered passes over k*d_out entries, none while a hold keeps it patched) and is as it
        was afterwards; a transient copy when k > _PATCH_MAX_K or the base weight trains."""
        if not self._patch_in_place(w, idx):
            w_eff = w.detach().clone(memory_format=torch.contiguous_format)
            yield w_eff.scatter_(1, idx.long(), self._patched_entries(w, idx, values))
            return
        if self._state.holds:  # already W + S; rewrite only if the values moved since
            if self._state.version != values._version:
                self._write_patch(w, idx, values)
            yield w
            return
        self._write_patch(w, idx, values)
        try:
            yield w
        finally:
            self._restore(w, idx)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base_layer(x)
        # hold W + S for backward only if its GEMM will need W (grad_x); decided here, as grad mode
        # is off inside the autograd function
        hold = torch.is_grad_enabled() and x.requires_grad
        base = self.base_layer
        return _BypassFunction.apply(x, self.neuroada_values, base.weight, base.bias, self, hold)

    def input_columns(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(cols, pos)`` when this layer keeps a compact input: the distinct columns of idx (sorted)
        and idx's positions among them, both in idx's dtype, so ``x[..., cols][..., pos[i, j]]`` is
        ``x[..., idx[i, j]]``. None when it keeps all of x: not ``compact_input``, or the columns are
        more than half of d_in. Cached until idx changes (``load_state_dict`` writes it in place)."""
        if not self.compact_input:
            return None
        s = self._state
        key = (idx.data_ptr(), idx._version)
        if s.columns_key != key:
            cols, pos = torch.unique(idx, sorted=True, return_inverse=True)
            s.columns = (cols, pos.to(idx.dtype)) if 2 * cols.numel() <= self.in_features else None
            s.columns_key = key
        return s.columns

    def extra_repr(self) -> str:
        compact = ", compact_input=True" if self.compact_input else ""
        return f"k={self.k}, values={self.neuroada_values.dtype}, merged={self.merged}{compact}"


class _State:
    """One layer's bookkeeping: its W + S patch and its compact input's columns."""

    __slots__ = ("holds", "epoch", "version", "entries", "entries_key", "columns", "columns_key")

    def __init__(self) -> None:
        self.holds = 0  # forward passes whose backward still wants W + S in place (see hold_patch)
        self.epoch = 0  # bumped by unpatch(): holds from before it release nothing
        self.version: int | None = None  # values._version written into W while held
        self.entries: torch.Tensor | None = None  # W at idx, cached for the patch and its restore
        self.entries_key: tuple[int, int] | None = None  # (data_ptr, _version) of W when cached
        self.columns: tuple[torch.Tensor, torch.Tensor] | None = None  # input_columns(), cached
        self.columns_key: tuple[int, int] | None = None  # (data_ptr, _version) of idx when cached


class _Hold:
    """One forward's claim on the W + S patch of ``layer``: released once, by its backward or, if the
    graph is freed without one, by the garbage collector (CPython frees a graph as soon as its last
    output goes)."""

    __slots__ = ("layer", "epoch", "done")

    def __init__(self, layer: NeuroAdaLinear, epoch: int) -> None:
        self.layer, self.epoch, self.done = layer, epoch, False

    def release(self) -> None:
        if not self.done:
            self.done = True
            self.layer._release(self.epoch)

    def __del__(self) -> None:
        self.release()


class _BypassFunction(torch.autograd.Function):
    """``y = x (W + S)^T + b`` saving only x (and the values, a parameter) for backward."""

    @staticmethod
    def forward(ctx, x, values, weight, bias, layer, hold):
        idx = layer.neuroada_idx
        ctx.layer, ctx.weight, ctx.bias, ctx.x_dtype = layer, weight, bias, x.dtype
        ctx.hold = None
        if hold and layer._patch_in_place(weight, idx):  # W + S stays in W for backward's GEMM
            ctx.hold = layer.hold_patch(weight, idx, values)
            y = F.linear(x, weight, bias)
        else:
            with layer.effective_weight(weight, idx, values) as w_eff:
                y = F.linear(x, w_eff, bias)
        ctx.idx = ctx.value_idx = idx  # value_idx: idx's columns in the x that backward gets
        kept = x if ctx.needs_input_grad[1] or ctx.needs_input_grad[2] else None
        if kept is not None and not ctx.needs_input_grad[2] and (columns := layer.input_columns(idx)) is not None:
            # the columns idx reads, gathered from x's 2-D view: index_select along the last dim of a 3-D
            # (8, 128, 2048) x took 3.8-4.5 ms against 0.42-0.58 ms on its (1024, 2048) view (best of 30,
            # 3 runs); backward works on the 2-D view anyway
            kept, ctx.value_idx = x.reshape(-1, x.shape[-1]).index_select(1, columns[0]), columns[1]
        ctx.save_for_backward(kept, values)
        return y

    @staticmethod
    def backward(ctx, g):
        x, values = ctx.saved_tensors
        layer, weight, bias, idx = ctx.layer, ctx.weight, ctx.bias, ctx.idx
        d_out, d_in = weight.shape
        g2 = g.reshape(-1, d_out)
        grad_x = grad_values = grad_weight = grad_bias = None
        # The value gradient first: g is still in cache from the op that produced it.
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            x2 = x.reshape(-1, x.shape[-1])
            if ctx.needs_input_grad[1]:
                grad_values = value_grad(g2, x2, ctx.value_idx, values.dtype)
            if ctx.needs_input_grad[2]:  # only when a caller unfroze the base weight
                grad_weight = (g2.t() @ x2).to(weight.dtype)
        if ctx.needs_input_grad[0]:
            with layer.effective_weight(weight, idx, values) as w_eff:
                grad_x = (g2 @ (w_eff if w_eff.dtype == g2.dtype else w_eff.to(g2.dtype))).view(*g.shape[:-1], d_in)
            if grad_x.dtype != ctx.x_dtype:
                grad_x = grad_x.to(ctx.x_dtype)
        if ctx.hold is not None:
            ctx.hold.release()
        if bias is not None and ctx.needs_input_grad[3]:
            grad_bias = g2.sum(0).to(bias.dtype)
        return grad_x, grad_values, grad_weight, grad_bias, None, None
