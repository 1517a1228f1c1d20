"""One micro-benchmark configuration in-process: the official-style reference, the timed row, and
the paired frozen/configuration steps (tiny LLaMA config)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench import micro_step

TINY = {"hidden": 32, "layers": 1, "heads": 2, "intermediate": 64, "vocab": 128, "batch": 2, "seq": 8}
TINY |= {"steps": 4, "warmup": 1, "threads": 1, "device": "cpu", "dtype": "float32"}


def test_dense_scatter_reference_equals_neuroada_bit_for_bit():
    from methods.neuroada import NeuroAdaLinear

    torch.manual_seed(0)
    base = nn.Linear(12, 6)
    ref = micro_step.DenseScatterLinear(base, k=3)
    cols = base.weight.detach().abs().topk(3, dim=1).indices
    ours = NeuroAdaLinear(base, cols)
    values = torch.randn(6, 3)
    with torch.no_grad():
        ref.weight_new.copy_(values.reshape(-1))  # row-major, ascending columns in each row: our layout
        ours.neuroada_values.copy_(values)
    x = torch.randn(5, 12)
    assert torch.equal(ref(x), ours(x))


def _loss_and_input_grad(setup) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(0, TINY["vocab"], (TINY["batch"], TINY["seq"]), generator=torch.Generator().manual_seed(1))
    emb = setup.model.get_input_embeddings()(ids).detach().requires_grad_()
    loss = setup.model(inputs_embeds=emb, labels=ids).loss
    loss.backward()
    return loss.detach(), emb.grad


def test_kept_inputs_computes_what_frozen_computes_and_keeps_the_targets_inputs():
    frozen, kept = micro_step._setup(TINY, "frozen"), micro_step._setup(TINY, "kept_inputs")
    assert sum(isinstance(m, micro_step.KeptInputLinear) for m in kept.model.modules()) == 7
    for got, want in zip(_loss_and_input_grad(kept), _loss_and_input_grad(frozen), strict=True):
        assert torch.equal(got, want)
    # kept beyond frozen's, per token: q/k/v's shared input (hidden 32), gate/up's (32), down's (64);
    # o's input shares its storage with the attention output, which frozen keeps already
    tokens = TINY["batch"] * TINY["seq"]
    assert micro_step._first_step(kept) - micro_step._first_step(frozen) == 4 * tokens * (32 + 32 + 64)
    assert micro_step.run_one(dict(TINY, config="kept_inputs"))["trainable"] == 0


def test_run_one_times_the_configured_steps():
    row = micro_step.run_one(dict(TINY, config="neuroada", k=2))
    assert len(row["cpu_times"]) == len(row["wall_times"]) == 4
    assert row["trainable"] == 2 * (5 * 32 + 2 * 64)  # k * sum(d_out) over q, k, v, o, down; gate, up
    assert row["saved_bytes"] > 0 and row["peak_rss_mb"] > 0


@pytest.mark.parametrize("clock", ["cpu", "wall"])
def test_paired_steps_alternate_and_the_ratio_is_fastest_over_fastest(monkeypatch, clock):
    order = []
    fake = {"frozen": iter([2.0, 4.0, 2.0, 4.0]), "lora": iter([2.5, 5.0, 3.0, 6.0])}  # pair ratios 1.25 1.25 1.5 1.5

    def timed(setup):
        setup.step()
        order.append(setup.name)
        t = next(fake[setup.name])
        return (t, 9.0) if clock == "wall" else (9.0, t)

    monkeypatch.setattr(micro_step, "_timed", timed)
    row = micro_step.run_paired(dict(TINY, config="lora", clock=clock))
    assert order == ["frozen", "lora", "lora", "frozen", "frozen", "lora", "lora", "frozen"]
    assert row["pair_ratios"] == [1.25, 1.25, 1.5, 1.5] and row["pairs_median"] == 1.375
    assert row["ratio"] == 1.25 and row["paired"] is True  # 2.5 / 2.0: each side's fastest step
    assert row["frozen_" + clock + "_times"] == [2.0, 4.0, 2.0, 4.0]
    assert row["peak_rss_mb"] is None  # two models share the process: RSS is not this configuration's
    assert row["frozen_" + clock + "_s"] == 3.0 and row[clock + "_s"] == 4.0


def test_paired_rows_measure_the_configuration_not_its_twin():
    row = micro_step.run_paired(dict(TINY, config="neuroada", k=1, clock="cpu"))
    alone = micro_step.run_one(dict(TINY, config="neuroada", k=1))
    assert row["trainable"] == alone["trainable"] == 288
    assert row["saved_bytes"] == alone["saved_bytes"] and row["state_bytes"] == alone["state_bytes"]
    assert len(row["pair_ratios"]) == 4 and all(r > 0 for r in row["pair_ratios"])
