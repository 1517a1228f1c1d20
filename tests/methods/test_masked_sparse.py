"""Masked sparse tuning: the mask holds bit for bit, through the gradient and through weight decay."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

import methods
from bench.errors import UsageError
from bench.models import tiny_llama, tiny_tokenizer
from methods._base import count_parameters, find_targets, freeze
from methods._selection import gradient_scores, layer_seed, select_indices
from methods.masked_sparse import INDICES, MaskedAdamW, MaskedSparseConfig, MaskedSparseLinear

TEXTS = ["the cat sat on the mat", "hi"]
K = 2
LR = 1e-2
WEIGHT_DECAY = 0.1
STEPS = 5

method = methods.get("masked_sparse")


@pytest.fixture(scope="module")
def batch():
    enc = tiny_tokenizer()(TEXTS, padding=True, return_tensors="pt")
    labels = enc.input_ids.masked_fill(enc.attention_mask == 0, -100)
    return {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask, "labels": labels}


def masked_layers(model) -> dict[str, MaskedSparseLinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, MaskedSparseLinear)}


def mask_of(layer: MaskedSparseLinear) -> torch.Tensor:
    idx = getattr(layer, INDICES)
    return torch.zeros_like(layer.weight, dtype=torch.bool).scatter_(1, idx, True)


def train(model, opt, batch, steps=STEPS):
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        opt.step()


def test_selection_is_neuroadas_magnitude_selection():
    cfg = MaskedSparseConfig(k=K)
    base = tiny_llama(0)
    model = method.apply(tiny_llama(0), cfg)
    layers = masked_layers(model)
    targets = find_targets(base, None)
    assert sorted(layers) == [n for n, _ in targets]
    for name, linear in targets:
        assert torch.equal(getattr(layers[name], INDICES), select_indices(linear.weight, K, "magnitude"))


@pytest.mark.skipif("neuroada" not in methods.names(), reason="neuroada is not registered")
@pytest.mark.parametrize("selection", ["magnitude", "random", "reverse", "gradient"])
def test_selection_equals_neuroadas_own(selection, batch):
    """The comparison is only fair if both methods train exactly the same entries."""
    neuroada = methods.get("neuroada")
    ours = method.apply(tiny_llama(0), MaskedSparseConfig(k=K, selection=selection, seed=5), calibration=[batch])
    cfg = dataclasses.replace(neuroada.config_cls(), k=K, selection=selection, seed=5)
    theirs = dict(neuroada.apply(tiny_llama(0), cfg, calibration=[batch]).named_modules())
    for name, layer in masked_layers(ours).items():
        assert torch.equal(getattr(layer, INDICES), theirs[name].neuroada_idx.long()), name


def test_random_and_gradient_selection_use_the_shared_functions(batch):
    cfg = MaskedSparseConfig(k=K, selection="random", seed=3)
    layers = masked_layers(method.apply(tiny_llama(0), cfg))
    for name, layer in layers.items():
        expected = select_indices(layer.weight, K, "random", seed=layer_seed(3, name))
        assert torch.equal(getattr(layer, INDICES), expected), name
    assert not torch.equal(*[getattr(layers[f"model.layers.{i}.self_attn.q_proj"], INDICES) for i in (0, 1)])

    base = tiny_llama(0)
    weights = {n: m.weight for n, m in find_targets(base, None)}
    scores = gradient_scores(base, weights, [batch])
    model = method.apply(tiny_llama(0), MaskedSparseConfig(k=K, selection="gradient"), calibration=[batch])
    for name, layer in masked_layers(model).items():
        expected = select_indices(weights[name], K, "gradient", score=scores[name])
        assert torch.equal(getattr(layer, INDICES), expected), name
    with pytest.raises(UsageError, match="calibration"):
        method.apply(tiny_llama(0), MaskedSparseConfig(selection="gradient"))


def test_gradient_is_exactly_zero_outside_the_mask_and_exact_inside(batch):
    model = method.apply(tiny_llama(0), MaskedSparseConfig(k=K))
    model(**batch).loss.backward()
    # The same graph with dense gradients on the same weights, for the values inside the mask.
    dense = tiny_llama(0)
    freeze(dense)
    for _, linear in find_targets(dense, None):
        linear.weight.requires_grad_(True)
    dense(**batch).loss.backward()
    for name, layer in masked_layers(model).items():
        mask = mask_of(layer)
        grad = layer.weight.grad
        assert torch.equal(grad[~mask], torch.zeros_like(grad[~mask])), name
        assert torch.equal(grad[mask], dense.get_submodule(name).weight.grad[mask]), name
        assert grad[mask].abs().sum() > 0, name


def test_adamw_with_weight_decay_changes_only_masked_entries(batch):
    model = method.apply(tiny_llama(0), MaskedSparseConfig(k=K))
    before = {n: m.weight.detach().clone() for n, m in masked_layers(model).items()}
    opt = method.optimizer(model, dataclasses.replace(MaskedSparseConfig(k=K), lr=LR), weight_decay=WEIGHT_DECAY)
    assert isinstance(opt, MaskedAdamW)
    train(model, opt, batch)
    for name, layer in masked_layers(model).items():
        mask, w = mask_of(layer), layer.weight.detach()
        assert torch.equal(w[~mask], before[name][~mask]), f"{name}: entries outside the mask changed"
        assert (w[mask] != before[name][mask]).all(), f"{name}: some selected entries did not change"


def test_plain_adamw_decay_would_change_entries_outside_the_mask(batch):
    """Why MaskedAdamW exists: torch's decoupled decay shrinks every entry, masked gradient or not."""
    model = method.apply(tiny_llama(0), MaskedSparseConfig(k=K))
    layers = masked_layers(model)
    before = {n: m.weight.detach().clone() for n, m in layers.items()}
    train(model, torch.optim.AdamW([m.weight for m in layers.values()], lr=LR, weight_decay=WEIGHT_DECAY), batch)
    outside = sum(int((m.weight.detach() != before[n])[~mask_of(m)].sum()) for n, m in layers.items())
    assert outside > 0


def test_masked_decay_matches_torch_decay_at_the_selected_entries(batch):
    """At the selected entries MaskedAdamW is torch's AdamW bit for bit (same decay, same order).

    One step only: afterwards torch's decay has moved the unselected entries too, so the two
    models see different gradients.
    """
    cfg = dataclasses.replace(MaskedSparseConfig(k=K), lr=LR)
    ours, plain = method.apply(tiny_llama(0), cfg), method.apply(tiny_llama(0), cfg)
    train(ours, method.optimizer(ours, cfg, weight_decay=WEIGHT_DECAY), batch, steps=1)
    plain_layers = masked_layers(plain)
    weights = [m.weight for m in plain_layers.values()]
    train(plain, torch.optim.AdamW(weights, lr=LR, weight_decay=WEIGHT_DECAY), batch, steps=1)
    for name, layer in masked_layers(ours).items():
        mask = mask_of(layer)
        assert torch.equal(layer.weight.detach()[mask], plain_layers[name].weight.detach()[mask]), name


def test_count_trainable_is_selected_entries_while_whole_weights_are_held():
    model = method.apply(tiny_llama(0), MaskedSparseConfig(k=K))
    targets = [m for _, m in find_targets(tiny_llama(0), None)]
    assert method.count_trainable(model) == K * sum(m.out_features for m in targets)
    assert count_parameters(model, trainable_only=True) == sum(m.weight.numel() for m in targets)


def test_delta_weight_merge_and_unwrap(batch):
    cfg = dataclasses.replace(MaskedSparseConfig(k=K), lr=LR)
    base = tiny_llama(0)
    model = method.apply(tiny_llama(0), cfg)
    train(model, method.optimizer(model, cfg, weight_decay=0.0), batch, steps=2)
    layers = masked_layers(model)
    for name, layer in layers.items():
        delta = layer.delta_weight()
        assert torch.equal(delta[~mask_of(layer)], torch.zeros_like(delta[~mask_of(layer)]))
        # W0 + (W - W0) rounds back to W within an ulp of the entry (|W| < 1 here).
        torch.testing.assert_close(base.get_submodule(name).weight + delta, layer.weight.detach(), atol=1e-7, rtol=0)
    merged = method.merge(model)
    assert not masked_layers(merged)
    assert all(type(merged.get_submodule(n)) is torch.nn.Linear for n in layers)
    # The mask is gone with the wrapper: gradients are dense again.
    merged(**batch).loss.backward()
    name = next(iter(layers))
    assert (merged.get_submodule(name).weight.grad != 0).sum() > K * merged.get_submodule(name).out_features


def test_mask_survives_deepcopy(batch):
    model = copy.deepcopy(method.apply(tiny_llama(0), MaskedSparseConfig(k=K)))
    model(**batch).loss.backward()
    for name, layer in masked_layers(model).items():
        assert torch.equal(layer.weight.grad[~mask_of(layer)], torch.zeros_like(layer.weight.grad[~mask_of(layer)]))
        assert name


def test_apply_twice_and_load_on_another_base_are_errors(batch, tmp_path):
    model = method.apply(tiny_llama(0), MaskedSparseConfig())
    with pytest.raises(UsageError, match="already applied"):
        method.apply(model, MaskedSparseConfig())
    method.save(model, str(tmp_path))
    with pytest.raises(UsageError, match="differ from the base"):
        method.load(tiny_llama(1), str(tmp_path))


@pytest.mark.parametrize(
    ("field", "value"),
    [("k", 0), ("k", 1.5), ("selection", "largest"), ("seed", "x"), ("lr", 0.0), ("target_modules", ())],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=rf"masked_sparse\.{field}="):
        MaskedSparseConfig(**{field: value})
