"""Resume after a crash: a real sweep is SIGKILLed (the whole process group: the sweep and its
job process) partway, then run again; and Ctrl-C (SIGINT to the group) records ``canceled``.

Nothing is timed: each kill waits for an observable state (a record file, a job process that
has loaded torch, i.e. is inside ``run_one``), never for a number of seconds.
"""

from __future__ import annotations

import fcntl
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
METHODS = ("lora", "neuroada", "full_ft")  # run in this order, one job each
TASK = "toy_cls"
EXPECTED = [f"{m}--{TASK}--seed0.json" for m in METHODS]

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def sweep_argv(out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench",
        "run",
        "--methods",
        ",".join(METHODS),
        "--tasks",
        TASK,
        "--preset",
        "smoke",
        "--threads",
        "1",
        "--output-dir",
        str(out),
        "--no-progress",
    ]


def _default_sigint() -> None:
    # A shell without job control starts background commands with SIGINT ignored, and exec keeps
    # that: Python would then never raise KeyboardInterrupt. A terminal's Ctrl-C finds it default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_sweep(out: Path) -> subprocess.Popen:
    """The sweep in its own session, so that a signal to its process group reaches its jobs too."""
    return subprocess.Popen(
        sweep_argv(out),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_default_sigint,
    )


def wait_for(condition, proc: subprocess.Popen, what: str, limit_s: float = 600):
    """Poll ``condition()`` until it is truthy; fails if the sweep exits first (``limit_s`` only
    guards against a hung test, it is not a timing threshold)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the sweep exited ({proc.returncode}) before {what}:\n{err[-3000:]}")
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


def job_processes(sweep_pid: int) -> list[int]:
    """Children of the sweep that run a job (``python -m bench.runner``)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmd = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == sweep_pid and b"bench.runner" in cmd:
            found.append(int(stat.parent.name))
    return found


def torch_loaded(pid: int) -> bool:
    """The job process has imported torch, which only ``run_one`` does: it is mid-job."""
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def finished_records(out: Path) -> list[Path]:
    return sorted(out.glob("*.json"))


def assert_complete(out: Path) -> dict[str, bytes]:
    """Every expected record present once, valid, ok, named after its content; no temp files."""
    paths = finished_records(out)
    assert [p.name for p in paths] == sorted(EXPECTED)
    for path in paths:
        rec = records.load(path)  # valid JSON of this schema
        assert rec.status == "ok", rec.result.get("error")
        assert records.record_name(rec.run["method_label"], rec.run["task"], rec.run["seed"]) == path.name
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    return {p.name: p.read_bytes() for p in paths}


def test_sigkill_mid_sweep_then_resume_loses_nothing(tmp_path):
    out = tmp_path / "runs"
    proc = start_sweep(out)
    first = wait_for(lambda: finished_records(out), proc, "the first record")
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its running job, at once, no cleanup
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL

    survivors = {p.name: p.read_bytes() for p in finished_records(out)}
    assert first[0].name in survivors
    for data in survivors.values():  # atomic writes: whole records or none
        json.loads(data)
    assert len(survivors) < len(EXPECTED), "the sweep finished before the kill; nothing was tested"
    # A write cut short by a SIGKILL leaves its temp file next to the record it was writing.
    todo = next(name for name in EXPECTED if name not in survivors)
    stale = out / f".{todo}.k1ll3d.tmp"
    stale.write_text('{"schema_version": 1, "run": {"meth')

    again = subprocess.run(sweep_argv(out), cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    for name in survivors:
        method = name.split("--")[0]
        assert f"skip     {method} x {TASK} seed 0: record exists (ok)" in again.stderr
    final = assert_complete(out)
    for name, data in survivors.items():
        assert final[name] == data, f"{name} was rewritten"
    assert not stale.exists()


def test_ctrl_c_records_canceled_and_exits_130(tmp_path):
    out = tmp_path / "runs"
    proc = start_sweep(out)
    (first_job,) = wait_for(lambda: job_processes(proc.pid), proc, "the first job")
    wait_for(lambda: finished_records(out), proc, "the first record")
    wait_for(
        lambda: [p for p in job_processes(proc.pid) if p != first_job and torch_loaded(p)], proc, "the second job"
    )
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert "| method | task | seed | status |" in stdout  # the sweep still printed its summary

    first, canceled = (records.load(out / name) for name in EXPECTED[:2])
    assert first.status == "ok"
    assert canceled.status == "canceled" and "interrupt" in canceled.result["error"]
    assert not (out / EXPECTED[2]).exists()  # the sweep stopped: no job after the canceled one

    # Resuming runs the canceled job (it never finished) and the rest; the finished one stays.
    kept = (out / EXPECTED[0]).read_bytes()
    again = subprocess.run(sweep_argv(out), cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert_complete(out)
    assert (out / EXPECTED[0]).read_bytes() == kept


def test_a_job_locked_by_another_sweep_is_left_alone(tmp_path):
    out = tmp_path / "runs"
    locks = out / ".locks"
    locks.mkdir(parents=True)
    with open(locks / f"{EXPECTED[0]}.lock", "w") as held:  # as the other sweep's job_lock does
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        argv = sweep_argv(out)
        argv[argv.index("--methods") + 1] = METHODS[0]
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "another sweep is running it" in proc.stderr
    assert not finished_records(out)
