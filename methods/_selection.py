"""Which connections of a weight a sparse method trains: pure, seeded functions.

Shared by ``neuroada`` (bypass values at the selected positions) and ``masked_sparse`` (the
whole weight trainable, its gradient masked to the same positions), so both compare on
exactly the same selection.
"""

from __future__ import annotations

import zlib
from typing import Literal

import torch

from bench.errors import UsageError

Selection = Literal["magnitude", "random", "reverse", "gradient"]
SELECTIONS = ("magnitude", "random", "reverse", "gradient")


def select_indices(
    weight: torch.Tensor,
    k: int,
    selection: Selection = "magnitude",
    *,
    seed: int = 0,
    score: torch.Tensor | None = None,
    name: str = "weight",
) -> torch.Tensor:
    """Per output row, the ``k`` input columns to train, as int64 ``(d_out, k)`` sorted per row.

    - ``magnitude``: the top-k of ``|W|`` per row (the paper's default; ties as ``torch.topk``);
    - ``reverse``: the k smallest ``|W|`` (an ablation);
    - ``random``: k distinct columns per row drawn from a generator seeded with ``seed``;
    - ``gradient``: the top-k of ``score`` per row, e.g. ``|dL/dW|`` accumulated over a few
      batches (``score`` must have W's shape).
    """
    if weight.dim() != 2:
        raise UsageError(f"{name}: selection needs a 2-D weight, got shape {tuple(weight.shape)}")
    d_out, d_in = weight.shape
    if not isinstance(k, int) or k <= 0:
        raise UsageError(f"k={k!r} must be a positive integer (e.g. k=1)")
    if k >= d_in:
        raise UsageError(
            f"k={k} must be smaller than the input size {d_in} of {name}; use k <= {d_in - 1}, or full fine-tuning"
        )
    w = weight.detach()
    if selection == "magnitude":
        idx = w.abs().float().topk(k, dim=1).indices
    elif selection == "reverse":
        idx = w.abs().float().topk(k, dim=1, largest=False).indices
    elif selection == "random":
        gen = torch.Generator(device="cpu").manual_seed(seed)
        idx = torch.rand(d_out, d_in, generator=gen).topk(k, dim=1).indices.to(w.device)
    elif selection == "gradient":
        if score is None or score.shape != w.shape:
            raise UsageError(
                f"{name}: gradient selection needs a score of shape {tuple(w.shape)}; run it with calibration batches"
            )
        idx = score.detach().abs().float().topk(k, dim=1).indices
    else:
        raise UsageError(f"selection '{selection}' is not one of {', '.join(SELECTIONS)}")
    return idx.sort(dim=1).values.to(torch.int64)


def gradient_scores(
    model: torch.nn.Module, weights: dict[str, torch.nn.Parameter], batches
) -> dict[str, torch.Tensor]:
    """``|dL/dW|`` summed over ``batches`` for each named weight (for ``gradient`` selection).

    Each batch is a dict that ``model(**batch)`` turns into an output with ``.loss``. The
    weights' ``requires_grad`` flags are restored afterwards and no gradient is left behind.
    """
    flags = {n: w.requires_grad for n, w in weights.items()}
    scores = {n: torch.zeros_like(w, dtype=torch.float32) for n, w in weights.items()}
    try:
        for w in weights.values():
            w.requires_grad_(True)
        n_batches = 0
        for batch in batches:
            model.zero_grad(set_to_none=True)
            model(**batch).loss.backward()
            for n, w in weights.items():
                if w.grad is not None:
                    scores[n] += w.grad.detach().abs().float()
            n_batches += 1
        if n_batches == 0:
            raise UsageError("gradient selection got no calibration batches; give it at least one")
    finally:
        model.zero_grad(set_to_none=True)
        for n, w in weights.items():
            w.requires_grad_(flags[n])
    return scores


def layer_seed(seed: int, name: str) -> int:
    """The per-layer seed of ``random`` selection, stable across runs and target lists; shared so
    that NeuroAda and masked sparse tuning draw the same entries."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % 2**63


def selection_scores(
    model: torch.nn.Module, targets, selection: str, calibration, method: str
) -> dict[str, torch.Tensor]:
    """``|dL/dW|`` per target for ``gradient`` selection (empty for the data-free selections)."""
    if selection != "gradient":
        return {}
    if calibration is None:
        raise UsageError(
            f"{method}.selection='gradient' needs calibration batches (apply(model, cfg, calibration=...)); "
            "or use selection='magnitude'"
        )
    return gradient_scores(model, {n: m.weight for n, m in targets}, calibration)
