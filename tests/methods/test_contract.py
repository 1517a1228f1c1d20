"""The contract every registered method must keep (peft's ``test_custom_models.py`` table style).

Parametrized over the built-in adapters (``methods.adapters()``) and the peft presets
(``methods.presets()``, run by ``peft_config``), and two tiny in-code models (a causal LLaMA and
a BERT classifier), fp32 on CPU with fixed seeds:

- identity at init: the adapted model's logits equal the base model's exactly (where the
  method's init is an identity; ``NOT_IDENTITY`` says why not for the others);
- three optimizer steps (``method.optimizer(model, cfg, weight_decay=0.1)``) change only
  trainable parameters, and at least one;
- ``merge`` leaves a plain transformers model whose outputs match the trained model's;
- save, then load onto a freshly built base, gives identical outputs;
- the trainable count equals the method's budget formula, computed here from the target shapes;
- every config instantiates with defaults and rejects a bad value, naming the field.

A new method or preset needs one line in ``FORMULAS``; the rest applies to it unchanged.
"""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
from transformers import PreTrainedModel

import methods
from bench.models import tiny_bert, tiny_llama, tiny_tokenizer
from methods._base import count_parameters, find_targets
from methods.peft_config import preset_info

TEXTS = ["the cat sat on the mat", "hi"]
MODELS = {
    "llama": lambda: tiny_llama(0),
    "bert": lambda: tiny_bert(0, num_labels=2),
}
# lr for the training steps of these tests: large enough that three steps move every method's
# outputs well past the merge tolerance, whatever the method's own default.
TRAIN_LR = 1e-2
# IA³ and VeRA train scaling vectors: on the tiny BERT three steps at 1e-2 move its small logits
# by ~2e-4 only (observed), so they train ten times faster here.
TRAIN_LR_OF = {"ia3": 1e-1, "vera": 1e-1}
STEPS = 3
WEIGHT_DECAY = 0.1  # non-zero so that masked weight decay is exercised
# Merged and unmerged forwards sum the same terms in a different order (W x + s B A x against
# (W + s B A) x): fp32 rounding on O(1) logits, ~2e-7 observed.
MERGE_ATOL, MERGE_RTOL = 1e-5, 1e-5
# Outputs after training must move at least this much from the base's (observed: > 0.1).
MIN_CHANGE = 1e-3


def _targets(model, cfg):
    return [m for _, m in find_targets(model, getattr(cfg, "target_modules", None))]


def _lora_budget(model, cfg) -> int:
    return sum(cfg.r * (m.in_features + m.out_features) for m in _targets(model, cfg))


def _peft_targets(model, cfg, kind: str | None = None):
    """A preset's target linears (``targets: peft``: IA³'s per-architecture defaults)."""
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as FEEDFORWARD,
    )
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as IA3_TARGETS,
    )

    model_type = model.config.model_type
    feedforward = FEEDFORWARD[model_type]
    names = IA3_TARGETS[model_type] if kind is None else feedforward if kind == "ff" else None
    if kind == "attn":
        names = [t for t in IA3_TARGETS[model_type] if t not in feedforward]
    hits = {m for _, m in find_targets(model, names)}
    if kind == "attn":  # a feed-forward suffix also matching attention layers counts them as feed-forward
        hits -= {m for _, m in find_targets(model, feedforward)}
    return list(hits)


def _lokr_budget(model, cfg) -> int:
    from peft.tuners.lokr.layer import factorization

    f, r, total = cfg.peft["decompose_factor"], cfg.peft["r"], 0
    for m in _targets(model, cfg):
        (a, c), (b, d) = factorization(m.out_features, f), factorization(m.in_features, f)
        total += a * b + (c * d if r >= max(c, d) / 2 else r * (c + d))
    return total


def _oft_budget(model, cfg) -> int:
    b = cfg.peft["oft_block_size"]
    return sum(m.in_features // b * b * (b - 1) // 2 for m in _targets(model, cfg))


# The parameter-budget formula of each method, from the target layers' shapes of the base model
# (the presets': as their files and `bench ls methods` write them).
FORMULAS = {
    "full_ft": lambda model, cfg: count_parameters(model),
    "lora": _lora_budget,
    "dora": lambda model, cfg: _lora_budget(model, cfg) + sum(m.out_features for m in _targets(model, cfg)),
    "masked_sparse": lambda model, cfg: cfg.k * sum(m.out_features for m in _targets(model, cfg)),
    "neuroada": lambda model, cfg: cfg.k * sum(m.out_features for m in _targets(model, cfg)),
    "shira": lambda model, cfg: cfg.peft["r"] * sum(m.in_features + m.out_features for m in _targets(model, cfg)),
    "pissa": lambda model, cfg: cfg.peft["r"] * sum(m.in_features + m.out_features for m in _targets(model, cfg)),
    "loha": lambda model, cfg: 2 * cfg.peft["r"] * sum(m.in_features + m.out_features for m in _targets(model, cfg)),
    "lokr": _lokr_budget,
    "oft": _oft_budget,
    "vera": lambda model, cfg: sum(cfg.peft["r"] + m.out_features for m in _targets(model, cfg)),
    "fourierft": lambda model, cfg: cfg.peft["n_frequency"] * len(_targets(model, cfg)),
    "supertuning": lambda model, cfg: sum(
        int(m.in_features * m.out_features * (1 - cfg.peft["sparsity"])) for m in _targets(model, cfg)
    ),
    "ia3": lambda model, cfg: (
        sum(m.out_features for m in _peft_targets(model, cfg, "attn"))
        + sum(m.in_features for m in _peft_targets(model, cfg, "ff"))
    ),
}
# Presets whose init is not an identity, and why (their files say identity_at_init: false).
NOT_IDENTITY = {
    "pissa": "W_res + B A recomposes W up to fp32 rounding",
    "fourierft": "a standard normal spectrum (the paper's and peft's default init)",
}
PISSA_ATOL = 1e-5  # the SVD's rounding on O(1) logits: ~2e-7 observed
# Values that every config must reject, for the fields a config has.
BAD_VALUES = {"lr": -1.0, "k": 0, "r": 0, "alpha": 0.0, "dropout": 1.5}


@pytest.fixture(scope="module")
def batches():
    llama_tok, bert_tok = tiny_tokenizer(), tiny_tokenizer(pair_template=True)
    enc = llama_tok(TEXTS, padding=True, return_tensors="pt")
    llama = {
        "input_ids": enc.input_ids,
        "attention_mask": enc.attention_mask,
        "labels": enc.input_ids.masked_fill(enc.attention_mask == 0, -100),
    }
    enc = bert_tok(TEXTS, padding=True, return_tensors="pt")
    bert = {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask, "labels": torch.tensor([0, 1])}
    return {"llama": llama, "bert": bert}


def logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def train(method, model, cfg, batch, steps: int = STEPS) -> None:
    """A few AdamW steps in eval mode (no dropout), so every run is deterministic."""
    opt = method.optimizer(model, cfg, weight_decay=WEIGHT_DECAY)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        opt.step()
    opt.zero_grad(set_to_none=True)


def trainable_count(method, model) -> int:
    """Methods that hold more than they train (masked sparse) say so with ``count_trainable``."""
    count = getattr(method, "count_trainable", None)
    return count(model) if count is not None else count_parameters(model, trainable_only=True)


def method_and_config(name: str):
    """``(method, default config)`` of a built-in method or a peft preset."""
    (choice,) = methods.choose(name)
    method = methods.get(choice.method)
    return method, method.config_cls(**choice.config)


def adapted(name: str, kind: str):
    """``(method, train config, adapted model)`` with the method's defaults and ``TRAIN_LR``."""
    method, cfg = method_and_config(name)
    cfg = dataclasses.replace(cfg, lr=TRAIN_LR_OF.get(name, TRAIN_LR))
    return method, cfg, method.apply(MODELS[kind](), cfg)


def snapshot(model) -> dict[str, torch.Tensor]:
    state = {f"param:{n}": p.detach().clone() for n, p in model.named_parameters()}
    state.update({f"buffer:{n}": b.detach().clone() for n, b in model.named_buffers()})
    return state


# base (the frozen backbone) trains no adapter: tests/methods/test_base.py
METHOD_NAMES = methods.adapters() + methods.presets()
KINDS = list(MODELS)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", METHOD_NAMES)
def test_identity_at_init(name, kind, batches):
    method, cfg, model = adapted(name, kind)
    assert trainable_count(method, model) > 0
    out, base = logits(model, batches[kind]), logits(MODELS[kind](), batches[kind])
    if name in methods.presets():
        assert preset_info(name)["identity_at_init"] is (name not in NOT_IDENTITY)
    if name == "pissa":
        torch.testing.assert_close(out, base, atol=PISSA_ATOL, rtol=0)
    elif name == "fourierft":
        assert (out - base).abs().max() > MIN_CHANGE
    else:
        assert torch.equal(out, base)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", METHOD_NAMES)
def test_only_trainable_parameters_change(name, kind, batches):
    method, cfg, model = adapted(name, kind)
    trainable = {f"param:{n}" for n, p in model.named_parameters() if p.requires_grad}
    before = snapshot(model)
    train(method, model, cfg, batches[kind])
    after = snapshot(model)
    assert after.keys() == before.keys(), "training added or removed parameters or buffers"
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed, "three optimizer steps changed nothing"
    assert changed <= trainable, f"frozen parameters or buffers changed: {sorted(changed - trainable)[:5]}"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", METHOD_NAMES)
def test_merge_gives_plain_model_with_same_outputs(name, kind, batches):
    method, cfg, model = adapted(name, kind)
    train(method, model, cfg, batches[kind])
    trained = logits(model, batches[kind])
    base = MODELS[kind]()

    merged = method.merge(model)

    assert isinstance(merged, PreTrainedModel)
    assert type(merged) is type(base)
    modules = {type(m).__module__ for m in merged.modules()}
    foreign = {mod for mod in modules if mod.split(".")[0] not in ("torch", "transformers")}
    assert not foreign, f"modules from {foreign} left after merge"
    assert set(merged.state_dict()) == set(base.state_dict())
    assert {n for n, _ in merged.named_buffers()} == {n for n, _ in base.named_buffers()}
    out = logits(merged, batches[kind])
    torch.testing.assert_close(out, trained, atol=MERGE_ATOL, rtol=MERGE_RTOL)
    assert (out - logits(base, batches[kind])).abs().max() > MIN_CHANGE
    # Merging again is a no-op (never a second add).
    torch.testing.assert_close(logits(method.merge(merged), batches[kind]), out, atol=0, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", METHOD_NAMES)
def test_save_then_load_on_fresh_base_is_identical(name, kind, batches, tmp_path):
    method, cfg, model = adapted(name, kind)
    train(method, model, cfg, batches[kind])
    trained = logits(model, batches[kind])
    method.save(model, str(tmp_path / name))
    loaded = method.load(MODELS[kind](), str(tmp_path / name))
    assert torch.equal(logits(loaded, batches[kind]), trained)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", METHOD_NAMES)
def test_trainable_count_matches_formula(name, kind):
    if name not in FORMULAS:
        pytest.fail(f"add method '{name}' to FORMULAS with its parameter-budget formula")
    method, cfg = method_and_config(name)
    expected = FORMULAS[name](MODELS[kind](), cfg)
    assert trainable_count(method, method.apply(MODELS[kind](), cfg)) == expected


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_config_defaults_and_validation(name):
    method, cfg = method_and_config(name)
    cfg_cls = method.config_cls
    assert dataclasses.is_dataclass(cfg_cls) and cfg_cls.__dataclass_params__.frozen
    assert cfg.lr > 0, "every config has a positive default lr"
    fields = {f.name for f in dataclasses.fields(cfg_cls)}
    checked = fields & BAD_VALUES.keys()
    assert "lr" in checked
    for field in sorted(checked):
        with pytest.raises(ValueError) as err:
            dataclasses.replace(cfg, **{field: BAD_VALUES[field]})
        assert re.search(rf"(^|[^A-Za-z0-9_]){field}\b", str(err.value)), (
            f"the error for {field}={BAD_VALUES[field]!r} does not name the field: {err.value}"
        )
