"""One job on two processes: ``--gpus-per-job 2 --device cpu`` runs it under ``accelerate launch``
with two gloo CPU processes, and must give the single-process job's results, written once.

Tolerance: gradients are all-reduced across processes, so the floating-point sums run in
another order than one process's backward: step losses agree to a relative 1e-6, not bit for
bit. The tiny LLaMA has no dropout, so its job is otherwise the same computation; tiny BERT has
dropout 0.1, whose masks are drawn per process for its slice of the batch and so differ from
one process's masks for the whole batch: its losses are equal in distribution only, and the
test checks its record's shape, not its numbers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import distributed, models
from bench.train import IGNORE, collate

pytest.importorskip("accelerate")

ROOT = Path(__file__).resolve().parents[2]
HOOKS = Path(__file__).resolve().parent / "hooks"
# 5 eval items in batches of 2: three batches over two processes (2+1 and 2), so one process
# scores more items than the other and nothing may be padded or counted twice.
SWEEP = ["--methods", "lora", "--tasks", "toy_sum,toy_mc,toy_cls", "--preset", "smoke", "--device", "cpu"]
SWEEP += ["--threads", "1", "--limit", "5", "--eval-batch-size", "2", "--no-progress"]
NO_DROPOUT = ("toy_sum", "toy_mc")  # tiny LLaMA


def bench(out: Path, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench", "run", *SWEEP, "--output-dir", str(out), *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    single, double = tmp_path_factory.mktemp("single"), tmp_path_factory.mktemp("double")
    log = tmp_path_factory.mktemp("log") / "writes.txt"
    one = bench(single)
    assert one.returncode == 0, one.stderr[-3000:]
    hooks = os.pathsep.join([str(HOOKS), os.environ.get("PYTHONPATH", "")])  # logs record writes by rank
    two = bench(double, "--gpus-per-job", "2", env={"PYTHONPATH": hooks, "BENCH_TEST_WRITE_LOG": str(log)})
    assert two.returncode == 0, two.stderr[-3000:]
    return single, double, log.read_text().splitlines()


def load(folder: Path, task: str) -> dict:
    return json.loads((folder / f"lora--{task}--seed0.json").read_text())


def test_each_record_is_written_once_by_rank_0(runs):
    _, double, writes = runs
    names = sorted(Path(line.split()[1]).name for line in writes)
    assert names == sorted(f"lora--{t}--seed0.json" for t in ("toy_sum", "toy_mc", "toy_cls"))
    assert {line.split()[0] for line in writes} == {"0"}


@pytest.mark.parametrize("task", ["toy_sum", "toy_mc", "toy_cls"])
def test_two_processes_score_every_item_once(runs, task):
    single, double, _ = runs
    a, b = load(single, task), load(double, task)
    assert b["result"]["status"] == "ok", b["result"].get("error")
    assert b["env"]["world_size"] == 2 and "world_size" not in a["env"]
    assert b["result"]["n_eval"] == a["result"]["n_eval"] == 5
    # The global batch and the budget are the single process's.
    assert b["result"]["samples_seen"] == a["result"]["samples_seen"]
    assert b["cost"]["tokens_seen"] == a["cost"]["tokens_seen"]
    assert b["run"]["budget"] == a["run"]["budget"]


@pytest.mark.parametrize("task", NO_DROPOUT)
def test_two_processes_give_the_single_process_results(runs, task):
    single, double, _ = runs
    a, b = load(single, task), load(double, task)
    assert b["result"]["losses"] == pytest.approx(a["result"]["losses"], rel=1e-6)  # see the module docstring
    assert b["result"]["metrics"] == a["result"]["metrics"]


# ---------------------------------------------------------------------------------------------
# The pieces, in one process
# ---------------------------------------------------------------------------------------------
def test_slice_weights_turn_the_average_of_slice_losses_into_the_batch_loss():
    """Causal LM slices hold different numbers of target tokens; weighted, DDP's average of the
    slice losses (and so of their gradients) is the whole micro-batch's mean over its tokens."""
    model, _ = models.load("tiny-llama", "causal_lm", num_labels=0, dtype=torch.float32, seed=0)
    examples = [
        {"input_ids": [5, 6, 7, 8, 9, 10], "labels": [IGNORE, IGNORE, 7, 8, 9, 10]},
        {"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7]},
        {"input_ids": [11, 12, 13, 14], "labels": [IGNORE, IGNORE, IGNORE, 14]},
        {"input_ids": [15, 16, 17, 18, 19], "labels": [IGNORE, 16, 17, 18, 19]},
    ]
    batch = collate(examples, pad_id=0)
    full = model(**batch).loss
    for world in (2, 4):
        parts = [distributed.split_batch(batch, rank, world) for rank in range(world)]
        assert sum(p["input_ids"].shape[0] for p, _ in parts) == 4
        averaged = sum(model(**p).loss * w for p, w in parts) / world
        torch.testing.assert_close(averaged, full, rtol=1e-6, atol=0)


def test_an_indivisible_micro_batch_is_an_error():
    batch = collate([{"input_ids": [1, 2], "labels": 0}] * 3, pad_id=0)
    with pytest.raises(ValueError, match="multiple of --gpus-per-job 2"):
        distributed.split_batch(batch, 0, 2)


def test_without_a_process_group_evaluation_is_untouched():
    batches = [[2, 0], [1]]
    assert distributed.shard(batches) is batches
    values = ["a", "b", "c"]
    assert distributed.gather(values, batches) is values
    assert distributed.init() is None
