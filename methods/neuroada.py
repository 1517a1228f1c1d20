"""NeuroAda (arXiv 2510.18940): a trainable bypass on the k strongest input connections of each neuron.

For each target ``nn.Linear`` weight W (d_out x d_in), ``idx = topk(|W|, k, dim=1)`` picks k input
columns per output row once, before training (data-free for the default ``magnitude`` selection).
Trainable ``values`` of shape (d_out, k), zero at init, add ``sum_j values[i, j] * x[..., idx[i, j]]``
to output i; merging folds them in: ``W[i, idx[i, j]] += values[i, j]``. Row-major ``values``
flattened is the official code's 1-D ``weight_new`` (its positions are ``i * d_in + idx[i, j]``).

This file reads config, layer (with its autograd function), method. Why it is fast (measured on one
CPU thread; ``python -m bench micro`` reproduces the numbers):

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

import json
import math
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
from methods._sparse_ops import put_entries, value_grad

ADAPTER_FILE = "neuroada.safetensors"
_FORMAT = "peft-bench/neuroada/1"
# Patch W in place up to this k, transient W + S copy above: equal step times at k=16, and the
# copy's cost does not grow with k while 2*k*d_out scattered writes do.
_PATCH_MAX_K = 16


# ---------------------------------------------------------------------------------------------
# The config
# ---------------------------------------------------------------------------------------------
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

    compact_inputs: tuple[str, ...] | None = None
    """Target layers (names or name suffixes) that keep for backward only the input columns their value
    gradient reads, when those are at most half of the input (at k=1 a quarter to a third of a LLaMA
    down_proj's). Gradients are bit-identical; the saved bytes shrink. Name only layers whose input no
    other op keeps for backward, or it is kept twice: q, k and v share theirs, and o_proj's is the
    attention output, which attention keeps. None: ``down_proj`` where the model has one; ``()``: none."""

    faithful: bool = False
    """Keep the official code's dtypes: values in the model dtype and int64 indices (the official
    code stores flat int64 positions ``i * d_in + col``, ours per-row columns in the same order)."""

    def __post_init__(self) -> None:
        for field in ("target_modules", "compact_inputs"):
            names = getattr(self, field)
            if isinstance(names, (list, str)):
                object.__setattr__(self, field, (names,) if isinstance(names, str) else tuple(names))
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
        if self.compact_inputs is not None and not all(isinstance(t, str) and t for t in self.compact_inputs):
            raise ValueError(
                f"neuroada.compact_inputs={self.compact_inputs!r} must be None (down_proj where the model "
                "has one), () (none) or a tuple of module names such as ('down_proj',)"
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

    def model_problem(self, model: nn.Module, targets: list[tuple[str, nn.Linear]]) -> str | None:
        """What ``apply`` would refuse on ``model`` (adapting ``targets``) beyond k and the targets:
        ``compact_inputs`` naming no module, or none that is adapted. The plan checks it on a
        weightless skeleton before any job runs."""
        try:
            _compact_names(model, self, [name for name, _ in targets])
        except UsageError as err:
            return str(err)
        return None

    @property
    def index_dtype(self) -> torch.dtype:
        """int32 per-row columns (half the official int64 buffer); int64 when faithful."""
        return torch.int64 if self.faithful else torch.int32


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
        config: NeuroAdaConfig | None = None,
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
            kept, ctx.value_idx = x.index_select(-1, columns[0]), columns[1]  # the columns idx reads
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


def _compact_names(model: nn.Module, cfg: NeuroAdaConfig, layers: Iterable[str]) -> set[str]:
    """The adapted layers named by ``cfg.compact_inputs`` (None: every adapted ``down_proj``)."""
    names = cfg.compact_inputs
    if names is None:
        return {n for n in layers if n.rsplit(".", 1)[-1] == "down_proj"}
    if not names:
        return set()
    try:
        chosen = {n for n, _ in find_targets(model, names)} & set(layers)
    except UsageError as err:
        raise UsageError(f"neuroada.compact_inputs: {err}") from None
    if not chosen:
        raise UsageError(
            f"neuroada.compact_inputs={cfg.compact_inputs!r} names no layer that NeuroAda adapts here; "
            "name some of its target_modules, or drop the setting"
        )
    return chosen


def _inject(
    model: nn.Module, layers: dict[str, tuple[nn.Linear, torch.Tensor]], cfg: NeuroAdaConfig
) -> dict[str, NeuroAdaLinear]:
    compact = _compact_names(model, cfg, layers)
    freeze(model)
    out = {}
    for name, (linear, idx) in layers.items():
        layer = NeuroAdaLinear(
            linear,
            idx,
            value_dtype=cfg.values_dtype(linear.weight.dtype),
            index_dtype=cfg.index_dtype,
            config=cfg,
            compact_input=name in compact,
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
