"""Index selection (``methods/_selection.py``): pure, seeded functions shared by NeuroAda and masked
sparse tuning, on hand-set weights with exact expected indices."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from bench.errors import UsageError
from methods._selection import SELECTIONS, gradient_scores, layer_seed, select_indices, selection_scores

HAND_W = torch.tensor([[0.1, -0.9, 0.3, 0.05, -0.4], [2.0, 0.0, -3.0, 1.0, 0.5]])
X = torch.tensor([[1.0, -3.0, 0.5, 2.0, 0.0]])
Y = torch.tensor([[1.0, -1.0]])


class _OneLinear(nn.Module):
    """``loss = sum((lin(x) - y)^2)``: dL/dW = 2 (W x - y) x^T, so with W = 0, |grad[i, c]| = 2|y_i x_c|."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(5, 2, bias=False)
        nn.init.zeros_(self.lin.weight)

    def forward(self, x, y):
        return SimpleNamespace(loss=((self.lin(x) - y) ** 2).sum())


@pytest.mark.parametrize(
    ("selection", "k", "expected"),
    [
        ("magnitude", 1, [[1], [2]]),
        ("magnitude", 2, [[1, 4], [0, 2]]),  # |W| top-2, negative entries included, sorted per row
        ("magnitude", 4, [[0, 1, 2, 4], [0, 2, 3, 4]]),  # all but the smallest |W| (0.05; 0.0)
        ("reverse", 2, [[0, 3], [1, 4]]),  # the smallest |W|
    ],
)
def test_data_free_selections_on_hand_set_weights(selection, k, expected):
    idx = select_indices(HAND_W, k, selection)
    assert idx.tolist() == expected
    assert idx.dtype == torch.int64


def test_gradient_selection_ranks_the_score():
    score = torch.tensor([[0.0, 1.0, -5.0, 2.0, 0.5], [3.0, 3.5, 0.0, -0.1, 1.0]])  # |score| ranks
    assert select_indices(HAND_W, 2, "gradient", score=score).tolist() == [[2, 3], [0, 1]]


def test_random_selection_is_seeded_distinct_and_sorted():
    weight = torch.zeros(2, 5)
    # torch's CPU generator (mt19937) gives the same stream on every machine
    assert select_indices(weight, 2, "random", seed=0).tolist() == [[0, 1], [0, 2]]
    assert select_indices(weight, 2, "random", seed=1).tolist() == [[0, 3], [0, 2]]
    big = torch.zeros(64, 32)
    a, b = select_indices(big, 8, "random", seed=5), select_indices(big, 8, "random", seed=5)
    assert torch.equal(a, b)
    assert (a[:, 1:] > a[:, :-1]).all()  # sorted, hence distinct, per row


def test_layer_seed_is_stable():
    # (seed * 1_000_003 + crc32(name)) mod 2^63; crc32(b"q_proj") = 3099051089
    assert layer_seed(0, "q_proj") == 3_099_051_089
    assert layer_seed(3, "q_proj") == 3_102_051_098
    assert layer_seed(0, "model.layers.0.q_proj") != layer_seed(0, "model.layers.1.q_proj")


@pytest.mark.parametrize(
    ("weight", "k", "kwargs", "match"),
    [
        (torch.zeros(5), 1, {}, r"weight: selection needs a 2-D weight, got shape \(5,\)"),
        (HAND_W, 0, {}, r"k=0 must be a positive integer"),
        (HAND_W, 5, {"name": "lin"}, r"k=5 must be smaller than the input size 5 of lin; use k <= 4"),
        (HAND_W, 1, {"selection": "largest"}, r"selection 'largest' is not one of magnitude, random, reverse"),
        (HAND_W, 1, {"selection": "gradient"}, r"gradient selection needs a score of shape \(2, 5\)"),
        (HAND_W, 1, {"selection": "gradient", "score": torch.zeros(5, 2)}, r"needs a score of shape \(2, 5\)"),
    ],
)
def test_errors_say_how_to_fix(weight, k, kwargs, match):
    with pytest.raises(UsageError, match=match):
        select_indices(weight, k, **kwargs)


def test_gradient_scores_sum_abs_gradients_and_leave_no_trace():
    model = _OneLinear()
    batch = {"x": X, "y": Y}
    scores = gradient_scores(model, {"lin": model.lin.weight}, [batch, batch])
    # two batches of |2 y_i x_c| each: 4 |y_i x_c|
    expected = 4 * (Y.t().abs() @ X.abs())
    torch.testing.assert_close(scores["lin"], expected, rtol=0, atol=0)
    assert model.lin.weight.grad is None and model.lin.weight.requires_grad  # flag restored (it was True)
    model.lin.weight.requires_grad_(False)
    gradient_scores(model, {"lin": model.lin.weight}, [batch])
    assert not model.lin.weight.requires_grad
    assert select_indices(model.lin.weight, 2, "gradient", score=scores["lin"]).tolist() == [[1, 3], [1, 3]]
    with pytest.raises(UsageError, match="no calibration batches"):
        gradient_scores(model, {"lin": model.lin.weight}, [])


def test_selection_scores():
    model = _OneLinear()
    targets = [("lin", model.lin)]
    assert set(SELECTIONS) == {"magnitude", "random", "reverse", "gradient"}
    assert selection_scores(model, targets, "magnitude", None, "neuroada") == {}
    with pytest.raises(UsageError, match=r"masked_sparse\.selection='gradient' needs calibration batches"):
        selection_scores(model, targets, "gradient", None, "masked_sparse")
    scores = selection_scores(model, targets, "gradient", [{"x": X, "y": Y}], "neuroada")
    torch.testing.assert_close(scores["lin"], 2 * (Y.t().abs() @ X.abs()), rtol=0, atol=0)
