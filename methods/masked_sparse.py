"""Masked sparse tuning: NeuroAda's selection, but the whole weight trains with a masked gradient.

For each target ``nn.Linear`` weight W (d_out x d_in) the same ``k`` entries per output row as
NeuroAda are selected (:func:`methods._selection.select_indices`). W itself is trainable
(``requires_grad=True``); the layer's backward zeroes W's gradient outside the selection, and
:class:`MaskedAdamW` applies decoupled weight decay at the selected entries only. The update is
the one NeuroAda makes (its values enter the output exactly as extra weight at the same
entries), but W's gradient and AdamW's two moments are dense: the memory-heavy baseline that
NeuroAda's bypass avoids. That is the point of this method.

Parameter budget: ``k * sum(d_out)`` trainable *entries* over the targets, the same as
NeuroAda's. ``count_trainable`` reports these entries; ``methods._base.count_parameters(model,
trainable_only=True)`` reports ``sum(d_out * d_in)``, the whole W held trainable, which is what
the memory measurements reflect.

Weight decay differs from NeuroAda's in one respect: NeuroAda decays its values (the update)
towards zero, masked sparse decays the selected entries of W towards zero. They coincide at
weight decay 0, the setting of most NeuroAda recipes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from bench.errors import UsageError
from bench.registry import METHODS
from methods._base import find_targets, freeze, set_submodule, trainable_parameters
from methods._selection import SELECTIONS, Selection, layer_seed, select_indices, selection_scores

FILE = "masked_sparse.safetensors"
INDICES, VALUES, INITIAL = "masked_sparse_indices", "masked_sparse_values", "masked_sparse_initial"


@dataclass(frozen=True)
class MaskedSparseConfig:
    k: int = 1
    """Entries trained per output row of each target weight. Budget: ``k * sum(d_out)``."""

    selection: Selection = "magnitude"
    """Which entries: ``magnitude`` (top-k |W|, NeuroAda's default), ``random``, ``reverse``, or
    ``gradient`` (top-k |dL/dW| over the ``calibration`` batches given to ``apply``)."""

    seed: int = 0
    """Seed of ``random`` selection; each layer draws from this seed combined with its name, as NeuroAda does."""

    target_modules: tuple[str, ...] | None = None
    """Module names (or ``.``-suffixes) to adapt; None: ``methods._base.default_targets(model)``."""

    lr: float = 8e-3
    """Learning rate: NeuroAda's k=1 commonsense rate (8e-3), since the update is NeuroAda's own."""

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k <= 0:
            raise ValueError(f"masked_sparse.k={self.k!r} must be a positive integer (e.g. 1)")
        if self.selection not in SELECTIONS:
            raise ValueError(f"masked_sparse.selection={self.selection!r} must be one of {', '.join(SELECTIONS)}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"masked_sparse.seed={self.seed!r} must be an integer >= 0 (e.g. 0)")
        lr_ok = isinstance(self.lr, (int, float)) and not isinstance(self.lr, bool) and math.isfinite(self.lr)
        if not lr_ok or self.lr <= 0:
            raise ValueError(f"masked_sparse.lr={self.lr!r} must be a positive number (e.g. 8e-3)")
        if self.target_modules is not None:
            targets = (self.target_modules,) if isinstance(self.target_modules, str) else tuple(self.target_modules)
            if not targets or not all(isinstance(t, str) and t for t in targets):
                raise ValueError(
                    f"masked_sparse.target_modules={self.target_modules!r} must be None or non-empty module "
                    "names (e.g. ('q_proj', 'v_proj'))"
                )
            object.__setattr__(self, "target_modules", targets)


class _MaskGrad(torch.autograd.Function):
    """Identity on W in forward; in backward, W's gradient is zeroed outside the selected entries.

    Part of the forward rather than a hook on the Parameter, so that the mask survives
    ``copy.deepcopy`` (which drops tensor hooks) and anything else that rebuilds Parameters.
    """

    @staticmethod
    def forward(ctx, weight: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(indices)
        return weight.view_as(weight)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (idx,) = ctx.saved_tensors
        # Exactly zero outside the selection; the selected entries keep their gradient bit for bit.
        return torch.zeros_like(grad).scatter_(1, idx, grad.gather(1, idx)), None


class MaskedSparseLinear(nn.Linear):
    """An ``nn.Linear`` whose weight's gradient is masked to ``masked_sparse_indices``.

    It shares the wrapped layer's ``weight`` and ``bias`` Parameters (same names, same objects)
    and computes exactly ``nn.Linear``'s output. Buffers (not saved in the model's state dict):
    ``masked_sparse_indices`` (d_out, k) int64, sorted per row, and ``masked_sparse_initial``
    (d_out, k), W at those entries before training, for :meth:`delta_weight`.
    """

    def __init__(self, base: nn.Linear, indices: torch.Tensor) -> None:
        super().__init__(base.in_features, base.out_features, bias=base.bias is not None, device="meta")
        self.weight = base.weight
        self.bias = base.bias
        indices = indices.to(device=base.weight.device, dtype=torch.int64)
        self.register_buffer(INDICES, indices, persistent=False)
        self.register_buffer(INITIAL, base.weight.detach().gather(1, indices).clone(), persistent=False)
        self.weight.requires_grad_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        if weight.requires_grad and torch.is_grad_enabled():
            weight = _MaskGrad.apply(weight, getattr(self, INDICES))
        return F.linear(x, weight, self.bias)

    def delta_weight(self) -> torch.Tensor:
        """Dense ``W - W_init``: non-zero only at the selected entries."""
        idx = getattr(self, INDICES)
        w = self.weight.detach()
        return torch.zeros_like(w).scatter_(1, idx, w.gather(1, idx) - getattr(self, INITIAL))

    def unwrap(self) -> nn.Linear:
        """A plain ``nn.Linear`` on the same (updated) Parameters: gradients are no longer masked."""
        plain = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device="meta")
        plain.weight, plain.bias = self.weight, self.bias
        return plain


class MaskedAdamW(torch.optim.AdamW):
    """AdamW whose decoupled weight decay touches only the selected entries of masked weights.

    Why: torch's AdamW multiplies *every* entry of a parameter by ``1 - lr * weight_decay`` at
    each step, gradient or not, so a masked gradient alone still lets every unselected entry
    shrink (with weight_decay=0.01, 2,992,128 entries outside the mask changed in 5 steps on a
    110M model). The masked weights therefore sit in a group with ``weight_decay=0``, and
    :meth:`step` applies the same decay, at the same point (before the Adam update, as torch
    does), to the selected entries only. Outside the mask the Adam update is then exactly zero
    (zero gradient, zero moments), so those entries stay bitwise unchanged. Other trainable
    parameters (e.g. a head the runner unfreezes) get torch's ordinary decay.
    """

    def __init__(
        self, masked: list[MaskedSparseLinear], others: list[nn.Parameter], lr: float, weight_decay: float
    ) -> None:
        groups = [{"params": [m.weight for m in masked], "weight_decay": 0.0, "masked_weight_decay": weight_decay}]
        if others:
            groups.append({"params": others, "weight_decay": weight_decay, "masked_weight_decay": 0.0})
        super().__init__(groups, lr=lr, weight_decay=weight_decay)
        # The module, not its buffer: the indices stay right if the model moves to another device.
        self._masked_modules = {id(m.weight): m for m in masked}

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            decay = 1 - group["lr"] * group.get("masked_weight_decay", 0.0)
            if decay == 1:
                continue
            for p in group["params"]:
                if p.grad is None:  # torch skips such parameters entirely, decay included
                    continue
                idx = getattr(self._masked_modules[id(p)], INDICES)
                p.scatter_(1, idx, p.gather(1, idx).mul_(decay))
        super().step()
        return loss


@METHODS.register
class MaskedSparseMethod:
    name = "masked_sparse"
    config_cls = MaskedSparseConfig

    def apply(self, model: nn.Module, cfg: MaskedSparseConfig, calibration=None) -> nn.Module:
        targets = find_targets(model, cfg.target_modules)
        if any(isinstance(m, MaskedSparseLinear) for _, m in targets):
            raise UsageError("masked_sparse is already applied to this model; apply it to a fresh base model")
        scores = selection_scores(model, targets, cfg.selection, calibration, "masked_sparse")
        # Every selection first, so that a bad k leaves the model untouched.
        indices = {
            name: select_indices(
                linear.weight, cfg.k, cfg.selection, seed=layer_seed(cfg.seed, name), score=scores.get(name), name=name
            )
            for name, linear in targets
        }
        freeze(model)
        for name, linear in targets:
            set_submodule(model, name, MaskedSparseLinear(linear, indices[name]))
        return model

    def merge(self, model: nn.Module) -> nn.Module:
        """The model itself: W was updated in place. Only the hooks and buffers are removed."""
        for name, module in list(model.named_modules()):
            if isinstance(module, MaskedSparseLinear):
                set_submodule(model, name, module.unwrap())
        return model

    def optimizer(self, model: nn.Module, cfg: MaskedSparseConfig, weight_decay: float) -> torch.optim.Optimizer:
        masked = [m for m in model.modules() if isinstance(m, MaskedSparseLinear) and m.weight.requires_grad]
        masked_ids = {id(m.weight) for m in masked}
        others = [p for p in trainable_parameters(model) if id(p) not in masked_ids]
        return MaskedAdamW(masked, others, lr=cfg.lr, weight_decay=weight_decay)

    def count_trainable(self, model: nn.Module) -> int:
        """Trainable entries: the selected ones of each masked W (``k * d_out``), plus every entry
        of any other trainable parameter. Not W's full size, which only the memory cost reflects."""
        masked = [m for m in model.modules() if isinstance(m, MaskedSparseLinear) and m.weight.requires_grad]
        masked_ids = {id(m.weight) for m in masked}
        others = [p for p in trainable_parameters(model) if id(p) not in masked_ids]
        return sum(getattr(m, INDICES).numel() for m in masked) + sum(p.numel() for p in others)

    def save(self, model: nn.Module, path: str) -> None:
        """``masked_sparse.safetensors``: per target, the selected indices, the trained values and
        the initial values there (to check the base on load); plus any other trainable parameter."""
        masked = {n: m for n, m in model.named_modules() if isinstance(m, MaskedSparseLinear)}
        if not masked:
            raise UsageError("masked_sparse.save needs the model returned by apply() (no masked layers found)")
        tensors: dict[str, torch.Tensor] = {}
        for name, m in masked.items():
            idx = getattr(m, INDICES)
            tensors[f"{name}.{INDICES}"] = idx.contiguous()
            tensors[f"{name}.{VALUES}"] = m.weight.detach().gather(1, idx).contiguous()
            tensors[f"{name}.{INITIAL}"] = getattr(m, INITIAL).contiguous()
        masked_ids = {id(m.weight) for m in masked.values()}
        for n, p in model.named_parameters():
            if p.requires_grad and id(p) not in masked_ids:
                tensors[n] = p.detach().contiguous()
        Path(path).mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(Path(path) / FILE), metadata={"method": self.name, "format": "1"})

    def load(self, model: nn.Module, path: str) -> nn.Module:
        """Write the saved entries into ``model`` (a fresh copy of the base): a plain model, merged."""
        file = Path(path) / FILE
        if not file.exists():
            raise UsageError(f"'{path}' has no {FILE}; save the model with masked_sparse.save first")
        state = load_file(str(file))
        layers = [k[: -len(INDICES) - 1] for k in state if k.endswith("." + INDICES)]
        rest = {k: v for k, v in state.items() if not k.endswith((INDICES, VALUES, INITIAL))}
        with torch.no_grad():
            for name in layers:
                try:
                    linear = model.get_submodule(name)
                except AttributeError:
                    raise UsageError(
                        f"'{file}' adapts '{name}', which {type(model).__name__} lacks; "
                        "load it onto the base model it was trained on"
                    ) from None
                w = linear.weight
                idx = state[f"{name}.{INDICES}"].to(w.device)
                if idx.shape[0] != w.shape[0] or int(idx.max()) >= w.shape[1]:
                    raise UsageError(f"'{file}': indices of '{name}' do not fit its weight of shape {tuple(w.shape)}")
                if not torch.equal(w.gather(1, idx), state[f"{name}.{INITIAL}"].to(w)):
                    raise UsageError(
                        f"'{file}': the weights of '{name}' differ from the base the adapter was trained on; "
                        "load it onto that base model (same checkpoint and dtype)"
                    )
                w.scatter_(1, idx, state[f"{name}.{VALUES}"].to(w))
            for n, t in rest.items():
                try:
                    model.get_parameter(n).copy_(t)
                except AttributeError:
                    raise UsageError(f"'{file}' has a parameter '{n}' that {type(model).__name__} lacks") from None
        return model
