"""LoRA and its DoRA variant: peft wiring, exact merges with hand-set weights, save/load details."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from peft import PeftModel

import methods
from bench.errors import UsageError
from bench.models import tiny_bert, tiny_llama, tiny_tokenizer
from methods._base import find_targets
from methods.dora import DoraConfig, DoraMethod
from methods.lora import LoraMethod, LoraMethodConfig

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


def test_dora_is_a_variant_of_lora():
    assert issubclass(DoraMethod, LoraMethod) and issubclass(DoraConfig, LoraMethodConfig)
    assert [f.name for f in dataclasses.fields(DoraConfig)] == [f.name for f in dataclasses.fields(LoraMethodConfig)]
    assert (LoraMethodConfig().lr, DoraConfig().lr) == (3e-4, 2e-4)
    with pytest.raises(ValueError, match=r"^dora\.r=0 "):
        DoraConfig(r=0)
    with pytest.raises(ValueError, match=r"^lora\.r=0 "):
        LoraMethodConfig(r=0)


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


def test_dora_merge_with_hand_set_weights_is_magnitude_times_direction():
    cfg = DoraConfig(r=4, alpha=8)
    w0 = tiny_llama(0).get_submodule(LAYER).weight.detach().clone()
    model = methods.get("dora").apply(tiny_llama(0), cfg)
    layer = lora_layer(model)
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


def test_loading_with_the_other_variant_is_an_error(tmp_path):
    model = methods.get("dora").apply(tiny_llama(0), DoraConfig())
    methods.get("dora").save(model, str(tmp_path))
    with pytest.raises(UsageError, match="method 'dora'"):
        methods.get("lora").load(tiny_llama(0), str(tmp_path))


@pytest.mark.parametrize(
    ("field", "value"),
    [("r", 0), ("r", 2.5), ("alpha", -1), ("dropout", 1.0), ("lr", float("nan")), ("target_modules", ())],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=rf"^lora\.{field}="):
        LoraMethodConfig(**{field: value})
