"""Launching: which tasks of a job need running, the skip message, exclusive locks that die with
their process, fallback records for a job that could not record itself, the job's log, and the
subprocess launcher's timeout."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench import launch, records
from bench.config import budget_for
from bench.plan import RunRequest, plan

HOOKS = Path(__file__).resolve().parent / "hooks"


@pytest.fixture
def job(tmp_path):
    request = RunRequest(
        methods="lora",
        tasks="toy_sum",
        budget=budget_for("smoke"),
        smoke=True,
        output_dir=str(tmp_path),
        device="cpu",
        threads=1,
        progress=False,
    )
    return plan(request)[0]


def write(job, status: str) -> None:
    run = {**job.run_section(), "task": job.task}
    records.save(records.build(run, status=status, error=None if status == "ok" else "x"), job.output_dir)


@pytest.mark.parametrize(
    ("status", "force", "rerun_failed", "runs"),
    [
        (None, False, False, True),
        ("ok", False, False, False),
        ("ok", True, False, True),
        ("failed", False, False, False),
        ("failed", False, True, True),
        ("diverged", False, True, True),
        ("canceled", False, False, True),
    ],
)
def test_should_run(job, status, force, rerun_failed, runs):
    if status:
        write(job, status)
    todo, statuses = launch.should_run(job, force=force, rerun_failed=rerun_failed)
    assert (todo == ("toy_sum",)) is runs
    assert statuses == {"toy_sum": status}


def test_skip_message_says_how_to_rerun(job):
    assert launch.skip_message(job, {"toy_sum": "ok"}) == (
        f"skip     {job.title}: record exists (ok); --force to rerun",
        "skipped (ok)",
    )
    assert launch.skip_message(job, {"toy_sum": "failed"})[0].endswith("--rerun-failed or --force to rerun")


def test_a_second_lock_on_the_same_job_is_refused_and_stale_temp_files_go(job):
    stale = Path(job.output_dir) / f".{job.record_path.name}.abc.tmp"
    stale.write_text("half a record")
    with launch.job_lock(job):
        assert not stale.exists()
        with pytest.raises(launch.Locked), launch.job_lock(job):
            pass
    with launch.job_lock(job):  # released with the first context
        pass


def test_fallback_records_name_the_reason_and_keep_what_the_job_wrote(job):
    launch.fallback_records(job, "failed", "job process exited with code -9", started=0.0)
    rec = records.load(job.record_path)
    assert rec.status == "failed" and rec.result["error"] == "job process exited with code -9"
    assert rec.run["method_label"] == "lora" and rec.run["task"] == "toy_sum"
    write(job, "ok")  # a fresh record the job wrote itself is kept
    launch.fallback_records(job, "failed", "later", started=0.0)
    assert records.load(job.record_path).status == "ok"


def test_a_hanging_job_is_stopped_at_its_timeout_and_logged(job, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(HOOKS), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("BENCH_TEST_HANG", "1")
    status = launch.run_in_subprocess(job, timeout=2)
    assert status == "failed"
    rec = json.loads(job.record_path.read_text())
    assert rec["result"]["error"].startswith("timed out after 2s (--job-timeout)")
    log = launch.log_path(job)
    assert log.parent == Path(job.output_dir) / "logs" and "== " in log.read_text() and job.title in log.read_text()


def test_worst_status():
    assert launch.worst_status(["ok", "diverged", "failed"]) == "failed"
    assert launch.worst_status(["ok", "canceled"]) == "canceled"
    assert launch.worst_status([]) == "failed"
