"""Greedy generation: batched with finished rows dropped == one prompt at a time == ``generate``."""

from __future__ import annotations

import pytest
import torch

from bench import decode, models

CPU = torch.device("cpu")
PROMPTS = ["a", "after a b c:", "the quick brown fox jumps over", "x y", "one two three four five six seven eight"]


class EosAs:
    """The tokenizer with another token as EOS, so that some sequences end early."""

    def __init__(self, tok, eos: int) -> None:
        self._tok, self.eos_token_id = tok, eos

    def __getattr__(self, name):
        return getattr(self._tok, name)

    def __call__(self, *args, **kwargs):
        return self._tok(*args, **kwargs)


@pytest.fixture(scope="module")
def llama64():
    model, tok = models.load("tiny-llama", "causal_lm")
    return model.double().eval(), tok


@pytest.fixture(scope="module")
def early_eos(llama64):
    """A tokenizer whose EOS is a token the model emits mid-way through some prompts, not all."""
    model, tok = llama64
    firsts = []
    for p in PROMPTS:
        ids = tok(p, add_special_tokens=True)["input_ids"]
        firsts.append(decode._greedy_batch(model, tok, [ids], 12, CPU)[0])
    counts = {}
    for seq in firsts:
        for t in set(seq[1:]):
            counts[t] = counts.get(t, 0) + 1
    eos = max((t for t, c in counts.items() if c < len(PROMPTS)), key=lambda t: counts[t])
    return EosAs(tok, eos)


def test_batched_equals_unbatched(llama64, early_eos):
    model, _ = llama64
    tok = early_eos
    one = decode.greedy(model, tok, PROMPTS, max_new_tokens=12, batch_size=1, device=CPU, progress=False)
    many = decode.greedy(model, tok, PROMPTS, max_new_tokens=12, batch_size=4, device=CPU, progress=False)
    assert many == one
    raw = [decode._greedy_batch(model, tok, [tok(p)["input_ids"]], 12, CPU)[0] for p in PROMPTS]
    ended = [seq[-1] == tok.eos_token_id for seq in raw]
    assert any(ended) and not all(ended)  # some sequences stopped early, the test means something
    assert all(len(s) < 12 for s, e in zip(raw, ended, strict=True) if e)


def test_equals_transformers_generate(llama64, early_eos):
    model, _ = llama64
    tok = early_eos
    ours = decode.greedy(model, tok, PROMPTS, max_new_tokens=12, batch_size=5, device=CPU, progress=False)
    theirs = []
    for p in PROMPTS:
        ids = torch.tensor([tok(p, add_special_tokens=True)["input_ids"]])
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=12,
            do_sample=False,
            num_beams=1,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
        theirs.append(tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True))
    assert ours == theirs
