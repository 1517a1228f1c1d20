"""Recipes: the settings a paper used for one method on one suite, applied by a preset.

A preset's budget is the same for every method on a task; a recipe is the exception a
reproduction needs: the ``paper`` preset gives NeuroAda the official scripts' batch, warm-up,
decay and learning rate per suite and k, and LoRA and DoRA their own papers' commonsense
recipes. :func:`recipe_for` picks the first recipe of ``(preset, suite, method)`` whose ``when``
matches the method's config (NeuroAda's ``k``); ``bench.plan`` applies its budget fields (a budget
flag the user gave wins) and its method settings (a ``--set`` wins) and records it in
``run.recipe``. Presets without recipes, and methods without one, keep the preset's budget.

Sources (read through the project's search tool; commits pinned):

- NeuroAda: FightingFighting/NeuroAda ``scripts/percell/perCell_mag_add/top{1,20}/{commonsense,
  math}.sh`` at 0ed987c48f6901b1b5d2ef531ed3565ecdaf33d2, run by ``train_our.py`` (HF Trainer,
  transformers 4.45.1 per its ``environment.yml``). When ``batch_size < micro_batch_size`` the
  script trains micro-batches of ``batch_size`` (top1 commonsense: batch 8, micro 16 -> 8/8).
- LoRA and DoRA (commonsense): LLM-Adapters' ``finetune.py`` recipe as DESIGN.md "Peers" and
  NVlabs/DoRA ``commonsense_reasoning/README.md`` (5e3ce3e8601d3597ef9c410b0473ddd315d955cc) give
  it: r=32, alpha=64, q,k,v,up,down, batch 16 of micro 4, 3 epochs, cutoff 256; rates LoRA 3e-4,
  DoRA 1e-4 at r=32 and 2e-4 at r=16.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from bench.config import Budget

_NEUROADA = (
    "FightingFighting/NeuroAda@0ed987c4 scripts/percell/perCell_mag_add/top{k}/{script}.sh "
    "(train_our.py, HF Trainer 4.45.1)"
)
_NEUROADA_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
_PEER_TARGETS = "q_proj,k_proj,v_proj,up_proj,down_proj"
_PEER_BUDGET = {
    "batch_size": 16,
    "micro_batch_size": 4,
    "max_length": 256,  # LLM-Adapters' cutoff_len
    "warmup_steps": 100,  # LLM-Adapters' finetune.py default
    "train_on_inputs": True,  # LLM-Adapters' finetune.py default: loss on the prompt too
    "protocol": "harness",  # the Alpaca prompt of LLM-Adapters, not LoReFT's
}
_PEER_DIFFERENCES = (
    "not reproduced: LLM-Adapters holds out 120 training rows for validation, loads the model in "
    "8-bit/fp16 and evaluates with its own script (we use greedy decoding and whole-word label matching)"
)


@dataclass(frozen=True)
class Recipe:
    """One method's published settings on one suite, under one preset."""

    preset: str
    suite: str
    method: str
    budget: dict[str, Any]
    """Budget fields that replace the preset's (a budget flag on the command line still wins)."""
    settings: dict[str, str]
    """Method config values as ``--set`` strings (a ``--set`` of the same field still wins)."""
    source: str
    """Where the values come from (file, commit)."""
    when: dict[str, Any] = field(default_factory=dict)
    """Method config values that select this recipe (``{"k": 20}``); empty: any config."""
    differences: str = ""
    """What the harness does not reproduce of the source's setup."""

    def matches(self, preset: str, suite: str, method: str, values: Mapping[str, Any]) -> bool:
        return (self.preset, self.suite, self.method) == (preset, suite, method) and all(
            values.get(key) == value for key, value in self.when.items()
        )

    def as_record(self) -> dict[str, Any]:
        """What ``run.recipe`` holds."""
        return {
            "preset": self.preset,
            "suite": self.suite,
            "method": self.method,
            "when": dict(self.when),
            "budget": dict(self.budget),
            "settings": dict(self.settings),
            "source": self.source,
            "differences": self.differences,
        }


def _neuroada(suite: str, script: str, k: int, lr: str, batch: int, micro: int, wd: float, warmup: float) -> Recipe:
    return Recipe(
        preset="paper",
        suite=suite,
        method="neuroada",
        when={"k": k},
        budget={"batch_size": batch, "micro_batch_size": micro, "weight_decay": wd, "warmup_ratio": warmup},
        # faithful: the official code keeps the trainable values in the model's dtype (bf16).
        settings={"lr": lr, "target_modules": _NEUROADA_TARGETS, "faithful": "true"},
        source=_NEUROADA.format(k=k, script=script),
        differences="none known besides the hardware (and transformers 5 here, 4.45.1 there)",
    )


def _peer(method: str, r: int, lr: str, source: str, when: dict[str, Any] | None = None) -> Recipe:
    return Recipe(
        preset="paper",
        suite="commonsense",
        method=method,
        when=when or {},
        budget=dict(_PEER_BUDGET),
        settings={"r": str(r), "alpha": str(2 * r), "dropout": "0.05", "lr": lr, "target_modules": _PEER_TARGETS},
        source=source,
        differences=_PEER_DIFFERENCES,
    )


_LLM_ADAPTERS = "LLM-Adapters finetune.py commonsense recipe (DESIGN.md 'Peers'; lora_dropout 0.05, warmup_steps 100)"
_DORA = "NVlabs/DoRA@5e3ce3e commonsense_reasoning/README.md (LLaMA-7B, r={r}: lr {lr}) with " + _LLM_ADAPTERS

RECIPES: tuple[Recipe, ...] = (
    # The official table (DESIGN.md "Reference settings"): lr, batch / micro, decay, warm-up.
    _neuroada("commonsense", "commonsense", 1, "8e-3", 8, 8, 0.0, 0.1),
    _neuroada("commonsense", "commonsense", 20, "7e-4", 16, 16, 0.0, 0.06),
    _neuroada("arithmetic", "math", 1, "9e-3", 16, 2, 0.0, 0.06),
    _neuroada("arithmetic", "math", 20, "3e-3", 8, 2, 0.1, 0.0),
    _peer("lora", 32, "3e-4", _LLM_ADAPTERS),
    _peer("dora", 16, "2e-4", _DORA.format(r=16, lr="2e-4"), when={"r": 16}),
    _peer("dora", 32, "1e-4", _DORA.format(r=32, lr="1e-4")),
)
"""Every preset's recipes, first match wins (DoRA: r=16 when asked for, else r=32)."""


def recipe_for(preset: str, suite: str, method: str, values: Mapping[str, Any]) -> Recipe | None:
    """The recipe of ``method`` on ``suite`` under ``preset`` for a config with ``values``."""
    return next((r for r in RECIPES if r.matches(preset, suite, method, values)), None)


def apply_budget(recipe: Recipe | None, budget: Budget, explicit: Mapping[str, Any]) -> Budget:
    """``budget`` with the recipe's fields, except those the user set (``explicit``)."""
    if recipe is None:
        return budget
    return replace(budget, **{k: v for k, v in recipe.budget.items() if k not in explicit})


def settings_with(recipe: Recipe | None, user: Mapping[str, str]) -> dict[str, str]:
    """The method's ``--set`` values: the recipe's settings under the user's own."""
    return {**(recipe.settings if recipe else {}), **user}
