"""Run configuration: the training/evaluation ``Budget`` every method shares on a task, presets,
and ``--set method.field=value`` overrides of method configs.

Defaults are defined once, here and in each method's config; presets hold only overrides.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from bench.errors import UsageError


def cache_dir() -> Path:
    """Where converted models and compiled kernels are cached (``$BENCH_CACHE``, default
    ``~/.cache/peft-bench``)."""
    return Path(os.environ.get("BENCH_CACHE", Path.home() / ".cache" / "peft-bench"))


@dataclass(frozen=True)
class Budget:
    """What every method gets on a task. Only the learning rate and the method's own knobs may
    differ between methods; everything here is identical and recorded with each run."""

    max_steps: int = 100
    """Optimizer steps. Examples seen = max_steps x batch_size, the same for every method."""
    batch_size: int = 8
    """Examples per optimizer step."""
    micro_batch_size: int = 8
    """Examples per forward pass; gradient accumulation = batch_size / micro_batch_size."""
    max_length: int = 256
    """Training sequences are cut to this many tokens (prompt + answer), from the left so the answer stays."""
    warmup_ratio: float = 0.06
    """Linear warm-up as a fraction of max_steps (0.06: the official NeuroAda/LoReFT scripts)."""
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    weight_decay: float = 0.0
    """AdamW decoupled weight decay (0: the official commonsense recipes)."""
    max_grad_norm: float = 1.0
    """Gradient clipping (HF Trainer's default)."""
    train_on_inputs: bool = False
    """Loss on prompt tokens too; off, since it moves LoRA by ~6 points (LLM-Adapters pitfall)."""
    eval_limit: int | None = None
    """Evaluate on the first N items only (a smoke run: kept out of the main tables)."""
    eval_batch_size: int = 16
    dtype: Literal["float32", "bfloat16"] = "float32"
    """Model dtype; bfloat16 is only used on CUDA (CPU runs stay fp32)."""
    gradient_checkpointing: bool = False
    throughput_warmup_steps: int = 1
    """Steps excluded from tokens/s (first-step allocations and lazy init); they are counted."""
    epochs: float | None = None
    """Passes over the training set; set, it replaces ``max_steps``, which the job derives from the
    train set's size (:func:`epoch_steps`, HF Trainer's rule) and records with it."""
    warmup_steps: int | None = None
    """Linear warm-up in steps, instead of ``warmup_ratio`` (LLM-Adapters' recipes: 100 steps)."""
    protocol: Literal["harness", "loreft"] = "harness"
    """Prompt and scoring of commonsense and arithmetic tasks: ``harness`` (the task's own: Alpaca
    prompt, first label word) or ``loreft`` (the official NeuroAda/LoReFT scripts': commonsense
    prompt = instruction + newline, target "the correct answer is X", exact match of the text after
    that trigger; arithmetic: Alpaca prompt, 512 new tokens, the last number, AQuA's first letter)."""

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "micro_batch_size", "max_length", "eval_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise UsageError(f"budget.{name}={value!r} must be a positive integer")
        if self.batch_size % self.micro_batch_size:
            raise UsageError(
                f"budget.batch_size={self.batch_size} must be a multiple of micro_batch_size={self.micro_batch_size}"
            )
        if self.eval_limit is not None and (not isinstance(self.eval_limit, int) or self.eval_limit <= 0):
            raise UsageError(f"--limit {self.eval_limit!r} must be a positive integer")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise UsageError(f"budget.warmup_ratio={self.warmup_ratio} must be in [0, 1)")
        if self.weight_decay < 0:
            raise UsageError(f"budget.weight_decay={self.weight_decay} must be >= 0")
        if self.throughput_warmup_steps < 0:
            raise UsageError(f"budget.throughput_warmup_steps={self.throughput_warmup_steps} must be >= 0")
        if self.epochs is not None and (
            isinstance(self.epochs, bool) or not isinstance(self.epochs, (int, float)) or not self.epochs > 0
        ):
            raise UsageError(f"--epochs {self.epochs!r} must be a number > 0 (e.g. 3)")
        if self.warmup_steps is not None and (not isinstance(self.warmup_steps, int) or self.warmup_steps < 0):
            raise UsageError(f"budget.warmup_steps={self.warmup_steps!r} must be an integer >= 0")
        if self.protocol not in PROTOCOLS:
            raise UsageError(f"--protocol {self.protocol!r} must be one of {', '.join(PROTOCOLS)}")

    @property
    def grad_accum(self) -> int:
        return self.batch_size // self.micro_batch_size

    def warmup_for(self, steps: int) -> int:
        """Warm-up steps of a run of ``steps``: ``warmup_steps``, else ``ceil(ratio * steps)`` (HF)."""
        return self.warmup_steps if self.warmup_steps is not None else math.ceil(self.warmup_ratio * steps)


PROTOCOLS = ("harness", "loreft")
"""``Budget.protocol`` values (see its docstring); ``tasks.with_protocol`` applies them."""


def epoch_steps(n_train: int, budget: Budget) -> tuple[int, int]:
    """``(steps per epoch, max_steps)`` for ``budget.epochs`` over ``n_train`` examples, as the
    official scripts' HF Trainer (transformers 4.45.1) counts them: ``ceil(n / micro)`` micro-batches
    per epoch (the last one short), ``max(that // grad_accum, 1)`` optimizer steps per epoch, and
    ``ceil(epochs * steps_per_epoch)`` in all. (transformers 5 rounds the per-epoch division up.)"""
    if budget.epochs is None:
        raise ValueError("epoch_steps needs budget.epochs")
    if n_train <= 0:
        raise UsageError("the training set is empty: no epoch to count")
    micro_batches = math.ceil(n_train / budget.micro_batch_size)
    per_epoch = max(micro_batches // budget.grad_accum, 1)
    return per_epoch, math.ceil(budget.epochs * per_epoch)


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    budget: dict[str, Any] = field(default_factory=dict)
    """Overrides of :class:`Budget` defaults."""
    smoke: bool = False
    """Smoke presets are kept out of the main tables."""
    suites: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-suite overrides on top of ``budget``: budgets may differ between tasks (a small
    encoder affords more steps than a causal LM), never between methods on a task."""


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "smoke",
            "2 steps, 4 eval items: checks that everything runs (kept out of tables)",
            {
                "max_steps": 2,
                "batch_size": 2,
                "micro_batch_size": 2,
                "max_length": 64,
                "eval_limit": 4,
                "eval_batch_size": 4,
                "throughput_warmup_steps": 0,
            },
            smoke=True,
        ),
        Preset(
            "demo",
            "the README's offline demo: GLUE 300 steps of 8 on the full eval set (about a minute per "
            "MiniLM job on 2 cores); other suites 16 steps of 8, 50 eval items",
            {
                "max_steps": 16,
                "batch_size": 8,
                "micro_batch_size": 8,
                "max_length": 128,
                "eval_limit": 50,
                "eval_batch_size": 16,
            },
            # MiniLM-L6 steps cost ~1/10 of SmolLM2's; 300 steps of 8 is where SST-2 learns (~82%
            # for NeuroAda, LoRA and full fine-tuning), 60 left the loss at 0.69. Eval: all 500 items.
            suites={"glue": {"max_steps": 300, "eval_limit": None}},
        ),
        Preset(
            "study",
            "the CPU study (README): SST-2 150 steps of 8 on all 500 eval items; commonsense 16 steps of 4, "
            "max length 160, 100 eval items; for --tune-lr with --lr-grid 3 and 3 seeds",
            {
                "max_steps": 16,
                "batch_size": 4,
                "micro_batch_size": 4,
                "max_length": 160,  # an ARC question, its options and the answer fit in 160 tokens
                "eval_limit": 100,
                "eval_batch_size": 16,
            },
            # MiniLM: 150 steps of 8 take ~25 s per job on one thread here and SST-2 learns (loss
            # ~0.4 by step 150 in the demo's curve); SmolLM2 steps cost ~10x more.
            suites={
                "glue": {
                    "max_steps": 150,
                    "batch_size": 8,
                    "micro_batch_size": 8,
                    "max_length": 128,
                    "eval_limit": None,
                }
            },
        ),
        Preset("default", "the Budget defaults: 100 steps of 8, full eval set", {}),
        Preset(
            "paper",
            "the official NeuroAda scripts (LLaMA-7B): 3 epochs over commonsense_170k / math_10k, their "
            "batch, rate, warm-up and decay per suite and k, length 512, bf16, the LoReFT protocol; LoRA and "
            "DoRA at their papers' commonsense recipes (bench/recipes.py)",
            {
                # The official k=20 commonsense row (DESIGN.md "Reference settings"); bench/recipes.py
                # sets each suite's, k's and peer's own batch, warm-up and decay on top.
                "epochs": 3,
                "batch_size": 16,
                "micro_batch_size": 16,
                "max_length": 512,
                "warmup_ratio": 0.06,
                "weight_decay": 0.0,
                "eval_batch_size": 16,
                "dtype": "bfloat16",
            },
            suites={"commonsense": {"protocol": "loreft"}, "arithmetic": {"protocol": "loreft"}},
        ),
    )
}


def budget_for(preset: str, suite: str | None = None, **overrides: Any) -> Budget:
    """The preset's budget for ``suite``, with CLI overrides (``None`` values are ignored).

    An explicit ``max_steps`` without ``epochs`` counts steps under an epoch-based preset too."""
    if preset not in PRESETS:
        from bench.registry import did_you_mean

        raise UsageError(
            f"unknown preset '{preset}'{did_you_mean(preset, list(PRESETS))} available: {', '.join(PRESETS)}"
        )
    chosen = PRESETS[preset]
    values = {
        **chosen.budget,
        **chosen.suites.get(suite or "", {}),
        **{k: v for k, v in overrides.items() if v is not None},
    }
    if overrides.get("max_steps") is not None and overrides.get("epochs") is None:
        values["epochs"] = None
    return Budget(**values)


# ---------------------------------------------------------------------------------------------
# --set method.field=value
# ---------------------------------------------------------------------------------------------
def parse_overrides(items: list[str]) -> dict[str, dict[str, str]]:
    """``["neuroada.k=16", "lora.r=4"]`` -> ``{"neuroada": {"k": "16"}, "lora": {"r": "4"}}``."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, name = key.partition(".")
        if not sep or not dot or not method or not name:
            raise UsageError(f"--set '{item}' must look like METHOD.FIELD=VALUE, e.g. --set neuroada.k=16")
        out.setdefault(method.strip(), {})[name.strip()] = value.strip()
    return out


def _convert(value: str, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value.lower() in ("none", "null") and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except UsageError:
                continue
        raise UsageError(f"{where}={value!r} does not fit type {tp}")
    if origin is Literal:
        if value not in args:
            raise UsageError(f"{where}={value!r} must be one of {', '.join(map(str, args))}")
        return value
    if origin is tuple:
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if tp is bool:
        if value.lower() in ("1", "true", "yes"):
            return True
        if value.lower() in ("0", "false", "no"):
            return False
        raise UsageError(f"{where}={value!r} must be true or false")
    if tp in (int, float, str):
        try:
            return tp(value)
        except ValueError:
            raise UsageError(f"{where}={value!r} must be of type {tp.__name__}") from None
    raise UsageError(f"{where} cannot be set from the command line")


def build_config(config_cls: type, method: str, overrides: dict[str, str], base: dict[str, Any] | None = None) -> Any:
    """Instantiate ``config_cls`` from ``base`` (a preset's fields) and string overrides converted to
    the field types. A config with a ``nested`` dict field (a peft config) also takes the keys of
    that dict as settings; their values are read as JSON (``16``, ``true``, ``["q_proj"]``), else text."""
    import json

    hints = typing.get_type_hints(config_cls)
    known = {f.name for f in fields(config_cls)}
    kwargs = dict(base or {})
    nested_name = getattr(config_cls, "nested", None)
    nested = dict(kwargs.get(nested_name) or {}) if nested_name else {}
    for name, raw in overrides.items():
        if name in known:
            kwargs[name] = _convert(raw, hints[name], f"{method}.{name}")
            continue
        if name in nested:
            try:
                nested[name] = json.loads(raw)
            except ValueError:
                nested[name] = raw
            continue
        from bench.registry import did_you_mean

        settable = sorted(known | set(nested))
        raise UsageError(
            f"{method} has no setting '{name}'{did_you_mean(name, settable)} settings: {', '.join(settable)}"
        )
    if nested_name and nested:
        kwargs[nested_name] = nested
    try:
        return config_cls(**kwargs)
    except (ValueError, TypeError) as err:
        raise UsageError(str(err)) from None


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return {f.name: _jsonable(getattr(cfg, f.name)) for f in fields(cfg)}


def config_from_dict(config_cls: type, values: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(config_cls)
    kwargs = {}
    for name, value in values.items():
        if isinstance(value, list) and typing.get_origin(hints[name]) in (tuple, typing.Union, types.UnionType):
            value = tuple(value)
        kwargs[name] = value
    return config_cls(**kwargs)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if dataclasses.is_dataclass(value):
        return config_to_dict(value)
    return value


def method_label(method: str, overrides: dict[str, str]) -> str:
    """The method's name in file names and tables: ``neuroada`` or ``neuroada@k=16``."""
    if not overrides:
        return method
    return method + "@" + ",".join(f"{k}={v}" for k, v in sorted(overrides.items()))


__all__ = [
    "Budget",
    "PRESETS",
    "Preset",
    "budget_for",
    "build_config",
    "config_from_dict",
    "config_to_dict",
    "method_label",
    "parse_overrides",
    "replace",
]
