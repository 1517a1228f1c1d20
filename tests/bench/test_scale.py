"""``bench scale``: one small sweep on one Ray worker prints the table and the metrics check.

One run only (Ray's start and a job's process cost ~20 s on 2 cores); skipped without Ray."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main

pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[2]
HEADER = "| workers | jobs | wall s | jobs/min | speed-up | ideal | load before |"


def test_one_worker_sweep_prints_the_table_and_identical_metrics(tmp_path):
    argv = ["scale", "--workers", "1", "--seeds", "0", "--tasks", "toy_sum", "--methods", "lora", "--no-progress"]
    proc = subprocess.run(
        [sys.executable, "-m", "bench", *argv, "--output-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert re.fullmatch(r"1 worker\(s\): 1 jobs in \d+\.\ds \(ok\)", lines[0]), lines[0]
    assert HEADER in lines and "|---:|---:|---:|---:|---:|---:|---:|" in lines
    table = lines[lines.index(HEADER) + 2 :]
    assert re.fullmatch(r"\| 1 \| 1 \| \d+\.\d \| \d+\.\d \| 1\.00x \| 1\.00x \| \d+\.\d \|", table[0]), table[0]
    assert lines[-1] == "metrics identical across worker counts: yes"
    record = json.loads((tmp_path / "workers1" / "lora--toy_sum--seed0.json").read_text())
    assert record["result"]["status"] == "ok"
    assert record["run"]["threads"] == 1 and record["run"]["command"] == "python -m bench scale --workers 1"


def test_bad_worker_counts_are_a_usage_error(capsys):
    assert main(["scale", "--workers", "1,x"]) == 2
    assert "--workers '1,x' must be a comma list of non-negative integers" in capsys.readouterr().err
