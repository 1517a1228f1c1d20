"""``base``, the frozen backbone: nothing of the backbone trains; on a classification model the
runner trains the new head alone (a linear probe); the record says which."""

from __future__ import annotations

import json

import pytest
import torch

import methods
from bench import runner
from bench.config import Budget, budget_for
from bench.models import tiny_bert, tiny_llama, tiny_tokenizer
from bench.plan import RunRequest, plan
from bench.train import encode_train, train


def test_base_is_registered_first_and_is_no_adapter():
    assert methods.names()[0] == "base"
    assert "base" not in methods.adapters()
    assert set(methods.adapters()) == set(methods.builtins()) - {"base"}


def test_apply_freezes_every_parameter_and_changes_no_output():
    model = tiny_llama(0)
    ids = torch.randint(5, 100, (2, 9))
    before = model(input_ids=ids).logits
    out = methods.get("base").apply(model, methods.get("base").config_cls())
    assert not [n for n, p in out.named_parameters() if p.requires_grad]
    assert torch.equal(out(input_ids=ids).logits, before)
    assert methods.get("base").merge(out) is out


def test_only_the_head_trains_on_a_classification_model():
    import tasks

    task = tasks.get("toy_cls")
    method = methods.get("base")
    model = method.apply(tiny_bert(0, num_labels=task.num_labels), method.config_cls())
    heads = runner.head_parameter_names(model)
    for name, p in model.named_parameters():  # as the runner does for every method
        p.requires_grad_(name in heads)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    tok = tiny_tokenizer(pair_template=True)
    budget = Budget(max_steps=3, batch_size=2, micro_batch_size=2, max_length=32, eval_limit=4, eval_batch_size=4)
    examples = encode_train(task, tok, task.load("train", None)[:8], budget)
    optimizer = method.optimizer(model, method.config_cls(), 0.0)
    train(model, optimizer, examples, budget, seed=0, pad_id=tok.pad_token_id, progress=False)
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    assert changed and changed == set(heads)
    head_params = sum(before[n].numel() for n in heads)
    assert runner.training_kind(head_params, head_params) == "linear-probe"
    assert runner.training_kind(0, 0) == "zero-shot" and runner.training_kind(head_params + 1, head_params) == (
        "fine-tuned"
    )


def test_the_record_says_what_trained(tmp_path):
    request = RunRequest(
        methods="base",
        tasks="toy_sum,toy_cls",
        budget=budget_for("smoke"),
        smoke=True,
        output_dir=str(tmp_path),
        threads=1,
        device="cpu",
        progress=False,
    )
    for job in plan(request):
        runner.run_one(job)
    causal = json.loads((tmp_path / "base--toy_sum--seed0.json").read_text())
    assert causal["result"]["status"] == "ok"
    assert causal["result"]["training"] == "zero-shot"
    assert causal["cost"]["trainable_params"] == 0
    assert causal["result"]["losses"] == [] and causal["result"]["samples_seen"] == 0
    probe = json.loads((tmp_path / "base--toy_cls--seed0.json").read_text())
    assert probe["result"]["training"] == "linear-probe"
    assert probe["cost"]["trainable_params"] == probe["cost"]["head_params"] > 0
    assert len(probe["result"]["losses"]) == budget_for("smoke").max_steps


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_config_rejects_a_bad_lr(bad):
    with pytest.raises(ValueError, match="base.lr"):
        methods.get("base").config_cls(lr=bad)


def test_save_and_load_keep_the_head(tmp_path):
    method = methods.get("base")
    model = method.apply(tiny_bert(0, num_labels=2), method.config_cls())
    heads = runner.head_parameter_names(model)
    for name, p in model.named_parameters():
        p.requires_grad_(name in heads)
        if name in heads:
            p.data.add_(0.5)
    method.save(model, str(tmp_path))
    loaded = method.load(tiny_bert(0, num_labels=2), str(tmp_path))
    for name in heads:
        assert torch.equal(dict(loaded.named_parameters())[name], dict(model.named_parameters())[name])
