"""Full fine-tuning (``methods/full_ft.py``): every parameter trains, merge is a no-op, the whole
model is saved; one AdamW step checked exactly on a hand-set linear."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import methods
from bench.models import tiny_llama
from methods._base import count_parameters, freeze
from methods.full_ft import FullFtConfig

METHOD = methods.get("full_ft")
IDS = torch.tensor([[1, 40, 41, 42, 2, 0]])


class _OneLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([[1.0, 2.0]]))

    def forward(self, x):
        return self.lin(x).sum()


def test_apply_unfreezes_everything_and_merge_is_a_no_op():
    model = tiny_llama(0)
    freeze(model)
    assert METHOD.apply(model, FullFtConfig()) is model
    assert count_parameters(model, trainable_only=True) == count_parameters(model)
    before = {n: p.clone() for n, p in model.named_parameters()}
    assert METHOD.merge(model) is model
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_one_adamw_step_exact():
    # grad = x = [1, -2]. AdamW (decoupled decay): W <- W (1 - lr wd), then W -= lr g / (|g| + eps)
    # on the first step (bias-corrected moments: m = g, v = g^2). lr 0.1, wd 0.5, W = [1, 2]:
    # [0.95, 1.9] - 0.1 * [1, -1] = [0.85, 2.0] (eps = 1e-8 moves it by ~1e-9).
    model = _OneLinear()
    cfg = FullFtConfig(lr=0.1)
    METHOD.apply(model, cfg)
    opt = METHOD.optimizer(model, cfg, weight_decay=0.5)
    assert isinstance(opt, torch.optim.AdamW)
    assert (opt.param_groups[0]["lr"], opt.param_groups[0]["weight_decay"]) == (0.1, 0.5)
    model(torch.tensor([1.0, -2.0])).backward()
    opt.step()
    torch.testing.assert_close(model.lin.weight, torch.tensor([[0.85, 2.0]]), rtol=0, atol=1e-7)  # fp32 rounding


def test_save_and_load_the_whole_model(tmp_path):
    model = METHOD.apply(tiny_llama(0), FullFtConfig())
    with torch.no_grad():
        model.lm_head.weight.add_(0.5)  # differ from the base
        logits = model(input_ids=IDS).logits
    METHOD.save(model, str(tmp_path))
    loaded = METHOD.load(tiny_llama(1), str(tmp_path))
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=IDS).logits, logits, rtol=0, atol=0)


@pytest.mark.parametrize("lr", [0.0, -1e-5])
def test_config_rejects_a_non_positive_lr(lr):
    with pytest.raises(ValueError, match=rf"^full_ft\.lr={lr!r} must be > 0 \(e\.g\. 2e-5\)"):
        FullFtConfig(lr=lr)
    assert FullFtConfig().lr == 2e-5
