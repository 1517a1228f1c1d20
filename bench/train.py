"""The training loop: encode examples, AdamW with warm-up and schedule, gradient accumulation,
clipping, divergence check, and throughput. Reads top to bottom; no callbacks.

Written by hand rather than with ``transformers.Trainer`` because the harness must control
and measure exactly the same loop for every method (the optimizer comes from the method, so
masked sparse tuning can mask its decay) and time steps without the Trainer's extra work.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from tqdm.auto import tqdm

from bench.config import Budget

if TYPE_CHECKING:
    from bench.distributed import Group

IGNORE = -100  # label id that the loss ignores


class Diverged(RuntimeError):
    """The loss became NaN or infinite; ``losses`` holds the steps before it."""

    def __init__(self, message: str, losses: list[float] | None = None) -> None:
        super().__init__(message)
        self.losses = losses or []


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------
def encode_causal(tokenizer, prompt: str, target: str, max_length: int, train_on_inputs: bool) -> dict:
    """``prompt + target + eos`` as ids, with labels masked on the prompt (LLM-Adapters' way:
    the full text is tokenized once and the prompt's own tokenization gives its length).

    Too long an example is truncated from the left, so its answer is always trained on (cutting
    the right end, as LLM-Adapters does, can leave no target token and a NaN loss)."""
    full = tokenizer(prompt + target, add_special_tokens=True)["input_ids"]
    n_prompt = len(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    if tokenizer.eos_token_id is not None:
        full = full + [tokenizer.eos_token_id]
    labels = list(full) if train_on_inputs else [IGNORE] * n_prompt + full[n_prompt:]
    return {"input_ids": full[-max_length:], "labels": labels[-max_length:]}


def encode_pair(tokenizer, text: str, text_pair: str | None, label: float | int, max_length: int) -> dict:
    enc = tokenizer(text, text_pair, truncation=True, max_length=max_length)
    return {
        "input_ids": enc["input_ids"],
        "labels": label,
        **({"token_type_ids": enc["token_type_ids"]} if "token_type_ids" in enc else {}),
    }


def encode_train(task, tokenizer, rows: Sequence[dict], budget: Budget) -> list[dict]:
    out = []
    for row in rows:
        ex = task.to_train(row)
        if task.head == "causal_lm":
            out.append(encode_causal(tokenizer, ex["prompt"], ex["target"], budget.max_length, budget.train_on_inputs))
        else:
            out.append(encode_pair(tokenizer, ex["text"], ex.get("text_pair"), ex["label"], budget.max_length))
    return out


def collate(examples: Sequence[dict], pad_id: int, regression: bool = False) -> dict[str, torch.Tensor]:
    """Right-pad a batch; padding is masked out of attention and loss."""
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    batch: dict[str, torch.Tensor] = {}
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        mask[i, :n] = 1
    batch["input_ids"], batch["attention_mask"] = ids, mask
    if "token_type_ids" in examples[0]:
        tt = torch.zeros_like(ids)
        for i, e in enumerate(examples):
            tt[i, : len(e["token_type_ids"])] = torch.tensor(e["token_type_ids"])
        batch["token_type_ids"] = tt
    if isinstance(examples[0]["labels"], list):
        labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
        for i, e in enumerate(examples):
            labels[i, : len(e["labels"])] = torch.tensor(e["labels"])
        batch["labels"] = labels
    else:
        dtype = torch.float32 if regression else torch.long
        batch["labels"] = torch.tensor([e["labels"] for e in examples], dtype=dtype)
    return batch


def batches(
    examples: Sequence[dict], budget: Budget, seed: int, pad_id: int, regression: bool
) -> Iterator[list[dict]]:
    """Micro-batches for ``max_steps`` optimizer steps: a seeded shuffle per epoch, cycled.

    With ``budget.epochs`` the micro-batches keep to epochs as HF Trainer's DataLoader does: each
    epoch ends with a short micro-batch, and accumulation runs on across the epoch boundary (as in
    transformers 4.45, the official NeuroAda scripts' version). Without, a micro-batch may span two."""
    rng = random.Random(seed)
    order: list[int] = []
    for _ in range(budget.max_steps * budget.grad_accum):
        micro = []
        for _ in range(budget.micro_batch_size):
            if not order:
                if micro and budget.epochs is not None:
                    break  # the epoch's short last micro-batch
                order = list(range(len(examples)))
                rng.shuffle(order)
            micro.append(examples[order.pop()])
        yield collate(micro, pad_id, regression)


def calibration_batches(
    examples: Sequence[dict], budget: Budget, pad_id: int, regression: bool, n: int = 4
) -> list[dict]:
    """A few fixed micro-batches for data-dependent selection (e.g. NeuroAda's ``gradient``)."""
    size = budget.micro_batch_size
    return [collate(examples[i : i + size], pad_id, regression) for i in range(0, min(n * size, len(examples)), size)]


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------
@dataclass
class TrainStats:
    steps: int = 0
    final_loss: float = float("nan")
    losses: list[float] | None = None
    train_seconds: float = 0.0
    timed_seconds: float = 0.0
    """Wall time of the steps after the throughput warm-up."""
    timed_tokens: int = 0
    """Non-padding tokens in the timed steps."""
    timed_samples: int = 0
    warmup_steps: int = 0
    tokens_seen: int = 0
    samples_seen: int = 0

    @property
    def tokens_per_s(self) -> float | None:
        return self.timed_tokens / self.timed_seconds if self.timed_seconds > 0 else None

    @property
    def samples_per_s(self) -> float | None:
        return self.timed_samples / self.timed_seconds if self.timed_seconds > 0 else None


def schedule(optimizer: torch.optim.Optimizer, budget: Budget):
    from transformers import get_scheduler

    return get_scheduler(
        budget.scheduler if budget.scheduler != "constant" else "constant_with_warmup",
        optimizer,
        num_warmup_steps=budget.warmup_for(budget.max_steps),
        num_training_steps=budget.max_steps,
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    examples: Sequence[dict],
    budget: Budget,
    *,
    seed: int,
    pad_id: int,
    regression: bool = False,
    device: torch.device | None = None,
    progress: bool = True,
    ddp: Group | None = None,
) -> TrainStats:
    """Run ``budget.max_steps`` optimizer steps. Raises :class:`Diverged` on a NaN/inf loss.

    ``ddp`` (several processes, ``bench.distributed``): DDP over the model, each process
    trains on its slice of every micro-batch; steps, batch size and losses stay the whole job's.
    """
    device = device or torch.device("cpu")
    stats = TrainStats(losses=[], warmup_steps=min(budget.throughput_warmup_steps, budget.max_steps))
    scheduler = schedule(optimizer, budget)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    stream = batches(examples, budget, seed, pad_id, regression)
    if ddp is not None:
        model = ddp.prepare(model)
    model.train()
    bar = tqdm(
        total=budget.max_steps, desc="train", unit="step", leave=False, disable=not progress, dynamic_ncols=True
    )
    start = time.perf_counter()
    for step in range(budget.max_steps):
        # Collate the step's micro-batches before the clock starts: timing covers the model only.
        micro_batches = [next(stream) for _ in range(budget.grad_accum)]
        _sync(device)
        t0 = time.perf_counter()
        step_loss, step_tokens, step_samples = 0.0, 0, 0
        for i, micro in enumerate(micro_batches):
            batch = {k: v.to(device) for k, v in micro.items()}
            if ddp is None:
                # The mean of the micro-batches' mean token losses, as HF Trainer <= 4.45 (the official
                # NeuroAda scripts' 4.45.1) accumulates; transformers >= 4.46 weights micro-batches
                # by their target tokens (num_items_in_batch) instead.
                loss = model(**batch).loss
                (loss / budget.grad_accum).backward()
            else:  # this process's slice, weighted so that DDP's average is the micro-batch's loss
                loss = ddp.backward(model, batch, budget.grad_accum, sync=i == len(micro_batches) - 1)
            step_loss += loss.item() / budget.grad_accum
            step_tokens += int(batch["attention_mask"].sum())  # the whole micro-batch, on every process
            step_samples += batch["input_ids"].shape[0]
        if ddp is not None:
            step_loss = ddp.mean(step_loss)
        if not math.isfinite(step_loss):
            raise Diverged(f"loss became {step_loss} at step {step + 1}", losses=list(stats.losses))
        if budget.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, budget.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(device)
        dt = time.perf_counter() - t0
        # Timing: the first steps pay for lazy allocation and are excluded from throughput.
        if step >= stats.warmup_steps:
            stats.timed_seconds += dt
            stats.timed_tokens += step_tokens
            stats.timed_samples += step_samples
        stats.tokens_seen += step_tokens
        stats.samples_seen += step_samples
        stats.losses.append(step_loss)
        stats.steps = step + 1
        stats.final_loss = step_loss
        bar.update(1)
        bar.set_postfix(loss=f"{step_loss:.4f}")
    bar.close()
    stats.train_seconds = time.perf_counter() - start
    model.eval()
    return stats


@torch.no_grad()
def mean_loss(
    model: nn.Module,
    examples: Sequence[dict],
    budget: Budget,
    *,
    pad_id: int,
    regression: bool,
    device: torch.device | None = None,
) -> float:
    """The mean per-example loss of ``examples`` (teacher-forced, as in training), in micro-batches:
    the validation criterion of tasks whose validation rows cannot be scored by the task itself."""
    model.eval()
    total, n = 0.0, 0
    for start in range(0, len(examples), budget.micro_batch_size):
        chunk = examples[start : start + budget.micro_batch_size]
        batch = {k: v.to(device) if device is not None else v for k, v in collate(chunk, pad_id, regression).items()}
        total += float(model(**batch).loss) * len(chunk)
        n += len(chunk)
    return total / max(n, 1)
