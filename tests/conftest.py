"""Shared fixtures: fixed seeds, one thread, offline hub, and an isolated model cache; tests
marked ``gpu`` (deselected by default, run with ``pytest -m gpu``) skip without CUDA."""

from __future__ import annotations

import os
import random

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    torch.manual_seed(0)
    yield


def pytest_runtest_setup(item):
    if item.get_closest_marker("gpu") is not None and not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda} build, no GPU visible" if torch.version.cuda else "a CPU-only torch build"
        pytest.skip(f"needs CUDA: torch.cuda.is_available() is False ({build})")
