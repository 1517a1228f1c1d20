"""Measurement: the exact byte breakdown of one training step (hand-computed bytes), that it
leaves the job untouched, and the NVML / CUDA paths without a GPU (reasons, never crashes); on a
GPU (``gpu``-marked, skipped without CUDA) the allocator peaks of a known allocation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench import measure, models
from bench.train import collate

# The tiny MLP 10 -> 20 -> 2 (fp32, 4 bytes per entry) on a batch of 4.
BATCH = 4
W1, B1, W2, B2 = 20 * 10 * 4, 20 * 4, 2 * 20 * 4, 2 * 4  # 800, 80, 160, 8 bytes
PARAMS = W1 + B1 + W2 + B2  # 1048
STEP = 4  # AdamW keeps state["step"] as a 0-d float32 tensor per parameter
X = BATCH * 10 * 4  # the input batch, 160
H = BATCH * 20 * 4  # ReLU output, saved by ReLU and (the same storage) by the second linear: 320
Y = BATCH * 2 * 4  # the output, saved by pow(2) in the loss: 32


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 2))


def adamw(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)


def loss_fn(model: nn.Module, batch: tuple[torch.Tensor]) -> torch.Tensor:
    return model(batch[0]).pow(2).mean()


def test_breakdown_equals_hand_computed_bytes():
    x = torch.randn(BATCH, 10)
    out = measure.breakdown(mlp(), adamw, (x,), loss_fn)
    assert out["param_bytes"] == PARAMS
    assert out["trainable_param_bytes"] == PARAMS
    assert out["buffer_bytes"] == 0
    assert out["grad_bytes"] == PARAMS
    assert out["optimizer_state_bytes"] == 2 * PARAMS + 4 * STEP  # exp_avg, exp_avg_sq, step
    # linear 1 saves x (its weight needs x for the gradient); ReLU saves h; linear 2 saves h
    # (same storage, counted once) and W2 (h needs it for its gradient); pow(2) saves y.
    assert out["saved_input_bytes"] == X
    assert out["saved_param_bytes"] == W2
    assert out["saved_activation_bytes"] == H + Y
    assert out["saved_bytes"] == X + W2 + H + Y
    assert out["total_bytes"] == PARAMS + PARAMS + 2 * PARAMS + 4 * STEP + X + H + Y
    assert out["optimizer"] == "AdamW"
    assert out["batch_shape"] == [[BATCH, 10]]


def test_breakdown_frozen_weight_saved_by_linear_is_param_memory():
    model = mlp()
    model[2].requires_grad_(False)  # frozen, yet F.linear saves W2 to give h its gradient
    out = measure.breakdown(model, adamw, (torch.randn(BATCH, 10),), loss_fn)
    trainable = W1 + B1
    assert out["trainable_param_bytes"] == out["grad_bytes"] == trainable
    assert out["optimizer_state_bytes"] == 2 * trainable + 2 * STEP
    assert out["saved_param_bytes"] == W2
    assert out["saved_activation_bytes"] == H + Y


def test_breakdown_frozen_first_layer_saves_no_input():
    model = mlp()
    model[0].requires_grad_(False)  # nothing before linear 2 needs a gradient
    out = measure.breakdown(model, adamw, (torch.randn(BATCH, 10),), loss_fn)
    assert out["grad_bytes"] == W2 + B2
    assert (out["saved_input_bytes"], out["saved_param_bytes"], out["saved_activation_bytes"]) == (0, 0, H + Y)


def test_breakdown_leaves_model_rng_and_training_untouched():
    def model_with_dropout():
        torch.manual_seed(1)
        return nn.Sequential(nn.Linear(10, 20), nn.Dropout(0.5), nn.ReLU(), nn.Linear(20, 2)).train()

    x = torch.randn(BATCH, 10)

    def one_step(model):
        opt = adamw(model)
        loss_fn(model, (x,)).backward()
        opt.step()
        return [p.detach().clone() for p in model.parameters()]

    reference = model_with_dropout()
    torch.manual_seed(7)
    expected = one_step(reference)

    model = model_with_dropout()
    before = [p.detach().clone() for p in model.parameters()]
    torch.manual_seed(7)
    rng = torch.get_rng_state()
    measure.breakdown(model, adamw, (x,), loss_fn)
    assert torch.equal(torch.get_rng_state(), rng)  # dropout in the copy drew from a forked RNG
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    got = one_step(model)
    assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True))


def test_breakdown_of_a_transformers_model_with_a_dict_batch():
    model = models.tiny_llama(0)
    tok = models.tiny_tokenizer()
    ids = tok("2+2=4")["input_ids"]
    batch = collate([{"input_ids": ids, "labels": ids}] * 2, pad_id=0)
    out = measure.breakdown(model, adamw, batch)  # default loss: model(**batch).loss
    n_params = sum(p.numel() for p in model.parameters())
    n_tensors = len(list(model.parameters()))
    assert out["param_bytes"] == out["trainable_param_bytes"] == out["grad_bytes"] == 4 * n_params
    assert out["optimizer_state_bytes"] == 2 * 4 * n_params + STEP * n_tensors
    assert out["saved_activation_bytes"] > 0 and out["saved_param_bytes"] > 0
    assert out["batch_shape"] == {"input_ids": [2, len(ids)], "attention_mask": [2, len(ids)], "labels": [2, len(ids)]}


def test_breakdown_or_reason_records_a_failure():
    def broken(model, batch):
        raise RuntimeError("boom")

    out = measure.breakdown_or_reason(mlp(), adamw, (torch.randn(2, 10),), broken)
    assert out == {"reason": "breakdown failed: RuntimeError: boom"}


def test_tensor_bytes_counts_each_storage_once():
    base = torch.zeros(10, 10)  # 400 bytes
    assert measure.tensor_bytes([base, base[:2], base.t()]) == 400  # views share the storage
    assert measure.tensor_bytes([base[:1]]) == 400  # a view keeps its whole storage alive
    assert measure.tensor_bytes([base, torch.zeros(3, dtype=torch.float64)]) == 424


# ---------------------------------------------------------------------------------------------
# Process memory and CUDA without a GPU
# ---------------------------------------------------------------------------------------------
def test_peak_rss_is_positive_and_reset_never_raises():
    assert measure.peak_rss_mb() > 0
    assert isinstance(measure.reset_peak_rss(), bool)
    rss = measure.rss_mb()
    if rss is not None:
        assert measure.peak_rss_mb() >= rss  # the kernel keeps VmHWM >= VmRSS


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA path")
def test_cuda_figures_are_empty_without_cuda():
    measure.cuda_reset()
    assert measure.cuda_peaks() == {}


# ---------------------------------------------------------------------------------------------
# NVML: absent, broken, and a fake device
# ---------------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_cuda_peaks_count_an_allocation_and_reset_to_what_is_held():
    torch.zeros(1, device="cuda")
    measure.cuda_reset()
    block = torch.empty(64 * 2**20, dtype=torch.uint8, device="cuda")
    peaks = measure.cuda_peaks()
    assert peaks["torch_max_allocated_mb"] >= 64
    assert peaks["torch_max_reserved_mb"] >= peaks["torch_max_allocated_mb"]
    del block
    measure.cuda_reset()
    assert measure.cuda_peaks()["torch_max_allocated_mb"] == torch.cuda.memory_allocated() / 2**20
