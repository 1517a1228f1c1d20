"""The frozen backbone: no backbone parameter trains. The row every table starts with, so that
a reader sees whether training helped at all.

On causal tasks nothing trains: the pretrained model is evaluated zero-shot under the task's
protocol. On classification and regression tasks the new head (which every method trains)
trains alone under the same budget: a linear probe. The runner sees that nothing else trains
and records which (``result.training``).

Parameter budget: 0 (causal), or the head's parameters (classification: hidden x labels + labels).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from bench.registry import METHODS
from methods._base import adamw, freeze, trainable_parameters

FILE = "head.safetensors"


@dataclass(frozen=True)
class BaseConfig:
    lr: float = 1e-3
    """Learning rate of the linear probe (the head alone); 1e-3 is a common AdamW rate for a
    linear probe on frozen features. Unused on causal tasks, where nothing trains."""

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"base.lr={self.lr!r} must be > 0 (e.g. 1e-3)")


@METHODS.register
class BaseMethod:
    name = "base"
    config_cls = BaseConfig
    trains_backbone = False
    """Nothing of the backbone trains: the method-contract tests for adapters do not apply."""

    def apply(self, model: nn.Module, cfg: BaseConfig, calibration=None) -> nn.Module:
        freeze(model)
        return model

    def merge(self, model: nn.Module) -> nn.Module:
        return model  # nothing to fold in

    def optimizer(self, model: nn.Module, cfg: BaseConfig, weight_decay: float) -> torch.optim.Optimizer:
        return adamw(trainable_parameters(model), cfg.lr, weight_decay)

    def save(self, model: nn.Module, path: str) -> None:
        """The trained parameters (a head, or nothing) as safetensors."""
        from safetensors.torch import save_file

        Path(path).mkdir(parents=True, exist_ok=True)
        state = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        save_file(state, str(Path(path) / FILE))

    def load(self, model: nn.Module, path: str) -> nn.Module:
        from safetensors.torch import load_file

        state = load_file(str(Path(path) / FILE))
        missing = set(state) - {n for n, _ in model.named_parameters()}
        if missing:
            raise ValueError(f"'{path}' holds parameters this model lacks: {sorted(missing)[:3]}")
        model.load_state_dict(state, strict=False)
        return self.apply(model, BaseConfig())
