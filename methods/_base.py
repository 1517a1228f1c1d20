"""The interface every method implements, and the free functions methods share.

A method is a registered object with:

- ``name``: lowercase, equal to its file stem (``methods/<name>.py``);
- ``config_cls``: a frozen dataclass; ``__post_init__`` validates and raises ``ValueError``
  naming the field, the value and the fix. Every config has an ``lr`` field (the method's
  documented default learning rate; the only training knob allowed to differ between methods);
- ``apply(model, cfg) -> model``: inject the method's modules and freeze everything else;
- ``merge(model) -> model``: fold the update into the weights and return a plain
  transformers model with no extra modules;
- ``optimizer(model, cfg, weight_decay) -> torch.optim.Optimizer`` (most use
  :func:`adamw`; masked sparse tuning masks its decay);
- ``save(model, path)`` / ``load(model, path) -> model``: the adapter as safetensors, loaded
  back onto a fresh base model;
- optionally ``count_trainable(model) -> int``, when the trainable entries are not simply the
  parameters with ``requires_grad`` (masked sparse tuning holds whole weights trainable but
  trains only the selected entries); see :func:`trainable_count`.

Shared code lives here as free functions, not in a base class (torchtune's style).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from bench.errors import UsageError

# Default targets: the attention and MLP projections, never embeddings, norms or heads.
LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
BERT_TARGETS = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)
# Heads and embeddings are never adapted, even when a target pattern would match them.
NEVER_ADAPT = ("lm_head", "classifier", "score", "pooler", "embed_tokens", "embeddings")


@runtime_checkable
class Method(Protocol):
    name: str
    config_cls: type

    def apply(self, model: nn.Module, cfg: Any, calibration: Iterable[dict] | None = None) -> nn.Module: ...

    def merge(self, model: nn.Module) -> nn.Module: ...

    def optimizer(self, model: nn.Module, cfg: Any, weight_decay: float) -> torch.optim.Optimizer: ...

    def save(self, model: nn.Module, path: str) -> None: ...

    def load(self, model: nn.Module, path: str) -> nn.Module: ...


def default_targets(model: nn.Module) -> tuple[str, ...]:
    """The default target module names for ``model``'s architecture."""
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    if {"q_proj", "down_proj"} <= names:
        return tuple(t for t in LLAMA_TARGETS if t in names)
    if {"query", "intermediate"} <= names:
        return BERT_TARGETS
    if {"fc1", "fc2"} <= names or {"c_attn"} <= names:
        return tuple(n for n in ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2") if n in names)
    # Any other model: every nn.Linear that is not a head (find_targets would refuse those).
    return tuple(
        sorted(
            {
                n.rsplit(".", 1)[-1]
                for n, m in model.named_modules()
                if isinstance(m, nn.Linear) and not any(part in NEVER_ADAPT for part in n.split("."))
            }
        )
    )


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def find_targets(
    model: nn.Module, targets: Iterable[str] | None, *, linear_only: bool = True
) -> list[tuple[str, nn.Module]]:
    """Modules whose qualified name equals, or ends with ``.<target>``, for any target.

    Raises a ``UsageError`` if a target matches nothing, or matches a module that is not an
    ``nn.Linear`` while ``linear_only`` is set.
    """
    targets = tuple(targets) if targets is not None else default_targets(model)
    found: list[tuple[str, nn.Module]] = []
    for target in targets:
        hits = [
            (n, m)
            for n, m in model.named_modules()
            if _matches(n, target) and not any(part in NEVER_ADAPT for part in n.split("."))
        ]
        if not hits:
            raise UsageError(
                f"target module '{target}' matches no module of {type(model).__name__}; "
                f"pass names such as {', '.join(default_targets(model))}"
            )
        for n, m in hits:
            if linear_only and not isinstance(m, nn.Linear):
                raise UsageError(
                    f"target module '{n}' is a {type(m).__name__}, not an nn.Linear; choose linear layers only"
                )
            if all(n != f for f, _ in found):
                found.append((n, m))
    return sorted(found, key=lambda nm: nm[0])


def freeze(model: nn.Module) -> None:
    """Set ``requires_grad=False`` on every parameter."""
    for p in model.parameters():
        p.requires_grad_(False)


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters that the optimizer updates (shared ones counted once)."""
    seen: set[int] = set()
    out = []
    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameter entries, each shared tensor counted once."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def trainable_count(method: Method, model: nn.Module) -> int:
    """Trainable entries as the method counts them (default: parameters with ``requires_grad``)."""
    counter = getattr(method, "count_trainable", None)
    return counter(model) if counter is not None else count_parameters(model, trainable_only=True)


def adamw(params: Iterable[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """torch's AdamW; fused/foreach left to torch's defaults for the device."""
    return torch.optim.AdamW(list(params), lr=lr, weight_decay=weight_decay)


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule at qualified ``name``."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)
