"""Matched parameter budgets (``--match-params METHOD``): every other method's size knob (LoRA and
DoRA ``r``, NeuroAda and masked sparse ``k``; a peft preset's own, such as SHiRA's ``r``) is set so
that its trainable count is the closest to the reference method's on the same model.

A config may name its knob itself (``size_knob``, ``resized(knob, value)``, ``knob_limit(targets)``:
the peft presets, whose knob sits inside the peft config). SHiRA trains ``r * (d_in + d_out)``
entries per layer, NeuroAda ``k * d_out``: the two counts are equal when ``k * sum(d_out)`` is a
multiple of ``sum(d_in + d_out)`` (on BERT-like encoders, where the two sums of d_in and d_out are
equal, NeuroAda k=2 is SHiRA r=1); otherwise the closest count is taken and the note says so.

Counts are the methods' own (``methods._base.trainable_count``), taken on a randomly initialised
copy of the model (:func:`bench.skeleton.model_skeleton` on the CPU: selection reads weight
values) with the method applied, so that no formula is written twice; the new
task head, which every method trains, is left out of both sides. Every method here grows by
the same number of parameters per unit of its knob, so two counts give the line, and the
neighbours of its solution are checked. A method without a size knob (``full_ft``, ``base``)
runs unmatched; a target below a method's smallest size is reported, not silently exceeded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from bench.errors import UsageError

KNOBS = ("k", "r")
"""Config fields that size a method (connections per output row, rank), in order of preference."""


@dataclass(frozen=True)
class Match:
    """How one method's config was sized against the reference."""

    method: str
    reference: str
    target: int
    """The reference method's trainable count (head excluded)."""
    knob: str | None
    """The field set (``k`` or ``r``); None for a method without one (it runs unmatched)."""
    value: int | None
    achieved: int | None
    note: str = ""

    def as_record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def knob_of(cfg: Any) -> str | None:
    if hasattr(cfg, "resized"):
        return cfg.size_knob
    return next((k for k in KNOBS if isinstance(getattr(cfg, k, None), int)), None)


def knob_value(cfg: Any, knob: str | None) -> int | None:
    if knob is None:
        return None
    return cfg.peft[knob] if hasattr(cfg, "resized") else getattr(cfg, knob)


def with_knob(cfg: Any, knob: str, value: int) -> Any:
    """``cfg`` with ``knob=value``; LoRA's ``alpha`` scales with ``r`` so that the update's scale
    ``alpha / r`` stays the method's default."""
    if hasattr(cfg, "resized"):
        return cfg.resized(knob, value)
    changes: dict[str, Any] = {knob: value}
    if knob == "r" and isinstance(getattr(cfg, "alpha", None), (int, float)):
        changes["alpha"] = cfg.alpha * value / cfg.r
    return dataclasses.replace(cfg, **changes)


def count(method: str, cfg: Any, build) -> int:
    """Trainable entries of ``method`` (the name in --methods) with ``cfg`` on a fresh skeleton from
    ``build()``, head excluded; the method that runs it is the one that takes ``cfg``."""
    import methods as registry
    from methods._base import trainable_count

    m = registry.owner(cfg)
    model = m.apply(build(), cfg)
    heads = [p for n, p in model.named_parameters() if p.requires_grad and _is_head(n)]
    return trainable_count(m, model) - sum(p.numel() for p in heads)


def _is_head(name: str) -> bool:
    return any(part in ("classifier", "score") for part in name.split("."))


def match(method: str, cfg: Any, reference: str, target: int, build) -> tuple[Any, Match]:
    """``cfg`` with its knob set so that ``method``'s count is the closest to ``target``."""
    knob = knob_of(cfg)
    if knob is None:
        return cfg, Match(method, reference, target, None, None, None, "no size knob: unmatched")
    at1 = count(method, with_knob(cfg, knob, 1), build)
    per_unit = count(method, with_knob(cfg, knob, 2), build) - at1
    if per_unit <= 0:
        raise UsageError(f"--match-params: {method}.{knob} does not change its trainable count on this model")
    guess = max(1, round((target - at1) / per_unit) + 1)
    limit = _knob_limit(method, cfg, knob, build)
    candidates = sorted({v for v in (guess - 1, guess, guess + 1) if 1 <= v <= limit} or {min(guess, limit)})
    counts = {v: at1 + (v - 1) * per_unit for v in candidates}
    value = min(candidates, key=lambda v: (abs(counts[v] - target), v))
    achieved = count(method, with_knob(cfg, knob, value), build)  # the real count, not the line's
    note = ""
    if value == 1 and achieved > target:
        note = f"target {target:,} is below {method}'s smallest size ({knob}=1: {achieved:,})"
    elif value == limit and achieved < target:
        note = f"target {target:,} is above {method}'s largest size ({knob}={limit}: {achieved:,})"
    return with_knob(cfg, knob, value), Match(method, reference, target, knob, value, achieved, note)


def _knob_limit(method: str, cfg: Any, knob: str, build) -> int:
    """The largest valid value: k below every target's input size; r up to the smallest side."""
    from methods._base import find_targets

    targets = find_targets(build(), getattr(cfg, "target_modules", None))
    if not targets:
        raise UsageError(f"--match-params: {method} finds no target layer on this model")
    if hasattr(cfg, "knob_limit"):
        return cfg.knob_limit(targets)
    smallest_in = min(layer.in_features for _, layer in targets)
    smallest_out = min(layer.out_features for _, layer in targets)
    return smallest_in - 1 if knob == "k" else min(smallest_in, smallest_out)


def match_all(configs: dict[str, Any], reference: str, build) -> tuple[dict[str, Any], dict[str, Match]]:
    """Every config of ``configs`` matched to ``reference``'s count on the model ``build()`` makes."""
    if reference not in configs:
        raise UsageError(f"--match-params {reference}: add {reference} to --methods, or match to one of them")
    target = count(reference, configs[reference], build)
    out, matches = dict(configs), {}
    for name, cfg in configs.items():
        if name == reference:
            knob = knob_of(cfg)
            matches[name] = Match(name, reference, target, knob, knob_value(cfg, knob), target, "reference")
            continue
        out[name], matches[name] = match(name, cfg, reference, target, build)
    return out, matches
