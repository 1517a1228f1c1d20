"""``bench rerun``: a job repeated from its record scores the same on CPU; a changed record is
reported as a mismatch (exit 1); a record without results is a one-line error (exit 2)."""

from __future__ import annotations

import json

import pytest

from bench.cli import main
from bench.commands import rerun

RUN = ["run", "--methods", "lora", "--tasks", "toy_mc", "--preset", "smoke", "--device", "cpu", "--threads", "1"]


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert main([*RUN, "--output-dir", str(out), "--no-progress"]) == 0
    return out / "lora--toy_mc--seed0.json"


def test_a_rerun_matches_its_record(record, capsys):
    assert main(["rerun", str(record), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "rerun: match" in out and "accuracy" in out


def test_a_changed_metric_is_a_mismatch(record, tmp_path, capsys):
    data = json.loads(record.read_text())
    data["result"]["metrics"]["accuracy"] += 1.0
    changed = tmp_path / record.name
    changed.write_text(json.dumps(data))
    assert main(["rerun", str(changed), "--no-progress", "--output-dir", str(tmp_path / "again")]) == 1
    out = capsys.readouterr().out
    assert "differs: metric accuracy" in out and "MISMATCH (1 difference(s))" in out


def test_the_spec_is_rebuilt_from_the_record(record, tmp_path):
    from bench import records

    spec = rerun.spec_of(records.load(record), str(tmp_path), progress=False)
    run = records.load(record).run
    assert (spec.method, spec.label, spec.task, spec.seed, spec.model) == (
        run["method"],
        run["method_label"],
        run["task"],
        run["seed"],
        run["model"],
    )
    assert spec.budget == run["budget"] and spec.method_config == run["method_config"]
    assert spec.tasks == ("toy_mc",) and spec.record_path == tmp_path / record.name


def test_a_failed_record_is_a_one_line_error(record, tmp_path, capsys):
    data = json.loads(record.read_text())
    data["result"] = {"status": "failed", "error": "boom", "metrics": {}}
    failed = tmp_path / record.name
    failed.write_text(json.dumps(data))
    assert main(["rerun", str(failed)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ended failed" in err
