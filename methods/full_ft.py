"""Full fine-tuning: every parameter trains. A method like the others, so the runner never
branches on a method's name.

Parameter budget: all parameters of the base model (trainable fraction 1.0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bench.registry import METHODS
from methods._base import adamw, trainable_parameters


@dataclass(frozen=True)
class FullFtConfig:
    lr: float = 2e-5
    """Learning rate; 2e-5 is the usual full fine-tuning rate for 100M-7B models."""

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"full_ft.lr={self.lr!r} must be > 0 (e.g. 2e-5)")


@METHODS.register
class FullFtMethod:
    name = "full_ft"
    config_cls = FullFtConfig

    def apply(self, model: nn.Module, cfg: FullFtConfig, calibration=None) -> nn.Module:
        for p in model.parameters():
            p.requires_grad_(True)
        return model

    def merge(self, model: nn.Module) -> nn.Module:
        return model  # nothing to fold in

    def optimizer(self, model: nn.Module, cfg: FullFtConfig, weight_decay: float) -> torch.optim.Optimizer:
        return adamw(trainable_parameters(model), cfg.lr, weight_decay)

    def save(self, model: nn.Module, path: str) -> None:
        model.save_pretrained(path)

    def load(self, model: nn.Module, path: str) -> nn.Module:
        return type(model).from_pretrained(path)
