"""Failure isolation through the real CLI: an exception, a NaN loss and a killed job process
each become the right record while the sweep goes on, and the sweep's exit code is 1.

Each failure is provoked honestly, without test hooks in the code: a data row that passes the
plan's field check but cannot be tokenized, a learning rate no model survives, and SIGKILL
(what the kernel's out-of-memory killer sends) to the job's process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import records

ROOT = Path(__file__).resolve().parents[2]
SUMMARY = "| method | task | seed | status |"


def argv(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench",
        "run",
        "--preset",
        "smoke",
        "--threads",
        "1",
        "--output-dir",
        str(out),
        "--no-progress",
        *extra,
    ]


def bench(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv(out, *extra), cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_an_exception_fails_its_job_only(tmp_path):
    # Every row has the fields the task declares, so the plan accepts the file; a null sentence
    # then makes the tokenizer raise inside the job.
    data = tmp_path / "data" / "glue_sst2"
    data.mkdir(parents=True)
    rows = [{"sentence": "a fine film", "label": 1}, {"sentence": None, "label": 0}, {"sentence": "dull", "label": 0}]
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (data / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[::2]))
    out = tmp_path / "runs"
    args = (
        "--methods",
        "lora",
        "--tasks",
        "glue_sst2,toy_cls",
        "--model",
        "tiny-bert",
        "--data-dir",
        str(data.parent),
    )
    proc = bench(out, *args)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert SUMMARY in proc.stdout
    failed = records.load(out / "lora--glue_sst2--seed0.json")
    assert failed.status == "failed"
    assert failed.result["error"].startswith("ValueError: ")
    assert "Traceback" in failed.result["traceback"]
    assert failed.run["command"] and failed.env["packages"]["torch"]  # a failure is still a full record
    assert records.load(out / "lora--toy_cls--seed0.json").status == "ok"  # the sweep went on

    # Resuming keeps the failure (it is a result) and still says so in the exit code.
    again = bench(out, *args)
    assert again.returncode == 1, again.stderr[-3000:]
    assert "record exists (failed); --rerun-failed or --force to rerun" in again.stderr


def test_a_nan_loss_is_diverged(tmp_path):
    # lr 1e30: after the warm-up step (lr 0) AdamW moves every weight by ~1e30, and the third
    # step's forward pass overflows to inf - inf = NaN.
    out = tmp_path / "runs"
    proc = bench(
        out, "--methods", "full_ft,lora", "--set", "full_ft.lr=1e30", "--tasks", "toy_cls", "--max-steps", "3"
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    diverged = records.load(out / "full_ft@lr=1e30--toy_cls--seed0.json")
    assert diverged.status == "diverged"
    assert diverged.result["error"] == "loss became nan at step 3"
    assert diverged.run["method_config"]["lr"] == 1e30
    assert records.load(out / "lora--toy_cls--seed0.json").status == "ok"


def job_processes(sweep_pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmd = (stat.parent / "cmdline").read_bytes()
            maps = (stat.parent / "maps").read_text()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == sweep_pid and b"bench.runner" in cmd and "libtorch" in maps:  # mid-job: in run_one
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_a_killed_job_process_is_failed(tmp_path):
    out = tmp_path / "runs"
    proc = subprocess.Popen(
        argv(out, "--methods", "lora,full_ft", "--tasks", "toy_cls"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 600  # guards a hung test only
    while not (jobs := job_processes(proc.pid)):
        assert proc.poll() is None, "the sweep exited before its first job started"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(jobs[0], signal.SIGKILL)  # the out-of-memory killer's signal
    stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 1, stderr[-3000:]
    assert SUMMARY in stdout
    killed = records.load(out / "lora--toy_cls--seed0.json")
    assert killed.status == "failed"
    assert killed.result["error"] == "job process exited with code -9 (killed by signal 9; out of memory?)"
    assert records.load(out / "full_ft--toy_cls--seed0.json").status == "ok"
