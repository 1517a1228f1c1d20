from __future__ import annotations

import json
import os

import pytest

from bench import records
from bench.errors import UsageError
from bench.records import SCHEMA_VERSION, RunRecord


def make(status="ok"):
    run = {"method": "lora", "method_label": "lora", "task": "toy_sum", "seed": 3}
    return RunRecord(run=run, result={"status": status, "metrics": {"accuracy": 50.0}})


def test_save_and_load_roundtrip(tmp_path):
    path = records.save(make(), tmp_path)
    assert path.name == "lora--toy_sum--seed3.json"
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    assert list(data) == sorted(data)  # sorted keys
    assert records.load(path).result["metrics"] == {"accuracy": 50.0}


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path, monkeypatch):
    path = records.save(make(), tmp_path)
    before = path.read_text()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        records.save(make(status="failed"), tmp_path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind


def test_newer_schema_is_refused(tmp_path):
    path = records.save(make(), tmp_path)
    data = json.loads(path.read_text())
    data["schema_version"] = SCHEMA_VERSION + 1
    path.write_text(json.dumps(data))
    with pytest.raises(UsageError, match="newer than this peft-bench"):
        records.load(path)


def test_corrupt_record_is_a_clear_error(tmp_path):
    path = tmp_path / "x--y--seed0.json"
    path.write_text("{not json")
    with pytest.raises(UsageError, match="is not valid JSON"):
        records.load(path)
