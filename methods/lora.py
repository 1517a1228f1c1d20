"""LoRA through peft: ``W x + (alpha / r) * B A x`` on every target linear, ``B`` zero at init.

Parameter budget: ``r * sum(d_in + d_out)`` over the target linears (``A`` is r x d_in, ``B`` is
d_out x r; no bias). DoRA (``methods/dora.py``) is a variant of this method, not a copy: it
sets peft's ``use_dora=True`` through :attr:`LoraMethod.use_dora`.

peft does the work: ``get_peft_model`` injects ``lora_A``/``lora_B`` and freezes the rest,
``merge_and_unload`` folds ``B A`` into ``W`` and returns the plain transformers model, and the
adapter is saved and loaded as peft's ``adapter_model.safetensors``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from peft import LoraConfig, PeftConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from torch import nn

from bench.errors import UsageError
from bench.registry import METHODS
from methods._base import adamw, find_targets, freeze, trainable_parameters

# Parameters the caller made trainable besides the adapter (e.g. a classification head the
# runner unfreezes) are saved next to peft's adapter file, which would otherwise drop them.
EXTRA_FILE = "trainable_extra.safetensors"


@dataclass(frozen=True)
class LoraMethodConfig:
    """LoRA's knobs (named so as not to clash with ``peft.LoraConfig``, which it builds)."""

    r: int = 8
    """Rank of ``B A``. Budget: ``r * sum(d_in + d_out)`` over the targets."""

    alpha: float = 16.0
    """Scale numerator: the update is ``(alpha / r) * B A``; alpha = 2r is the common choice."""

    dropout: float = 0.0
    """Dropout on the adapter's input; 0 keeps training deterministic and identical to eval."""

    target_modules: tuple[str, ...] | None = None
    """Module names (or ``.``-suffixes) to adapt; None: ``methods._base.default_targets(model)``."""

    lr: float = 3e-4
    """Learning rate: LLM-Adapters' LoRA default for LLaMA (3e-4; also DoRA's LoRA baselines)."""

    _prefix: ClassVar[str] = "lora"  # the method name in error messages

    def __post_init__(self) -> None:
        p = self._prefix
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r <= 0:
            raise ValueError(f"{p}.r={self.r!r} must be a positive integer (e.g. 8)")
        if not _positive(self.alpha):
            raise ValueError(f"{p}.alpha={self.alpha!r} must be a positive number (e.g. {2 * self.r})")
        if not (isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0):
            raise ValueError(f"{p}.dropout={self.dropout!r} must be in [0, 1) (e.g. 0.0 or 0.05)")
        if not _positive(self.lr):
            raise ValueError(f"{p}.lr={self.lr!r} must be a positive number (e.g. {type(self).lr})")
        if self.target_modules is not None:
            targets = (self.target_modules,) if isinstance(self.target_modules, str) else tuple(self.target_modules)
            if not targets or not all(isinstance(t, str) and t for t in targets):
                raise ValueError(
                    f"{p}.target_modules={self.target_modules!r} must be None or non-empty module names "
                    "(e.g. ('q_proj', 'v_proj'))"
                )
            object.__setattr__(self, "target_modules", targets)  # a list would make the config unhashable


def _positive(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


@METHODS.register
class LoraMethod:
    name = "lora"
    config_cls = LoraMethodConfig
    use_dora: ClassVar[bool] = False
    """peft's ``use_dora``; the DoRA variant sets it and nothing else changes."""

    def peft_config(self, model: nn.Module, cfg: LoraMethodConfig) -> LoraConfig:
        """The peft config for ``model``: the exact module names from :func:`find_targets`, so that
        peft adapts the same layers as every other method (never heads or embeddings)."""
        targets = [name for name, _ in find_targets(model, cfg.target_modules)]
        return LoraConfig(
            r=cfg.r,
            lora_alpha=cfg.alpha,
            lora_dropout=cfg.dropout,
            target_modules=targets,
            bias="none",
            use_dora=self.use_dora,
        )

    def apply(self, model: nn.Module, cfg: LoraMethodConfig, calibration=None) -> nn.Module:
        freeze(model)  # peft freezes too; done here so the contract does not rest on peft's default
        return get_peft_model(model, self.peft_config(model, cfg))

    def merge(self, model: nn.Module) -> nn.Module:
        """``W += (alpha / r) B A`` (DoRA: rescaled by its magnitude) and peft's wrappers removed."""
        if isinstance(model, PeftModel):
            return model.merge_and_unload()
        return model  # already merged, or never adapted

    def optimizer(self, model: nn.Module, cfg: LoraMethodConfig, weight_decay: float) -> torch.optim.Optimizer:
        return adamw(trainable_parameters(model), cfg.lr, weight_decay)

    def save(self, model: nn.Module, path: str) -> None:
        if not isinstance(model, PeftModel):
            raise UsageError(f"{self.name}.save needs the model returned by apply(), not a {type(model).__name__}")
        model.save_pretrained(path)  # adapter_config.json + adapter_model.safetensors
        extra = {
            n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n
        }
        if extra:
            save_file(extra, str(Path(path) / EXTRA_FILE))

    def load(self, model: nn.Module, path: str) -> nn.Module:
        """The adapter at ``path`` on ``model`` (a fresh base), for inference: nothing trainable."""
        saved = PeftConfig.from_pretrained(path)
        if bool(getattr(saved, "use_dora", False)) != self.use_dora:
            other = "dora" if saved.use_dora else "lora"
            raise UsageError(f"'{path}' holds a {other} adapter; load it with method '{other}', not '{self.name}'")
        peft_model = PeftModel.from_pretrained(model, path)
        extra_file = Path(path) / EXTRA_FILE
        if extra_file.exists():
            result = peft_model.load_state_dict(load_file(str(extra_file)), strict=False)
            if result.unexpected_keys:
                raise UsageError(
                    f"'{extra_file}' has parameters that {type(model).__name__} lacks: "
                    f"{', '.join(result.unexpected_keys[:5])}; load it onto the base model it was trained on"
                )
        return peft_model
