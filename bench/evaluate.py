"""Evaluation by task kind: batched greedy generation with answer extraction, multiple choice
by log-likelihood (lm-eval's way), and sequence classification / regression.

Every path sorts items by length, batches them, restores the original order, and shows a
progress bar. Decoding (greedy, ``max_new_tokens``, batch size, left padding with an attention
mask) is fixed by the task and the budget, never by the method.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from bench import distributed


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


def _by_length(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Index batches, longest first (stable, so ties keep their order)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


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
@torch.inference_mode()
def generate(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int,
    device: torch.device,
    progress: bool = True,
) -> list[str]:
    """Greedy completions of ``prompts`` (new text only), batched with left padding."""
    encoded = [tokenizer(p, add_special_tokens=True)["input_ids"] for p in prompts]
    outputs: list[str] = [""] * len(prompts)
    pad_id = tokenizer.pad_token_id
    bar = tqdm(total=len(prompts), desc="generate", unit="item", leave=False, disable=not progress, dynamic_ncols=True)
    batches = _by_length([len(e) for e in encoded], batch_size)
    for idx in distributed.shard(batches):  # every batch, unless several processes share the job
        width = max(len(encoded[i]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, i in enumerate(idx):  # left padding: the last position is every prompt's end
            ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
            mask[row, width - len(encoded[i]) :] = 1
        out = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=pad_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        for row, i in enumerate(idx):
            outputs[i] = tokenizer.decode(out[row, width:], skip_special_tokens=True)
        bar.update(len(idx))
    bar.close()
    return distributed.gather(outputs, batches)


def _generate(task, model, tokenizer, items, batch_size, device, progress) -> EvalResult:
    responses = generate(
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
def encode_pair_lm_eval(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Context and continuation ids the way lm-eval's HFLM encodes them: trailing spaces of the
    context move to the continuation, the whole string is tokenized once with the tokenizer's
    default special tokens (BOS for LLaMA-style tokenizers), and the continuation is what
    follows the context's own tokens. An empty context is the BOS token (EOS without one)."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    if not context:
        prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        return [prefix], tokenizer(continuation, add_special_tokens=False)["input_ids"]
    whole = tokenizer(context + continuation)["input_ids"]
    ctx = tokenizer(context)["input_ids"]
    return ctx, whole[len(ctx) :]


@torch.inference_mode()
def loglikelihoods(
    model: nn.Module,
    tokenizer,
    requests: Sequence[tuple[str, str]],
    *,
    batch_size: int,
    device: torch.device,
    progress: bool = True,
) -> list[float]:
    """Sum of log p(continuation | context) for each (context, continuation), batched."""
    encoded = [encode_pair_lm_eval(tokenizer, c, x) for c, x in requests]
    inputs = [(ctx + cont)[:-1] for ctx, cont in encoded]
    results = [0.0] * len(requests)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    bar = tqdm(total=len(requests), desc="loglik", unit="req", leave=False, disable=not progress, dynamic_ncols=True)
    batches = _by_length([len(x) for x in inputs], batch_size)
    for idx in distributed.shard(batches):
        width = max(len(inputs[i]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, i in enumerate(idx):  # right padding: real tokens never attend to pads
            ids[row, : len(inputs[i])] = torch.tensor(inputs[i])
            mask[row, : len(inputs[i])] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        for row, i in enumerate(idx):
            ctx, cont = encoded[i]
            start = len(ctx) - 1  # position whose logits predict the first continuation token
            # log-softmax over the continuation's positions only: a full (batch, length, vocab)
            # fp32 copy would cost gigabytes with a 50k vocabulary.
            logprobs = F.log_softmax(logits[row, start : start + len(cont)].float(), dim=-1)
            targets = torch.tensor(cont, device=logprobs.device)
            results[i] = float(logprobs.gather(1, targets[:, None]).sum())
        bar.update(len(idx))
    bar.close()
    return distributed.gather(results, batches)


def _multiple_choice(task, model, tokenizer, items, batch_size, device, progress) -> EvalResult:
    requests: list[tuple[str, str]] = []
    spans = []
    for it in items:
        if "contexts" in it:  # e.g. WinoGrande: the option fills the context, continuation fixed
            pairs = [(c, it["continuation"]) for c in it["contexts"]]
        else:
            pairs = [(it["context"], ch) for ch in it["choices"]]
        spans.append((len(requests), len(pairs)))
        requests.extend(pairs)
    scores = loglikelihoods(model, tokenizer, requests, batch_size=batch_size, device=device, progress=progress)
    predictions, predictions_norm, golds = [], [], []
    for it, (start, n) in zip(items, spans, strict=True):
        ll = scores[start : start + n]
        predictions.append(max(range(n), key=lambda j: ll[j]))
        if "choices" in it:  # lm-eval's acc_norm: by the choice's length in characters, delimiter excluded
            lengths = [max(len(c.removeprefix(" ")), 1) for c in it["choices"]]
            predictions_norm.append(max(range(n), key=lambda j: ll[j] / lengths[j]))
        golds.append(it["gold"])
    metrics = dict(task.score(predictions, golds))
    if len(predictions_norm) == len(golds):  # not for the partial-scoring (contexts) form
        norm = task.score(predictions_norm, golds)
        metrics.update({f"{k}_norm": v for k, v in norm.items()})
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
    batches = _by_length([len(e["input_ids"]) for e in encoded], batch_size)
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
