"""The training loop: encoding (prompt masked, left truncation), padding, the step and sample
budget, gradient accumulation, determinism, and ``Diverged`` on a non-finite loss."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

import tasks
from bench.config import Budget
from bench.models import TINY_VOCAB, tiny_bert, tiny_llama, tiny_tokenizer
from bench.train import (
    IGNORE,
    Diverged,
    TrainStats,
    batches,
    calibration_batches,
    collate,
    encode_causal,
    encode_pair,
    encode_train,
    train,
)

PAD, BOS, EOS = 0, 1, 2  # tiny tokenizer's special ids
BUDGET = Budget(
    max_steps=3,
    batch_size=4,
    micro_batch_size=4,
    max_length=32,
    warmup_ratio=0.0,  # lr > 0 from the first step
    throughput_warmup_steps=1,
)
TOY_SUM_LENGTH = 6  # "a+b=" + one digit + </s>: every toy_sum example (sums are 0..8)
FIRST_LOSS = 4.5935917  # tiny_llama(0) on the first 4 shuffled toy_sum rows; about ln(100) at init
LOSS_TOL = {"atol": 1e-5, "rtol": 0.0}  # golden loss: only BLAS summation order may differ between CPUs


def ids(text: str) -> list[int]:
    """Character ids of the tiny vocabulary, by hand."""
    return [TINY_VOCAB.index(c) for c in text]


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def pair_tok():
    return tiny_tokenizer(pair_template=True)


@pytest.fixture(scope="module")
def toy_sum(tok):
    """The first 16 toy_sum training rows, encoded."""
    task = tasks.get("toy_sum")
    return encode_train(task, tok, task.generator("train")[:16], BUDGET)


def run(examples, budget, *, lr=1e-3, model=None, seed=0):
    """Train a fresh tiny_llama(0) with AdamW; returns the stats and the optimizer steps taken."""
    model = model or tiny_llama(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    steps = []
    optimizer.register_step_post_hook(lambda *_: steps.append(1))
    stats = train(model, optimizer, examples, budget, seed=seed, pad_id=PAD, progress=False)
    return stats, len(steps)


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------
def test_causal_encoding_masks_the_prompt_from_the_loss(tok):
    enc = encode_causal(tok, "1+2=", "3", max_length=64, train_on_inputs=False)
    assert enc["input_ids"] == [*ids("1+2=3"), EOS]
    assert enc["input_ids"] == [22, 16, 23, 34, 24, 2]
    assert enc["labels"] == [IGNORE, IGNORE, IGNORE, IGNORE, 24, EOS]


def test_train_on_inputs_keeps_the_prompt_in_the_loss(tok):
    enc = encode_causal(tok, "1+2=", "3", max_length=64, train_on_inputs=True)
    assert enc["labels"] == enc["input_ids"] == [*ids("1+2=3"), EOS]


@pytest.mark.parametrize(
    ("max_length", "input_ids", "labels"),
    [
        (3, [*ids("=3"), EOS], [IGNORE, *ids("3"), EOS]),
        (2, [*ids("3"), EOS], [*ids("3"), EOS]),  # only the answer is left, and all of it is trained on
        (6, [*ids("1+2=3"), EOS], [IGNORE] * 4 + [*ids("3"), EOS]),  # exactly fits: unchanged
    ],
)
def test_truncation_cuts_the_left_end_so_the_answer_stays(tok, max_length, input_ids, labels):
    enc = encode_causal(tok, "1+2=", "3", max_length=max_length, train_on_inputs=False)
    assert enc == {"input_ids": input_ids, "labels": labels}


def test_pair_encoding_for_classification(pair_tok):
    assert encode_pair(pair_tok, "ab", "ba", 1, max_length=64) == {
        "input_ids": [BOS, *ids("ab"), EOS, *ids("ba"), EOS],
        "labels": 1,
    }
    # a single text, truncated on the right; the special tokens stay
    assert encode_pair(pair_tok, "abab", None, 0, max_length=4) == {"input_ids": [BOS, *ids("ab"), EOS], "labels": 0}


def test_encode_train_follows_the_task_head(tok, pair_tok):
    budget = Budget(max_length=32)
    causal = encode_train(tasks.get("toy_sum"), tok, [{"question": "3+4=", "answer": "7"}], budget)
    assert causal == [{"input_ids": [*ids("3+4=7"), EOS], "labels": [IGNORE] * 4 + [*ids("7"), EOS]}]

    cls = encode_train(tasks.get("toy_cls"), pair_tok, [{"sentence": "aab", "label": 1}], budget)
    assert cls == [{"input_ids": [BOS, *ids("aab"), EOS], "labels": 1}]

    row = {"sentence1": "ab", "sentence2": "b", "label": "3.25"}  # GLUE files may hold strings
    stsb = encode_train(tasks.get("glue_stsb"), pair_tok, [row], budget)
    assert stsb == [{"input_ids": [BOS, *ids("ab"), EOS, *ids("b"), EOS], "labels": 3.25}]
    assert isinstance(stsb[0]["labels"], float)


def test_encode_train_uses_the_budget_length_and_train_on_inputs(tok):
    row = {"question": "3+4=", "answer": "7"}
    short = encode_train(tasks.get("toy_sum"), tok, [row], Budget(max_length=2, train_on_inputs=True))
    assert short == [{"input_ids": [*ids("7"), EOS], "labels": [*ids("7"), EOS]}]


# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------
def test_collate_right_pads_causal_examples():
    batch = collate(
        [{"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7]}, {"input_ids": [8], "labels": [8]}], pad_id=PAD
    )
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, PAD, PAD]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE, 6, 7], [8, IGNORE, IGNORE]]  # padding is out of the loss
    assert batch["input_ids"].dtype == batch["labels"].dtype == torch.long


def test_collate_classification_and_regression_labels():
    examples = [{"input_ids": [1, 70, 2], "labels": 1}, {"input_ids": [1, 2], "labels": 0}]
    cls = collate(examples, pad_id=PAD)
    assert cls["input_ids"].tolist() == [[1, 70, 2], [1, 2, PAD]]
    assert cls["labels"].tolist() == [1, 0] and cls["labels"].dtype == torch.long

    examples = [{"input_ids": [1, 70, 2], "labels": 3.25}, {"input_ids": [1, 2], "labels": 0.5}]
    reg = collate(examples, pad_id=PAD, regression=True)
    assert reg["labels"].tolist() == [3.25, 0.5] and reg["labels"].dtype == torch.float32


def test_collate_pads_token_type_ids_with_zero():
    examples = [
        {"input_ids": [1, 70, 2, 71, 2], "token_type_ids": [0, 0, 0, 1, 1], "labels": 1},
        {"input_ids": [1, 70, 2], "token_type_ids": [0, 0, 0], "labels": 0},
    ]
    batch = collate(examples, pad_id=PAD)
    assert batch["token_type_ids"].tolist() == [[0, 0, 0, 1, 1], [0, 0, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]


def test_calibration_batches_are_the_first_examples_in_order():
    examples = [{"input_ids": [5 + i] * (1 + i % 3), "labels": i} for i in range(10)]
    budget = Budget(batch_size=4, micro_batch_size=4)
    got = calibration_batches(examples, budget, pad_id=PAD, regression=False)
    assert [b["labels"].tolist() for b in got] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]  # n=4 > what there is
    got = calibration_batches(examples, budget, pad_id=PAD, regression=False, n=2)
    assert [b["labels"].tolist() for b in got] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert got[0]["input_ids"].tolist() == [[5, PAD, PAD], [6, 6, PAD], [7, 7, 7], [8, PAD, PAD]]


def test_batches_shuffle_each_epoch_with_the_seed():
    examples = [{"input_ids": [5], "labels": i} for i in range(6)]
    budget = Budget(max_steps=3, batch_size=4, micro_batch_size=2)  # 6 micro-batches of 2: two epochs

    def seen(seed):
        return [b["labels"].tolist() for b in batches(examples, budget, seed, PAD, False)]

    first = seen(0)
    assert len(first) == budget.max_steps * budget.grad_accum == 6
    flat = sum(first, [])
    assert sorted(flat[:6]) == sorted(flat[6:]) == list(range(6))  # every example once per epoch
    assert flat[:6] != flat[6:]  # each epoch is shuffled anew
    assert seen(0) == first and seen(1) != first


def test_epoch_batches_end_each_epoch_short_and_accumulate_across_it():
    """HF Trainer 4.45: each epoch's DataLoader ends with a short micro-batch; accumulation
    counts micro-batches across epochs."""
    examples = [{"input_ids": [5], "labels": i} for i in range(5)]
    budget = Budget(max_steps=3, batch_size=4, micro_batch_size=2, epochs=2)  # accumulation 2
    got = [b["labels"].tolist() for b in batches(examples, budget, 0, PAD, False)]
    assert [len(m) for m in got] == [2, 2, 1, 2, 2, 1]  # ceil(5/2) = 3 micro-batches per epoch
    assert sorted(sum(got[:3], [])) == sorted(sum(got[3:], [])) == list(range(5))
    stepless = Budget(max_steps=3, batch_size=4, micro_batch_size=2)  # without epochs: all full
    assert [len(b["labels"]) for b in batches(examples, stepless, 0, PAD, False)] == [2] * 6


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------
def test_train_is_deterministic_for_a_seed(toy_sum):
    first, _ = run(toy_sum, BUDGET)
    again, _ = run(toy_sum, BUDGET)
    assert again.losses == first.losses  # bit for bit
    assert len(first.losses) == BUDGET.max_steps and first.final_loss == first.losses[-1]
    torch.testing.assert_close(first.losses[0], FIRST_LOSS, **LOSS_TOL)
    assert first.losses[-1] < first.losses[0]  # it learns
    other, _ = run(toy_sum, BUDGET, seed=1)  # another shuffle: other rows in the first batch
    assert other.losses[0] != first.losses[0]


def test_steps_and_samples_equal_the_budget(toy_sum):
    model = tiny_llama(0)
    stats, optimizer_steps = run(toy_sum, BUDGET, model=model)
    assert stats.steps == optimizer_steps == BUDGET.max_steps == 3
    assert stats.samples_seen == BUDGET.max_steps * BUDGET.batch_size == 12
    assert stats.tokens_seen == 12 * TOY_SUM_LENGTH  # non-padding tokens
    # the first step is the throughput warm-up: counted, not timed
    assert stats.warmup_steps == 1
    assert stats.timed_samples == 2 * 4 and stats.timed_tokens == 2 * 4 * TOY_SUM_LENGTH
    assert stats.timed_seconds > 0 and stats.train_seconds >= stats.timed_seconds
    assert stats.samples_per_s == pytest.approx(8 / stats.timed_seconds)
    assert stats.tokens_per_s == pytest.approx(48 / stats.timed_seconds)
    assert not model.training  # left in eval mode


def test_steps_and_samples_with_gradient_accumulation(toy_sum):
    budget = Budget(max_steps=3, batch_size=4, micro_batch_size=1, max_length=32, warmup_ratio=0.0)
    model = tiny_llama(0)
    forwards = []
    model.register_forward_hook(lambda *_: forwards.append(1))
    stats, optimizer_steps = run(toy_sum, budget, model=model)
    assert stats.steps == optimizer_steps == 3
    assert len(forwards) == budget.max_steps * budget.grad_accum == 12
    assert stats.samples_seen == 12 and stats.tokens_seen == 12 * TOY_SUM_LENGTH


def test_more_steps_than_examples_cycle_through_them(toy_sum):
    budget = Budget(max_steps=5, batch_size=4, micro_batch_size=4, max_length=32, warmup_ratio=0.0)
    stats, optimizer_steps = run(toy_sum[:6], budget)
    assert stats.steps == optimizer_steps == 5 and stats.samples_seen == 20  # 6 examples, 20 seen


def test_a_warmup_longer_than_the_run_still_counts_every_step(toy_sum):
    budget = Budget(max_steps=2, batch_size=4, micro_batch_size=4, max_length=32, throughput_warmup_steps=5)
    stats, _ = run(toy_sum, budget)
    assert stats.warmup_steps == 2 and stats.steps == 2 and stats.samples_seen == 8
    assert stats.timed_samples == 0 and stats.timed_seconds == 0.0
    assert stats.tokens_per_s is None and stats.samples_per_s is None


def test_gradient_accumulation_equals_the_full_batch(toy_sum):
    # Every toy_sum example has the same number of target tokens (one digit and </s>), so the
    # mean of the micro-batch losses is the full batch's loss, and so are the gradients.
    full, _ = run(toy_sum, BUDGET)
    accumulated, _ = run(toy_sum, replace(BUDGET, micro_batch_size=2))
    torch.testing.assert_close(accumulated.losses[0], full.losses[0], atol=1e-6, rtol=0.0)  # summation order
    # later steps follow the same parameters; loosened for the optimizer's float noise
    torch.testing.assert_close(accumulated.losses, full.losses, atol=1e-5, rtol=0.0)
    assert accumulated.samples_seen == full.samples_seen and accumulated.tokens_seen == full.tokens_seen


def test_accumulated_step_loss_is_the_mean_of_the_micro_batch_losses(tok):
    # Targets of different lengths: each micro-batch's mean token loss counts equally (the loss
    # is divided by grad_accum), which is what the step reports.
    examples = [
        encode_causal(tok, p, t, 32, False) for p, t in [("a:", "b"), ("c:", "defgh"), ("x:", "y"), ("z:", "")]
    ]
    budget = Budget(max_steps=1, batch_size=4, micro_batch_size=2, max_length=32, warmup_ratio=0.0)
    stats, _ = run(examples, budget)
    model = tiny_llama(0)
    with torch.no_grad():
        micro = [model(**b).loss.item() for b in batches(examples, budget, 0, PAD, False)]
        full = model(**collate([e for b in batches(examples, budget, 0, PAD, False) for e in _rows(b)], PAD))
    assert len(micro) == 2
    torch.testing.assert_close(stats.losses[0], sum(micro) / 2, atol=1e-6, rtol=0.0)
    assert abs(stats.losses[0] - full.loss.item()) > 1e-3  # not the token-weighted full-batch mean


def _rows(batch: dict) -> list[dict]:
    """Undo ``collate`` for causal examples (drop the padding)."""
    out = []
    for ids_, mask, labels in zip(batch["input_ids"], batch["attention_mask"], batch["labels"], strict=True):
        n = int(mask.sum())
        out.append({"input_ids": ids_[:n].tolist(), "labels": labels[:n].tolist()})
    return out


def test_regression_training_uses_float_labels(pair_tok):
    rows = [{"sentence1": "ab", "sentence2": "ba", "label": 4.5}, {"sentence1": "a", "sentence2": "bb", "label": 0.5}]
    budget = Budget(max_steps=2, batch_size=2, micro_batch_size=2, max_length=16, warmup_ratio=0.0)
    examples = encode_train(tasks.get("glue_stsb"), pair_tok, rows, budget)
    model = tiny_bert(0, num_labels=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    stats = train(model, optimizer, examples, budget, seed=0, pad_id=PAD, regression=True, progress=False)
    assert stats.steps == 2 and stats.samples_seen == 4
    assert all(math.isfinite(x) for x in stats.losses)
    # MSE against labels 4.5 and 0.5 from outputs near 0: about (4.5^2 + 0.5^2) / 2 = 10.25
    assert 8.0 < stats.losses[0] < 12.5


# ---------------------------------------------------------------------------------------------
# Divergence
# ---------------------------------------------------------------------------------------------
class LossAt(nn.Module):
    """Wraps a model; the ``call``-th forward's loss is multiplied by ``factor`` (NaN, inf)."""

    def __init__(self, model: nn.Module, call: int, factor: float) -> None:
        super().__init__()
        self.model, self.call, self.factor, self.calls = model, call, factor, 0

    def forward(self, **batch):
        out = self.model(**batch)
        self.calls += 1
        if self.calls == self.call:
            out.loss = out.loss * self.factor
        return out


@pytest.mark.parametrize(("call", "factor", "word"), [(3, math.nan, "nan"), (1, math.inf, "inf")])
def test_a_non_finite_loss_raises_diverged_with_the_steps_before(toy_sum, call, factor, word):
    clean, _ = run(toy_sum, BUDGET)
    with pytest.raises(Diverged, match=rf"^loss became {word} at step {call}$") as err:
        run(toy_sum, BUDGET, model=LossAt(tiny_llama(0), call, factor))
    assert err.value.losses == clean.losses[: call - 1]


def test_divergence_is_checked_per_step_not_per_micro_batch(toy_sum):
    budget = replace(BUDGET, micro_batch_size=2)
    clean, _ = run(toy_sum, budget)
    with pytest.raises(Diverged, match=r"^loss became nan at step 2$") as err:
        run(toy_sum, budget, model=LossAt(tiny_llama(0), 4, math.nan))  # the 2nd micro-batch of step 2
    assert err.value.losses == clean.losses[:1]


def test_a_huge_learning_rate_diverges(toy_sum):
    with pytest.raises(Diverged) as err:
        run(toy_sum, replace(BUDGET, max_steps=20), lr=1e6)
    step = int(str(err.value).rsplit(" ", 1)[-1])
    assert 1 < step <= 20
    assert len(err.value.losses) == step - 1 and all(math.isfinite(x) for x in err.value.losses)


def test_diverged_is_a_runtime_error_not_a_user_error():
    from bench.errors import BenchError

    err = Diverged("loss became nan at step 1")
    assert isinstance(err, RuntimeError) and not isinstance(err, BenchError)
    assert err.losses == [] and str(err) == "loss became nan at step 1"
    assert Diverged("x", losses=[1.0, 2.0]).losses == [1.0, 2.0]


def test_train_stats_without_timed_steps():
    stats = TrainStats()
    assert stats.tokens_per_s is None and stats.samples_per_s is None
    assert math.isnan(stats.final_loss) and stats.steps == 0
