"""One job on several processes (GPUs): data-parallel training and sharded evaluation.

``--gpus-per-job N`` (N > 1) launches a job's process under ``accelerate launch`` with N
processes (``bench.runner.run_in_subprocess``). Each process runs the same ``run_one``; this
module is everything that differs from the single-process path, so that path stays untouched:

- **Training** (:class:`Group`): every process builds the same seeded stream of micro-batches
  and trains on its own contiguous slice of each one, under DDP (``Accelerator.prepare_model``).
  The optimizer still steps once per ``batch_size`` examples, so the budget is unchanged. The
  model's loss is a mean over the slice's targets; :meth:`Group.split` returns the weight that
  turns DDP's average of slice means into the mean over the whole micro-batch (for a causal LM
  the slices hold different numbers of target tokens, so a plain average would be biased).
- **Evaluation** (:func:`shard` and :func:`gather`): the length-sorted batches of
  ``bench.evaluate`` are dealt round-robin to the processes and their outputs gathered back by
  item index. No item is padded or duplicated, so an eval set that does not divide evenly is
  scored exactly once per item (what ``gather_for_metrics`` achieves by dropping the padded
  tail). Every process ends with all outputs and the same metrics; only rank 0 writes records.

Outside a process group (plain ``python -m bench.runner``) :func:`shard` and :func:`gather`
return their input unchanged and :func:`init` returns ``None``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

T = TypeVar("T")
IGNORE = -100  # label id the loss ignores (bench.train.IGNORE)


def launched_world_size() -> int:
    """Processes in this job, as set by ``accelerate launch`` / torchrun (1 when not launched)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def world() -> tuple[int, int]:
    """(rank, world size) of the initialized torch process group, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@dataclass
class Group:
    """The job's processes: rank, size, device and the ``Accelerator`` that joined them."""

    accelerator: Any
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model wrapped for data-parallel training (DDP); the optimizer needs no wrapping."""
        return self.accelerator.prepare_model(model)

    def split(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], float]:
        """This process's slice of a micro-batch, and the weight of its loss.

        With ``weight``, the average over processes of ``slice_loss * weight`` (what DDP's
        gradient all-reduce computes) equals the loss of the whole micro-batch.
        """
        return split_batch(batch, self.rank, self.world_size)

    def backward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], grad_accum: int, sync: bool):
        """Forward and backward on this process's slice of ``batch``; returns the weighted loss.

        ``sync``: all-reduce the gradients now (the step's last micro-batch); before that, DDP's
        ``no_sync`` lets them accumulate locally, as ``Accelerator.accumulate`` does.
        """
        part, weight = self.split(batch)
        with contextlib.nullcontext() if sync else model.no_sync():
            out = model(**part)
            # A slice without targets (weight 0) still joins the all-reduce, with zero gradients.
            loss = out.loss * weight if weight else out.logits.sum() * 0.0
            (loss / grad_accum).backward()
        return loss.detach()

    def mean(self, value: float) -> float:
        """The average of ``value`` over the processes (every process gets the result)."""
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item()) / self.world_size


def init() -> Group | None:
    """Join the process group when launched with several processes; ``None`` otherwise.

    ``accelerate launch`` sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` and, for CPU processes,
    ``ACCELERATE_USE_CPU``; the ``Accelerator`` picks the backend (NCCL on GPUs, gloo on CPU)
    and this process's device (``cuda:LOCAL_RANK``).
    """
    if launched_world_size() <= 1:
        return None
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    # find_unused_parameters: a method may leave some trainable tensor out of a forward pass
    # (e.g. a task head that a loss does not reach); DDP would then wait for it forever.
    acc = Accelerator(kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    device = acc.device if acc.device.type != "cpu" else torch.device("cpu")
    return Group(accelerator=acc, rank=acc.process_index, world_size=acc.num_processes, device=device)


# ---------------------------------------------------------------------------------------------
# Training: a slice of every micro-batch per process
# ---------------------------------------------------------------------------------------------
def loss_items(labels: torch.Tensor) -> int:
    """What the model's loss averages over: predicted target tokens (causal LM, labels shifted
    by one as in transformers' ``ForCausalLMLoss``) or examples (classification, regression)."""
    if labels.dim() == 2:
        return int((labels[:, 1:] != IGNORE).sum())
    return int(labels.shape[0])


def split_batch(batch: dict[str, torch.Tensor], rank: int, world_size: int) -> tuple[dict[str, torch.Tensor], float]:
    """Rows ``[rank * n / W, (rank + 1) * n / W)`` of every tensor, and the slice's loss weight
    ``W * items(slice) / items(batch)``; see :meth:`Group.split`."""
    n = batch["input_ids"].shape[0]
    if n % world_size:
        raise ValueError(
            f"a micro-batch of {n} examples cannot be split over {world_size} processes; "
            f"use a --micro-batch-size that is a multiple of --gpus-per-job {world_size}"
        )
    per = n // world_size
    part = {k: v[rank * per : (rank + 1) * per] for k, v in batch.items()}
    total = loss_items(batch["labels"])
    weight = world_size * loss_items(part["labels"]) / total if total else 0.0
    return part, weight


# ---------------------------------------------------------------------------------------------
# Evaluation: batches dealt round-robin, outputs gathered by index
# ---------------------------------------------------------------------------------------------
def shard(batches: Sequence[T]) -> Sequence[T]:
    """This process's batches (every W-th, from its rank); all of them outside a process group."""
    rank, size = world()
    return batches if size == 1 else batches[rank::size]


def gather(values: list[T], batches: Sequence[Sequence[int]]) -> list[T]:
    """``values`` (indexed by item) with every process's items filled in.

    Each process filled the items of its :func:`shard` of ``batches``; this collects them from
    all processes by index, so each item is taken exactly once, from the process that scored it.
    """
    rank, size = world()
    if size == 1:
        return values
    import torch.distributed as dist

    mine = {i: values[i] for batch in shard(batches) for i in batch}
    parts: list[dict[int, T] | None] = [None] * size
    dist.all_gather_object(parts, mine)
    out = list(values)
    for part in parts:
        for i, value in (part or {}).items():
            out[i] = value
    return out
