"""Evaluation by task kind: batched greedy generation with answer extraction
(:mod:`bench.decode`), multiple choice by log-likelihood (lm-eval's scoring, computed once per
context by :mod:`bench.loglik`), and sequence classification / regression.

Every path sorts items by length, batches them, restores the original order, and shows a
progress bar. Decoding (greedy, ``max_new_tokens``, batch size, left padding with an attention
mask) is fixed by the task and the budget, never by the method.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from bench import decode, distributed, loglik


@dataclass
class EvalResult:
    metrics: dict[str, float]
    n_items: int
    predictions: list[Any]
    """One prediction per item, in item order: the extracted answer, the chosen option, the
    class or the regression value."""
    samples: list[dict[str, Any]] = field(default_factory=list)
    """The first few items with the model's raw output, for eyeballing a record."""
    references: list[Any] = field(default_factory=list)
    """One reference per item, in item order (what a prediction is scored against)."""
    extra: dict[str, list[Any]] = field(default_factory=dict)
    """Further per-item results, by name (``correct_norm``: whether the length-normalised choice,
    lm-eval's acc_norm, is right)."""


def evaluate(
    task,
    model: nn.Module,
    tokenizer,
    rows: Sequence[dict],
    *,
    batch_size: int,
    device: torch.device,
    progress: bool = True,
) -> EvalResult:
    items = [task.to_eval(r) for r in rows]
    model.eval()
    with torch.inference_mode():
        if task.kind == "generate":
            return _generate(task, model, tokenizer, items, batch_size, device, progress)
        if task.kind == "multiple_choice":
            return _multiple_choice(task, model, tokenizer, items, batch_size, device, progress)
        return _classify(task, model, tokenizer, items, batch_size, device, progress)


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------
def _generate(task, model, tokenizer, items, batch_size, device, progress) -> EvalResult:
    responses = decode.greedy(
        model,
        tokenizer,
        [it["prompt"] for it in items],
        max_new_tokens=task.max_new_tokens,
        batch_size=batch_size,
        device=device,
        progress=progress,
    )
    predictions = [task.extract(r) for r in responses]
    references = [it["reference"] for it in items]
    samples = [
        {"prompt_tail": it["prompt"][-200:], "response": r, "prediction": p, "reference": it["reference"]}
        for it, r, p in list(zip(items, responses, predictions, strict=True))[:5]
    ]
    return EvalResult(task.score(predictions, references), len(items), predictions, samples, references)


# ---------------------------------------------------------------------------------------------
# Multiple choice by log-likelihood
# ---------------------------------------------------------------------------------------------
def mc_requests(items: Sequence[dict]) -> tuple[list[tuple[str, str]], list[tuple[int, int]]]:
    """The (context, continuation) requests of multiple-choice items, and each item's (start, count)."""
    requests: list[tuple[str, str]] = []
    spans = []
    for it in items:
        if "contexts" in it:  # e.g. WinoGrande: the option fills the context, continuation fixed
            pairs = [(c, it["continuation"]) for c in it["contexts"]]
        else:
            pairs = [(it["context"], ch) for ch in it["choices"]]
        spans.append((len(requests), len(pairs)))
        requests.extend(pairs)
    return requests, spans


def mc_choices(items: Sequence[dict], spans, scores: Sequence[float]) -> tuple[list[int], list[int]]:
    """Each item's chosen option by log-likelihood, and by lm-eval's acc_norm (only for items with
    ``choices``: the log-likelihood over the choice's length in characters, delimiter excluded)."""
    predictions, predictions_norm = [], []
    for it, (start, n) in zip(items, spans, strict=True):
        ll = scores[start : start + n]
        predictions.append(max(range(n), key=lambda j: ll[j]))
        if "choices" in it:
            lengths = [max(len(c.removeprefix(" ")), 1) for c in it["choices"]]
            predictions_norm.append(max(range(n), key=lambda j: ll[j] / lengths[j]))
    return predictions, predictions_norm


def mc_metrics(task, predictions: list[int], predictions_norm: list[int], golds: list[int]) -> dict[str, float]:
    """The task's metrics of the choices, and of the acc_norm choices as ``<metric>_norm`` (not for
    the partial-scoring ``contexts`` form, which has none)."""
    metrics = dict(task.score(predictions, golds))
    if len(predictions_norm) == len(golds):
        metrics.update({f"{k}_norm": v for k, v in task.score(predictions_norm, golds).items()})
    return metrics


def _multiple_choice(task, model, tokenizer, items, batch_size, device, progress) -> EvalResult:
    requests, spans = mc_requests(items)
    scores = loglik.shared(model, tokenizer, requests, batch_size=batch_size, device=device, progress=progress)
    predictions, predictions_norm = mc_choices(items, spans, scores)
    golds = [it["gold"] for it in items]
    metrics = mc_metrics(task, predictions, predictions_norm, golds)
    samples = [
        {"loglik": scores[s : s + n], "prediction": p, "gold": g}
        for (s, n), p, g in list(zip(spans, predictions, golds, strict=True))[:5]
    ]
    extra = {}
    if len(predictions_norm) == len(golds):  # per item: is the length-normalised choice right
        extra["correct_norm"] = [p == g for p, g in zip(predictions_norm, golds, strict=True)]
    return EvalResult(metrics, len(items), predictions, samples, golds, extra)


# ---------------------------------------------------------------------------------------------
# Classification and regression
# ---------------------------------------------------------------------------------------------
def _classify(task, model, tokenizer, items, batch_size, device, progress) -> EvalResult:
    encoded = [tokenizer(it["text"], it.get("text_pair"), truncation=True, max_length=512) for it in items]
    predictions: list[Any] = [None] * len(items)
    bar = tqdm(total=len(items), desc="classify", unit="item", leave=False, disable=not progress, dynamic_ncols=True)
    batches = loglik.by_length([len(e["input_ids"]) for e in encoded], batch_size)
    for idx in distributed.shard(batches):
        batch = tokenizer.pad([encoded[i] for i in idx], return_tensors="pt")
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.float()
        values = logits[:, 0].tolist() if task.kind == "regress" else logits.argmax(-1).tolist()
        for row, i in enumerate(idx):
            predictions[i] = values[row]
        bar.update(len(idx))
    bar.close()
    predictions = distributed.gather(predictions, batches)
    references = [it["label"] for it in items]
    samples = [
        {"text": it["text"][:200], "prediction": p, "label": it["label"]}
        for it, p in list(zip(items, predictions, strict=True))[:5]
    ]
    return EvalResult(task.score(predictions, references), len(items), predictions, samples, references)
