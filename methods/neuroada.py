"""NeuroAda (arXiv 2510.18940): a trainable bypass on the k strongest input connections of each neuron.

For each target ``nn.Linear`` weight W (d_out x d_in), ``idx = topk(|W|, k, dim=1)`` picks k input
columns per output row once, before training (data-free for the default ``magnitude`` selection).
Trainable ``values`` of shape (d_out, k), zero at init, add ``sum_j values[i, j] * x[..., idx[i, j]]``
to output i; merging folds them in: ``W[i, idx[i, j]] += values[i, j]``. Row-major ``values``
flattened is the official code's 1-D ``weight_new`` (its positions are ``i * d_in + idx[i, j]``).

This file reads config, then method; the layer and its autograd function, and why they are fast,
are in ``methods/_neuroada_layer.py``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from bench.errors import UsageError
from bench.registry import METHODS
from methods._base import adamw, find_targets, freeze, set_submodule, trainable_parameters
from methods._neuroada_layer import NeuroAdaLinear
from methods._selection import SELECTIONS, Selection, layer_seed, select_indices, selection_scores

ADAPTER_FILE = "neuroada.safetensors"
_FORMAT = "peft-bench/neuroada/1"


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
