"""Evaluation paths on tiny models: results do not depend on the batch size."""

from __future__ import annotations

import pytest
import torch

import tasks
from bench import models
from bench.evaluate import evaluate
from bench.loglik import encode_pair as encode_pair_lm_eval
from bench.loglik import shared as loglikelihoods

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def llama():
    model, tok = models.load("tiny-llama", "causal_lm")
    return model, tok


@pytest.mark.parametrize("task_name", ["toy_sum", "toy_mc"])
def test_causal_results_do_not_depend_on_batch_size(llama, task_name):
    model, tok = llama
    task = tasks.get(task_name)
    rows = task.load("eval", None)
    a = evaluate(task, model, tok, rows, batch_size=1, device=CPU, progress=False)
    b = evaluate(task, model, tok, rows, batch_size=7, device=CPU, progress=False)
    assert a.predictions == b.predictions
    assert a.metrics == b.metrics


def test_classification_does_not_depend_on_batch_size():
    model, tok = models.load("tiny-bert", "sequence_classification", num_labels=2)
    task = tasks.get("toy_cls")
    rows = task.load("eval", None)
    a = evaluate(task, model, tok, rows, batch_size=1, device=CPU, progress=False)
    b = evaluate(task, model, tok, rows, batch_size=5, device=CPU, progress=False)
    assert a.predictions == b.predictions


def test_loglikelihood_matches_a_manual_forward(llama):
    model, tok = llama
    ctx, cont = "after c:", " d"
    [ll] = loglikelihoods(model, tok, [(ctx, cont)], batch_size=1, device=CPU, progress=False)
    ids = tok(ctx + cont, add_special_tokens=False)["input_ids"]
    n_ctx = len(tok(ctx, add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
    expected = sum(float(logp[i - 1, ids[i]]) for i in range(n_ctx, len(ids)))
    assert ll == pytest.approx(expected, abs=1e-4)


def test_lm_eval_pair_encoding_moves_trailing_space(llama):
    _, tok = llama
    ctx, cont = encode_pair_lm_eval(tok, "Answer: ", "yes")
    assert tok.decode(ctx) == "Answer:" and tok.decode(cont) == " yes"
