"""The shared-context log-likelihood equals the plain one (lm-eval's way), to 1e-5 in fp64."""

from __future__ import annotations

import pytest
import torch

from bench import loglik, models

CPU = torch.device("cpu")

REQUESTS = [
    # contexts of different lengths, each with several continuations of different lengths
    ("after a b:", " c"),
    ("after a b:", " c d e"),
    ("after a b:", " d"),
    ("a much longer context, with more words in it:", " x y"),
    ("a much longer context, with more words in it:", " x"),
    ("a much longer context, with more words in it:", " z z z z z"),
    ("short:", "q"),  # a one-token continuation (the tiny tokenizer has one token per character)
    # WinoGrande-style partial scoring: the option fills the context, the continuation is shared
    ("the cat sat on the mat because it", " was tired."),
    ("the dog sat on the mat because it", " was tired."),
]


@pytest.fixture(scope="module")
def llama64():
    model, tok = models.load("tiny-llama", "causal_lm")
    return model.double().eval(), tok


@pytest.mark.parametrize("max_tokens", [1, 40, 10_000])
def test_shared_equals_plain_in_fp64(llama64, max_tokens):
    model, tok = llama64
    plain = loglik.plain(model, tok, REQUESTS, batch_size=3, device=CPU, progress=False)
    shared = loglik.shared(model, tok, REQUESTS, batch_size=3, device=CPU, progress=False, max_tokens=max_tokens)
    assert all(v < 0 for v in plain)
    torch.testing.assert_close(torch.tensor(shared), torch.tensor(plain), rtol=0, atol=1e-5)


def test_one_token_continuations_need_only_the_context_pass(llama64):
    """All-one-token continuations are scored from the context's last position alone."""
    model, tok = llama64
    requests = [("after a b:", "c"), ("after a b:", "d"), ("another:", "e")]
    assert all(len(loglik.encode_pair(tok, c, x)[1]) == 1 for c, x in requests)
    calls = []
    handle = model.register_forward_hook(lambda m, a, kw, out: calls.append(kw["input_ids"].shape), with_kwargs=True)
    try:
        shared = loglik.shared(model, tok, requests, batch_size=8, device=CPU, progress=False)
    finally:
        handle.remove()
    assert len(calls) == 1 and calls[0][0] == 2  # one forward pass, one row per distinct context
    plain = loglik.plain(model, tok, requests, batch_size=8, device=CPU, progress=False)
    torch.testing.assert_close(torch.tensor(shared), torch.tensor(plain), rtol=0, atol=1e-5)


def test_each_context_runs_once(llama64):
    model, tok = llama64
    rows = []
    handle = model.register_forward_hook(lambda m, a, kw, out: rows.append(kw["input_ids"].shape), with_kwargs=True)
    try:
        loglik.shared(model, tok, REQUESTS[:3], batch_size=8, device=CPU, progress=False)
    finally:
        handle.remove()
    # the context once, then its three multi-token continuations from its cache
    assert all(len(loglik.encode_pair(tok, c, x)[1]) > 1 for c, x in REQUESTS[:3])
    assert [r[0] for r in rows] == [1, 3]


def test_token_batches_cover_every_group_once_within_budget():
    groups = [(10, [1, 1]), (30, [5, 2]), (20, [3]), (5, [1]), (30, [1, 1, 1])]
    batches = loglik.token_batches(groups, max_tokens=70)
    assert sorted(g for b in batches for g in b) == list(range(len(groups)))
    for b in batches:
        conts = [n - 1 for g in b for n in groups[g][1] if n > 1]
        cost = max(groups[g][0] for g in b) * len(b) + (max(conts) * len(conts) if conts else 0)
        assert cost <= 70 or len(b) == 1
    assert batches[0][0] in (1, 4)  # longest context first
    assert loglik.token_batches(groups, max_tokens=1) == [[1], [4], [2], [0], [3]]


def test_encode_pair_moves_trailing_space(llama64):
    _, tok = llama64
    ctx, cont = loglik.encode_pair(tok, "Answer: ", "yes")
    assert tok.decode(ctx) == "Answer:" and tok.decode(cont) == " yes"
