"""Log-likelihood of continuations given contexts, the way lm-eval scores multiple choice.

Two implementations with the same results (``tests/bench/test_loglik.py`` checks them equal to
1e-5 in fp64):

- :func:`plain`: lm-eval's way. One row per (context, continuation) request, right padded,
  logits over every position; each choice re-runs its whole context.
- :func:`shared` (the default): each distinct context runs **once**, left padded, and only its
  last position goes through the vocabulary projection (``logits_to_keep=1``): that position
  scores the first token of every continuation of that context, so one-token continuations need
  nothing more. Longer continuations then run from a copy of the context's KV cache (one row
  per continuation, ``Cache.reorder_cache`` with repeated indices), with the context's padding
  mask and the true positions, and only their own positions are projected. Batches are formed
  by tokens (padded context + continuation tokens up to ``max_tokens``), not by item count,
  so short items share a forward pass and long ones do not blow memory.

Why we write this ourselves: lm-eval's HFLM re-runs each context for every choice and projects
every position onto the vocabulary; on ARC-Easy with SmolLM2 (a 49k vocabulary on a 576-wide
model) that is most of the work. Measured by ``bench evalspeed`` (numbers in the README).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from bench import distributed

TOKENS_PER_ITEM = 64
"""``max_tokens`` = eval batch size x this: the token budget of one forward pass. Measured with
SmolLM2 on 120 ARC-Easy items (1 thread, two interleaved rounds): 256-768 tokens 27 req/s,
1,024 15-19, 2,048 16, 8,192 7: a wider batch pads more continuations to its longest one."""


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
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


def by_length(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Index batches, longest first (stable, so ties keep their order)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def left_pad(seqs: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(ids, mask, positions)`` of ``seqs`` left padded, so every sequence ends in the last column;
    ``positions`` are the true positions (as without padding) for ``position_ids``."""
    width = max(len(x) for x in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, x in enumerate(seqs):
        ids[row, width - len(x) :] = torch.tensor(x)
        mask[row, width - len(x) :] = 1
    return ids, mask, (mask.cumsum(1) - 1).clamp(min=0)


def pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


# ---------------------------------------------------------------------------------------------
# The plain way (lm-eval's): the reference
# ---------------------------------------------------------------------------------------------
@torch.inference_mode()
def plain(
    model: nn.Module,
    tokenizer,
    requests: Sequence[tuple[str, str]],
    *,
    batch_size: int,
    device: torch.device,
    progress: bool = True,
) -> list[float]:
    """Sum of log p(continuation | context) per request: one right-padded row per request."""
    encoded = [encode_pair(tokenizer, c, x) for c, x in requests]
    inputs = [(ctx + cont)[:-1] for ctx, cont in encoded]
    results = [0.0] * len(requests)
    bar = tqdm(total=len(requests), desc="loglik", unit="req", leave=False, disable=not progress, dynamic_ncols=True)
    batches = by_length([len(x) for x in inputs], batch_size)
    for idx in distributed.shard(batches):
        width = max(len(inputs[i]) for i in idx)
        ids = torch.full((len(idx), width), pad_id(tokenizer), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, i in enumerate(idx):  # right padding: real tokens never attend to pads
            ids[row, : len(inputs[i])] = torch.tensor(inputs[i])
            mask[row, : len(inputs[i])] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        for row, i in enumerate(idx):
            ctx, cont = encoded[i]
            start = len(ctx) - 1  # position whose logits predict the first continuation token
            logprobs = F.log_softmax(logits[row, start : start + len(cont)].float(), dim=-1)
            targets = torch.tensor(cont, device=logprobs.device)
            results[i] = float(logprobs.gather(1, targets[:, None]).sum())
        bar.update(len(idx))
    bar.close()
    return distributed.gather(results, batches)


# ---------------------------------------------------------------------------------------------
# The shared-context way
# ---------------------------------------------------------------------------------------------
def token_batches(groups: Sequence[tuple[int, list[int]]], max_tokens: int) -> list[list[int]]:
    """Batches of group indices, longest context first, each within ``max_tokens``.

    ``groups[g] = (context length, continuation lengths)``; a batch costs its padded context
    tokens plus its padded continuation tokens. A group alone over the budget gets a batch of its own.
    """
    order = sorted(range(len(groups)), key=lambda g: -groups[g][0])
    batches: list[list[int]] = []
    current: list[int] = []
    for g in order:
        trial = [*current, g]
        width = max(groups[i][0] for i in trial)
        conts = [n - 1 for i in trial for n in groups[i][1] if n > 1]  # rows of the continuation pass
        cost = width * len(trial) + (max(conts) * len(conts) if conts else 0)
        if current and cost > max_tokens:
            batches.append(current)
            trial = [g]
        current = trial
    if current:
        batches.append(current)
    return batches


def _accepts_logits_to_keep(model: nn.Module) -> bool:
    params = inspect.signature(model.forward).parameters
    return "logits_to_keep" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def cache_kwarg(model: nn.Module) -> str:
    """The name under which ``model.forward`` takes a KV cache (``cache`` in transformers >= 5.2x,
    ``past_key_values`` before; the old name still works there but warns)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft model passes it on
    return "cache" if "cache" in inspect.signature(inner.forward).parameters else "past_key_values"


def output_cache(out):
    """The KV cache of a model output, under either name."""
    return out.cache if getattr(out, "cache", None) is not None else out.past_key_values


@torch.inference_mode()
def shared(
    model: nn.Module,
    tokenizer,
    requests: Sequence[tuple[str, str]],
    *,
    batch_size: int,
    device: torch.device,
    progress: bool = True,
    max_tokens: int | None = None,
) -> list[float]:
    """Same values as :func:`plain`, each distinct context run once (see the module docstring)."""
    encoded = [encode_pair(tokenizer, c, x) for c, x in requests]
    contexts: dict[tuple[int, ...], list[int]] = {}  # context ids -> its requests, in request order
    for i, (ctx, _) in enumerate(encoded):
        contexts.setdefault(tuple(ctx), []).append(i)
    keys = list(contexts)
    groups = [(len(k), [len(encoded[i][1]) for i in contexts[k]]) for k in keys]
    batches = token_batches(groups, max_tokens or batch_size * TOKENS_PER_ITEM)
    results = [0.0] * len(requests)
    bar = tqdm(total=len(requests), desc="loglik", unit="req", leave=False, disable=not progress, dynamic_ncols=True)
    keep = _accepts_logits_to_keep(model)
    request_batches = []
    for batch in batches:
        request_batches.append([i for g in batch for i in contexts[keys[g]]])
    for batch, members in distributed.shard(list(zip(batches, request_batches, strict=True))):
        ctx_ids = [list(keys[g]) for g in batch]
        rows = [(b, i) for b, g in enumerate(batch) for i in contexts[keys[g]]]
        _score_batch(model, tokenizer, ctx_ids, rows, encoded, results, device, keep)
        bar.update(len(members))
    bar.close()
    return distributed.gather(results, request_batches)


def _score_batch(model, tokenizer, ctx_ids, rows, encoded, results, device, keep: bool) -> None:
    """Score the requests ``rows`` = [(context row, request index)] of one batch into ``results``."""
    pad = pad_id(tokenizer)
    ids, mask, positions = left_pad(ctx_ids, pad)  # every context ends in the last column
    extra = {"logits_to_keep": 1} if keep else {}
    out = model(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        use_cache=True,
        **extra,
    )
    first = F.log_softmax(out.logits[:, -1].float(), dim=-1)  # predicts every continuation's first token
    for b, i in rows:
        results[i] = float(first[b, encoded[i][1][0]])
    longer = [(b, i) for b, i in rows if len(encoded[i][1]) > 1]
    if not longer:
        return
    cache = output_cache(out)
    cache.reorder_cache(torch.tensor([b for b, _ in longer], device=device))  # one cache row per continuation
    n = max(len(encoded[i][1]) - 1 for _, i in longer)
    cont_ids = torch.full((len(longer), n), pad, dtype=torch.long)
    cont_mask = torch.zeros_like(cont_ids)
    for r, (_, i) in enumerate(longer):  # right padding: pads come after every scored position
        tokens = encoded[i][1][:-1]
        cont_ids[r, : len(tokens)] = torch.tensor(tokens)
        cont_mask[r, : len(tokens)] = 1
    ctx_rows = torch.tensor([b for b, _ in longer])
    lengths = mask.sum(1)[ctx_rows]
    logits = model(
        input_ids=cont_ids.to(device),
        attention_mask=torch.cat([mask[ctx_rows], cont_mask], dim=1).to(device),
        position_ids=(lengths[:, None] + torch.arange(n)[None, :]).to(device),
        **{cache_kwarg(model): cache},
        use_cache=True,
    ).logits
    for r, (_, i) in enumerate(longer):
        targets = torch.tensor(encoded[i][1][1:], device=logits.device)
        logprobs = F.log_softmax(logits[r, : len(targets)].float(), dim=-1)
        results[i] += float(logprobs.gather(1, targets[:, None]).sum())
