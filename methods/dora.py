"""DoRA: LoRA's direction update plus a trained per-row magnitude (peft's ``use_dora=True``).

``W' = m * (W + (alpha / r) B A) / ||W + (alpha / r) B A||_row``, with ``m`` initialised to
``||W||_row`` so that ``W' = W`` at init. A variant of :mod:`methods.lora`, not a copy: the same
config fields and the same code, with :attr:`LoraMethod.use_dora` set.

Parameter budget: ``r * sum(d_in + d_out) + sum(d_out)`` over the target linears (LoRA's ``A``
and ``B``, plus the magnitude vector ``lora_magnitude_vector`` of length d_out per target).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bench.registry import METHODS
from methods.lora import LoraMethod, LoraMethodConfig


@dataclass(frozen=True)
class DoraConfig(LoraMethodConfig):
    """LoRA's fields (r=8, alpha=16, dropout=0, target_modules) with DoRA's learning rate."""

    lr: float = 2e-4
    """Learning rate: the official DoRA recipe for LLaMA-7B on commonsense at r=8 (and r=4, 16,
    64) is 2e-4 (NVlabs/DoRA commonsense_reasoning/README.md); r=32 used 1e-4."""

    _prefix: ClassVar[str] = "dora"


@METHODS.register
class DoraMethod(LoraMethod):
    name = "dora"
    config_cls = DoraConfig
    use_dora: ClassVar[bool] = True
