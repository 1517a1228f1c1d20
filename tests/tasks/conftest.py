"""Fixtures for the task tests: the offline data folder and its rows, read once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tasks._base import read_jsonl

REPO_ROOT = Path(__file__).resolve().parents[2]


def data_dir_path() -> Path:
    """``$BENCH_DATA_DIR``, else ``../shared/data`` next to the repository."""
    env = os.environ.get("BENCH_DATA_DIR")
    return Path(env) if env else (REPO_ROOT.parent / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = data_dir_path()
    if not path.is_dir():
        pytest.skip(f"offline task data not found at {path}; set BENCH_DATA_DIR to a folder laid out like shared/data")
    return path


@pytest.fixture(scope="session")
def raw_rows(data_dir):
    """``raw_rows("arc_easy/eval.jsonl")``: the rows of a data file, cached."""
    cache: dict[str, list[dict]] = {}

    def rows(rel: str) -> list[dict]:
        if rel not in cache:
            cache[rel] = read_jsonl(data_dir / rel)
        return cache[rel]

    return rows
