"""Fixtures shared by the NeuroAda tests (``test_neuroada.py``, ``test_neuroada_layer.py``)."""

from __future__ import annotations

import pytest

from methods import _sparse_ops


@pytest.fixture(params=["kernel", "torch"])
def value_path(request, monkeypatch):
    """Run a test with the C kernels (fp32 CPU value gradient) and again with the torch fallback."""
    if request.param == "torch":
        monkeypatch.setattr(_sparse_ops, "_kernel", lambda: None)
    elif _sparse_ops._kernel() is None:
        pytest.skip("no C compiler: the kernel path is unavailable")
    return request.param
