"""Shared method code (``methods/_base.py``): default targets per architecture, target matching,
freezing, parameter counts and submodule replacement, on the MLP 10->20->2 and the tiny models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import methods
from bench.errors import UsageError
from bench.models import tiny_bert, tiny_llama
from methods._base import (
    BERT_TARGETS,
    LLAMA_TARGETS,
    Method,
    adamw,
    count_parameters,
    default_targets,
    find_targets,
    freeze,
    set_submodule,
    trainable_count,
    trainable_parameters,
)

MLP_PARAMETERS = 10 * 20 + 20 + 20 * 2 + 2  # 262: two linears with biases


class MLP(nn.Module):
    """10 -> 20 -> 2 with a norm and a head named like one (``classifier``, never adapted)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin0 = nn.Linear(10, 20)
        self.norm = nn.LayerNorm(20, elementwise_affine=False)
        self.classifier = nn.Linear(20, 2)

    def forward(self, x):
        return self.classifier(self.norm(torch.relu(self.lin0(x))))


class Nested(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = nn.ModuleDict({"lin0": nn.Linear(4, 4), "out": nn.Linear(4, 4)})
        self.out = nn.Linear(4, 2)


def test_default_targets_per_architecture():
    assert default_targets(tiny_llama(0)) == LLAMA_TARGETS
    assert default_targets(tiny_bert(0)) == BERT_TARGETS
    assert default_targets(MLP()) == ("lin0",)  # any other model: its linears but the head
    assert [n for n, _ in find_targets(MLP(), None)] == ["lin0"]


def test_find_targets_matches_names_and_suffixes_sorted_once():
    model = Nested()
    assert [n for n, _ in find_targets(model, ("out",))] == ["block.out", "out"]
    assert [n for n, _ in find_targets(model, ("block.out", "out", "lin0"))] == ["block.lin0", "block.out", "out"]
    assert find_targets(model, ("lin0",))[0][1] is model.block["lin0"]
    assert [n for n, _ in find_targets(tiny_llama(0), ("q_proj",))] == [
        "model.layers.0.self_attn.q_proj",
        "model.layers.1.self_attn.q_proj",
    ]


@pytest.mark.parametrize(
    ("targets", "match"),
    [
        (("lin9",), r"target module 'lin9' matches no module of MLP; pass names such as lin0"),
        (("classifier",), r"target module 'classifier' matches no module"),  # heads are never adapted
        (("norm",), r"target module 'norm' is a LayerNorm, not an nn.Linear; choose linear layers only"),
    ],
)
def test_find_targets_errors(targets, match):
    with pytest.raises(UsageError, match=match):
        find_targets(MLP(), targets)


def test_find_targets_may_allow_other_modules():
    assert [type(m) for _, m in find_targets(MLP(), ("norm",), linear_only=False)] == [nn.LayerNorm]


def test_counts_freeze_and_trainable_parameters():
    model = MLP()
    assert count_parameters(model) == MLP_PARAMETERS
    assert count_parameters(model, trainable_only=True) == MLP_PARAMETERS
    freeze(model)
    assert count_parameters(model, trainable_only=True) == 0 and trainable_parameters(model) == []
    model.classifier.requires_grad_(True)
    assert trainable_parameters(model) == [model.classifier.weight, model.classifier.bias]
    assert count_parameters(model, trainable_only=True) == 20 * 2 + 2


def test_a_shared_parameter_is_counted_once():
    model = MLP()
    model.lin1 = nn.Linear(20, 10, bias=False)
    model.lin1.weight = nn.Parameter(model.lin0.weight.t().contiguous())
    model.tied = nn.Linear(10, 20, bias=False)
    model.tied.weight = model.lin0.weight  # tied, like embeddings and an lm_head
    assert count_parameters(model) == MLP_PARAMETERS + 200  # lin1 is a copy; tied adds nothing
    assert len(trainable_parameters(model)) == 5


def test_trainable_count_asks_the_method_when_it_counts_itself():
    model = MLP()
    freeze(model)
    model.lin0.requires_grad_(True)
    plain = type("Plain", (), {})()
    counting = type("Counting", (), {"count_trainable": lambda self, m: 7})()
    assert trainable_count(plain, model) == 10 * 20 + 20
    assert trainable_count(counting, model) == 7


def test_adamw_and_set_submodule():
    model = Nested()
    opt = adamw(model.out.parameters(), lr=0.5, weight_decay=0.25)
    assert isinstance(opt, torch.optim.AdamW)
    assert (opt.param_groups[0]["lr"], opt.param_groups[0]["weight_decay"]) == (0.5, 0.25)
    assert len(opt.param_groups[0]["params"]) == 2
    set_submodule(model, "block.lin0", nn.Identity())
    set_submodule(model, "out", nn.Tanh())
    assert isinstance(model.block["lin0"], nn.Identity) and isinstance(model.out, nn.Tanh)


@pytest.mark.parametrize("name", methods.names())
def test_every_method_keeps_the_protocol(name):
    method = methods.get(name)
    assert isinstance(method, Method)
    assert method.config_cls().lr > 0  # every config has a documented default lr
