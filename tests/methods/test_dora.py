"""DoRA (``methods/dora.py``): a variant of LoRA, its magnitude init and its merge, exact on hand-set
weights, and the adapter it saves (which LoRA refuses to load)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

import methods
from bench.errors import UsageError
from bench.models import tiny_llama
from methods.dora import DoraConfig, DoraMethod
from methods.lora import LoraMethod, LoraMethodConfig

LAYER = "model.layers.0.self_attn.q_proj"
SQRT2 = math.sqrt(2.0)


class _OneLinear(nn.Module):
    """One bias-free 2x2 linear named ``lin`` with hand-set weights."""

    def __init__(self, weight: list[list[float]]) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor(weight))

    def forward(self, x):
        return self.lin(x)


def set_dummy_weights(layer, seed: int = 1) -> None:
    """Non-zero ``B`` and a perturbed magnitude so that the adapter changes the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        b = layer.lora_B["default"].weight
        b.copy_(torch.randn(b.shape, generator=gen) * 0.1)
        mag = layer.lora_magnitude_vector["default"].weight
        mag.mul_(1 + 0.1 * torch.rand(mag.shape, generator=gen))


def test_dora_is_a_variant_of_lora():
    assert issubclass(DoraMethod, LoraMethod) and issubclass(DoraConfig, LoraMethodConfig)
    assert [f.name for f in dataclasses.fields(DoraConfig)] == [f.name for f in dataclasses.fields(LoraMethodConfig)]
    assert (LoraMethodConfig().lr, DoraConfig().lr) == (3e-4, 2e-4)
    with pytest.raises(ValueError, match=r"^dora\.r=0 "):
        DoraConfig(r=0)
    with pytest.raises(ValueError, match=r"^lora\.r=0 "):
        LoraMethodConfig(r=0)


def test_dora_hand_set_2x2_exact():
    # W = [[3, 4], [0, 1]]: the magnitude starts at the row norms [5, 1]. r = 1, alpha = 1 (scale 1),
    # A = [[1, 0]], B = [[0], [1]]: W + B A = [[3, 4], [1, 1]], row norms [5, sqrt 2]. With the
    # magnitude set to [10, 2]: W' = [[10 * 3/5, 10 * 4/5], [2/sqrt 2, 2/sqrt 2]] = [[6, 8], [sqrt 2, sqrt 2]].
    cfg = DoraConfig(r=1, alpha=1.0, target_modules=("lin",))
    model = methods.get("dora").apply(_OneLinear([[3.0, 4.0], [0.0, 1.0]]), cfg)
    layer = model.base_model.model.lin
    magnitude = layer.lora_magnitude_vector["default"].weight
    torch.testing.assert_close(magnitude, torch.tensor([5.0, 1.0]), rtol=0, atol=0)
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(torch.tensor([[1.0, 0.0]]))
        layer.lora_B["default"].weight.copy_(torch.tensor([[0.0], [1.0]]))
        magnitude.copy_(torch.tensor([10.0, 2.0]))
    expected = torch.tensor([[6.0, 8.0], [SQRT2, SQRT2]])
    with torch.no_grad():
        torch.testing.assert_close(model(torch.eye(2)), expected.t(), rtol=1e-6, atol=0)  # fp32 norm and division
    merged = methods.get("dora").merge(model)
    assert type(merged) is _OneLinear and type(merged.lin) is nn.Linear
    torch.testing.assert_close(merged.lin.weight, expected, rtol=1e-6, atol=0)


def test_dora_merge_with_hand_set_weights_is_magnitude_times_direction():
    cfg = DoraConfig(r=4, alpha=8)
    w0 = tiny_llama(0).get_submodule(LAYER).weight.detach().clone()
    model = methods.get("dora").apply(tiny_llama(0), cfg)
    layer = model.base_model.model.get_submodule(LAYER)
    # At init the magnitude is the row norm of W, so that W' = W.
    magnitude = layer.lora_magnitude_vector["default"].weight
    torch.testing.assert_close(magnitude, w0.norm(dim=1), atol=0, rtol=1e-6)
    set_dummy_weights(layer)
    a, b = layer.lora_A["default"].weight.detach(), layer.lora_B["default"].weight.detach()
    m = layer.lora_magnitude_vector["default"].weight.detach().clone()
    merged = methods.get("dora").merge(model)
    direction = w0 + (cfg.alpha / cfg.r) * (b @ a)
    expected = (m / direction.norm(dim=1)).unsqueeze(1) * direction
    torch.testing.assert_close(merged.get_submodule(LAYER).weight, expected, atol=1e-6, rtol=1e-5)  # fp32 rounding


def test_loading_with_the_other_variant_is_an_error(tmp_path):
    model = methods.get("dora").apply(tiny_llama(0), DoraConfig())
    methods.get("dora").save(model, str(tmp_path))
    with pytest.raises(UsageError, match="method 'dora'"):
        methods.get("lora").load(tiny_llama(0), str(tmp_path))


def test_budget_is_lora_plus_one_magnitude_per_output_row():
    cfg = DoraConfig(r=2, target_modules=("lin",))
    model = methods.get("dora").apply(_OneLinear([[1.0, 0.0], [0.0, 1.0]]), cfg)
    trainable = {n.split("lin.", 1)[1]: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    # r * (d_in + d_out) + d_out = 2 * (2 + 2) + 2
    assert trainable == {
        "lora_A.default.weight": 4,
        "lora_B.default.weight": 4,
        "lora_magnitude_vector.default.weight": 2,
    }
