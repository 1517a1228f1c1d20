"""Shared inputs of the report tests: the golden records (a real toy run made by
``tests/golden/make_records.py``) and records built in code."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.records import RunRecord
from bench.report import load_frame

RECORDS = Path(__file__).resolve().parents[2] / "golden" / "records"


@pytest.fixture(scope="session")
def golden_frame():
    """One row per record of ``tests/golden/records``."""
    return load_frame(RECORDS)


def make_record(
    method,
    task,
    seed,
    score,
    *,
    metric="accuracy",
    suite="commonsense",
    dtype="float32",
    higher=True,
    items=None,
    **run,
):
    """``(path, record)`` of a finished run; ``higher`` is the record's ``result.higher_is_better``
    for ``metric`` (None: not recorded, as in records written before runs recorded it); ``items``
    its per-item results (``{"correct": [...]}`` or predictions and references), none by default."""
    budget = {
        "max_steps": 10,
        "batch_size": 4,
        "micro_batch_size": 4,
        "max_length": 64,
        "gradient_checkpointing": False,
    }
    budget.update(run.pop("budget", {}))
    result = {"status": "ok", "metrics": {metric: score}}
    if higher is not None:
        result["higher_is_better"] = {metric: higher}
    if items is not None:
        n = len(next(iter(items.values())))
        result["items"] = {"id": list(range(n)), **items}
        result["items_hash"] = f"sha256:{task}"
    return (
        Path(f"{method}--{task}--seed{seed}.json"),
        RunRecord(
            run={
                "method": method.split("@")[0],
                "method_label": method,
                "task": task,
                "suite": suite,
                "seed": seed,
                "model": "tiny-llama",
                "smoke": False,
                "primary_metric": metric,
                "budget": budget,
                "dtype": dtype,
                **run,
            },
            result=result,
            cost={"trainable_fraction": 0.5, "peak_memory_mb": 100.0, "train_tokens_per_s": 10.0},
        ),
    )


@pytest.fixture
def rec():
    """:func:`make_record`."""
    return make_record
