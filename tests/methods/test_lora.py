"""LoRA (``methods/lora.py``): peft wiring, exact merges with hand-set weights, save/load details.

The parts that DoRA shares (the head saved with the adapter) run for both; DoRA's own tests are in
``test_dora.py``.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from peft import PeftModel
from torch import nn

import methods
from bench.models import tiny_bert, tiny_llama, tiny_tokenizer
from methods._base import find_targets
from methods.dora import DoraConfig
from methods.lora import LoraMethodConfig

TEXTS = ["the cat sat on the mat", "hi"]
LAYER = "model.layers.0.self_attn.q_proj"


@pytest.fixture(scope="module")
def bert_batch():
    enc = tiny_tokenizer(pair_template=True)(TEXTS, padding=True, return_tensors="pt")
    return {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask, "labels": torch.tensor([0, 1])}


def lora_layer(model, name=LAYER):
    return model.base_model.model.get_submodule(name)


def set_dummy_weights(layer, seed: int = 1) -> None:
    """Non-zero ``B`` (and a perturbed DoRA magnitude) so that the adapter changes the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        b = layer.lora_B["default"].weight
        b.copy_(torch.randn(b.shape, generator=gen) * 0.1)
        if layer.lora_magnitude_vector:
            mag = layer.lora_magnitude_vector["default"].weight
            mag.mul_(1 + 0.1 * torch.rand(mag.shape, generator=gen))


def test_peft_config_matches_ours():
    cfg = LoraMethodConfig(r=4, alpha=8, dropout=0.05, target_modules=("q_proj", "v_proj"))
    model = tiny_llama(0)
    pc = methods.get("lora").peft_config(model, cfg)
    assert (pc.r, pc.lora_alpha, pc.lora_dropout, pc.use_dora, pc.bias) == (4, 8, 0.05, False, "none")
    assert set(pc.target_modules) == {n for n, _ in find_targets(model, ("q_proj", "v_proj"))}
    assert methods.get("dora").peft_config(model, DoraConfig()).use_dora is True


class _OneLinear(nn.Module):
    """One bias-free 2x2 linear named ``lin`` with hand-set weights."""

    def __init__(self, weight: list[list[float]]) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor(weight))

    def forward(self, x):
        return self.lin(x)


def test_lora_hand_set_2x2_forward_and_merge_exact():
    # W = [[1, 2], [3, 4]], r = 1, alpha = 2 (scale 2), A = [[1, -1]], B = [[0.5], [1]]:
    # B A = [[0.5, -0.5], [1, -1]], W + 2 B A = [[2, 1], [5, 2]].
    cfg = LoraMethodConfig(r=1, alpha=2.0, target_modules=("lin",))
    model = methods.get("lora").apply(_OneLinear([[1.0, 2.0], [3.0, 4.0]]), cfg)
    layer = model.base_model.model.lin
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(torch.tensor([[1.0, -1.0]]))
        layer.lora_B["default"].weight.copy_(torch.tensor([[0.5], [1.0]]))
    expected = torch.tensor([[2.0, 1.0], [5.0, 2.0]])
    with torch.no_grad():
        torch.testing.assert_close(model(torch.eye(2)), expected.t(), rtol=0, atol=0)  # row n: W' e_n
    merged = methods.get("lora").merge(model)
    assert type(merged) is _OneLinear and type(merged.lin) is nn.Linear
    torch.testing.assert_close(merged.lin.weight, expected, rtol=0, atol=0)
    assert methods.get("lora").merge(merged) is merged  # nothing left to fold in


def test_lora_merge_with_hand_set_weights_is_w_plus_scaled_ba():
    cfg = LoraMethodConfig(r=4, alpha=8)
    w0 = tiny_llama(0).get_submodule(LAYER).weight.detach().clone()
    model = methods.get("lora").apply(tiny_llama(0), cfg)
    layer = lora_layer(model)
    set_dummy_weights(layer)
    a, b = layer.lora_A["default"].weight.detach(), layer.lora_B["default"].weight.detach()
    merged = methods.get("lora").merge(model)
    expected = w0 + (cfg.alpha / cfg.r) * (b @ a)
    torch.testing.assert_close(merged.get_submodule(LAYER).weight, expected, atol=1e-7, rtol=1e-6)  # fp32 rounding


@pytest.mark.parametrize("name", ["lora", "dora"])
def test_unfrozen_head_is_saved_and_loaded_with_the_adapter(name, bert_batch, tmp_path):
    """The runner unfreezes a classification head after apply; peft's adapter file alone drops it."""
    method = methods.get(name)
    cfg = dataclasses.replace(method.config_cls(), lr=1e-2)
    model = method.apply(tiny_bert(0), cfg)
    for p in model.base_model.model.classifier.parameters():
        p.requires_grad_(True)
    opt = method.optimizer(model, cfg, weight_decay=0.0)
    for _ in range(2):
        opt.zero_grad()
        model(**bert_batch).loss.backward()
        opt.step()
    inputs = {k: v for k, v in bert_batch.items() if k != "labels"}
    with torch.no_grad():
        trained = model(**inputs).logits
    method.save(model, str(tmp_path))
    loaded = method.load(tiny_bert(0), str(tmp_path))
    assert isinstance(loaded, PeftModel)
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).logits, trained)
    assert not any(p.requires_grad for p in loaded.parameters()), "a loaded adapter is for inference"


@pytest.mark.parametrize(
    ("field", "value"),
    [("r", 0), ("r", 2.5), ("alpha", -1), ("dropout", 1.0), ("lr", float("nan")), ("target_modules", ())],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=rf"^lora\.{field}="):
        LoraMethodConfig(**{field: value})
