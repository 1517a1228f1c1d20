"""Greedy generation for evaluation: batched, left padded, each sequence dropped from the batch
as soon as it ends.

``transformers``' ``generate`` keeps a finished sequence in its batch (it appends padding) until
the whole batch is done or ``max_new_tokens`` is reached, so one long answer makes a batch of
short ones pay for its every step. :func:`greedy` runs the same decoding (argmax at each step,
stop at the EOS token or after ``max_new_tokens``) with its own loop over the KV cache and removes
finished rows from the batch, the cache and the attention mask at every step
(``Cache.reorder_cache`` with the indices of the rows still running). The tokens are those of
``generate(do_sample=False, num_beams=1)``: ``tests/bench/test_decode.py`` checks them equal to
unbatched generation and to ``generate``; ``bench evalspeed`` times it against lm-eval's
``generate_until``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from bench import distributed
from bench.loglik import by_length, cache_kwarg, left_pad, output_cache, pad_id


@torch.inference_mode()
def greedy(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int,
    device: torch.device,
    progress: bool = True,
) -> list[str]:
    """Greedy completions of ``prompts`` (new text only, special tokens skipped)."""
    encoded = [tokenizer(p, add_special_tokens=True)["input_ids"] for p in prompts]
    outputs: list[str] = [""] * len(prompts)
    bar = tqdm(total=len(prompts), desc="generate", unit="item", leave=False, disable=not progress, dynamic_ncols=True)
    batches = by_length([len(e) for e in encoded], batch_size)
    for idx in distributed.shard(batches):
        tokens = _greedy_batch(model, tokenizer, [encoded[i] for i in idx], max_new_tokens, device)
        for i, new in zip(idx, tokens, strict=True):
            outputs[i] = tokenizer.decode(new, skip_special_tokens=True)
        bar.update(len(idx))
    bar.close()
    return distributed.gather(outputs, batches)


def _greedy_batch(model, tokenizer, prompts: list[list[int]], max_new_tokens: int, device) -> list[list[int]]:
    """New token ids for each prompt of one batch (the EOS token included when reached)."""
    pad = pad_id(tokenizer)
    eos = tokenizer.eos_token_id
    ids, mask, positions = left_pad(prompts, pad)  # the last column is every prompt's end
    ids, mask, positions = ids.to(device), mask.to(device), positions.to(device)
    new: list[list[int]] = [[] for _ in prompts]
    running = torch.arange(len(prompts), device=device)  # batch row -> prompt index
    cache_name = cache_kwarg(model)
    cache = None
    for _ in range(max_new_tokens):
        out = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **({cache_name: cache} if cache is not None else {}),
        )
        cache = output_cache(out)
        step = out.logits[:, -1].argmax(-1)
        for row, token in zip(running.tolist(), step.tolist(), strict=True):
            new[row].append(token)
        alive = step != eos if eos is not None else torch.ones_like(step, dtype=torch.bool)
        if not bool(alive.any()):
            break
        if not bool(alive.all()):  # drop the finished rows from the batch and its cache
            keep = alive.nonzero().squeeze(1)
            cache.reorder_cache(keep)
            running, step, mask, positions = running[keep], step[keep], mask[keep], positions[keep]
        ids = step[:, None]
        mask = torch.cat([mask, torch.ones_like(ids)], dim=1)
        positions = positions[:, -1:] + 1
    return new
