"""Launching jobs: resume checks, per-record locks, one fresh subprocess per job, fallback records.

A job runs as ``python -m bench.runner`` (under ``accelerate launch`` with several processes),
reads its :class:`~bench.spec.JobSpec` on stdin and writes its own records. Its standard output
and the libraries' chatter (load reports, warnings) go to the job's log,
``OUTPUT_DIR/logs/<record name>.log``; its progress bars stay on the terminal. If the process
dies before it recorded itself (killed, out of memory, interrupted before its first line ran),
:func:`fallback_records` writes ``failed`` or ``canceled`` records for it, so that nothing the
sweep started goes unrecorded.
"""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import records
from bench.errors import UsageError
from bench.records import EXIT_CODES, worst_status  # noqa: F401  (re-exported for the executors)
from bench.spec import JobSpec


# ---------------------------------------------------------------------------------------------
# Resume and locks
# ---------------------------------------------------------------------------------------------
def existing_status(path: Path) -> str | None:
    """The status of a finished record at ``path``; None if absent or unreadable (partial)."""
    if not path.exists():
        return None
    try:
        return records.load(path).status
    except (UsageError, KeyError):
        return None


def should_run(job: JobSpec, *, force: bool, rerun_failed: bool) -> tuple[tuple[str, ...], dict[str, str | None]]:
    """The job's tasks that need running given their records, and the existing statuses."""
    statuses = {t: existing_status(p) for t, p in zip(job.tasks, job.record_paths, strict=True)}
    if force:
        return job.tasks, statuses
    # A canceled job never finished: resuming runs it. Failed and diverged are results, kept
    # unless asked (--rerun-failed), since rerunning them usually fails the same way.
    todo = tuple(t for t, st in statuses.items() if st in (None, "canceled") or (st != "ok" and rerun_failed))
    return todo, statuses


def skip_message(job: JobSpec, statuses: dict[str, str | None]) -> tuple[str, str]:
    """The line printed for a job whose records all exist, and its outcome (``skipped (ok)``)."""
    existing = ",".join(sorted({str(s) for s in statuses.values()}))
    hint = "--force" if existing == "ok" else "--rerun-failed or --force"
    return f"skip     {job.title}: record exists ({existing}); {hint} to rerun", f"skipped ({existing})"


class Locked(RuntimeError):
    """Another sweep holds this job's lock."""


@contextlib.contextmanager
def job_lock(job: JobSpec) -> Iterator[None]:
    """Exclusive, non-blocking locks on the job's records, so two sweeps never run the same job.

    ``flock`` locks die with their process, so a SIGKILLed sweep leaves no stale lock behind;
    the temp file of a record write it cut short is removed once the lock is taken.
    """
    import fcntl

    lock_dir = Path(job.output_dir) / ".locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        for path in sorted(job.record_paths):
            fh = stack.enter_context(open(lock_dir / (path.name + ".lock"), "w"))
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise Locked(job.title) from None
            # Ours now: a temp file of this record is a write that a SIGKILL cut short.
            for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
                stale.unlink(missing_ok=True)
        yield


# ---------------------------------------------------------------------------------------------
# How a job is launched
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExecutorOptions:
    """How jobs are placed: resources per job, time limit, and the engine's settings."""

    gpus_per_job: int | None = None
    """GPUs per job (None: 1, or 0 with ``--device cpu``). N > 1 runs the job under
    ``accelerate launch`` with N processes; with ``--device cpu`` they are CPU processes."""
    job_timeout: float | None = None
    """Seconds a job may run before it is stopped and recorded ``failed``."""
    ray_address: str | None = None
    """An existing Ray cluster (``auto``, ``ray://host:10001``, ``host:6379``); None: $RAY_ADDRESS, else a
    new local one."""
    ray_num_cpus: int | None = None
    """CPUs of the local Ray cluster started here (None: all of this machine's)."""
    slurm_mode: str = "slurm"
    """``slurm`` (sbatch), ``local`` (submitit's LocalExecutor: subprocesses here) or ``debug`` (in-process)."""
    slurm_folder: str | None = None
    """submitit's folder for job scripts, pickles and logs (None: OUTPUT_DIR/.submitit/%j)."""
    slurm_parameters: dict[str, Any] = field(default_factory=dict)
    """submitit ``AutoExecutor`` parameters (``--slurm-config`` file, then flags)."""

    @property
    def processes(self) -> int:
        return self.gpus_per_job if self.gpus_per_job and self.gpus_per_job > 1 else 1

    def gpus(self, job: JobSpec) -> int:
        """GPUs to reserve for ``job``: none on ``--device cpu``."""
        if job.device == "cpu":
            return 0
        return 1 if self.gpus_per_job is None else self.gpus_per_job

    def cpus(self, job: JobSpec) -> int:
        """CPUs to reserve for ``job``: one per process on ``--device cpu``, else one."""
        return self.processes if job.device == "cpu" else 1

    def launch(self, job: JobSpec) -> dict[str, Any]:
        """Keyword arguments of :func:`run_in_subprocess` for ``job``."""
        # --gpus-per-job 0: hide GPUs, since Ray leaves CUDA_VISIBLE_DEVICES unset for GPU-less tasks.
        env = {"CUDA_VISIBLE_DEVICES": ""} if self.gpus_per_job == 0 else {}
        return {"processes": self.processes, "timeout": self.job_timeout, "env": env}


def log_path(job: JobSpec) -> Path:
    """The job's log beside its records: the job's stdout and the libraries' messages."""
    return Path(job.output_dir) / "logs" / (job.record_path.stem + ".log")


def run_in_subprocess(
    job: JobSpec, *, processes: int = 1, timeout: float | None = None, env: dict[str, str] | None = None
) -> str:
    """Run ``job`` in a fresh Python process and return its worst status.

    The job writes its own records. If it dies without them (killed, out of memory,
    interrupted before its first line ran), ``failed`` or ``canceled`` records say so.
    ``processes`` > 1: under ``accelerate launch``, one process per GPU (CPU processes with
    ``--device cpu``); rank 0 writes the records. ``timeout`` (seconds): the job is stopped
    and recorded ``failed``. ``env``: extra environment variables for the job.
    """
    started = time.time()
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1", **(env or {})}
    payload: str | None = job.to_json()
    log = log_path(job)
    log.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        command = [sys.executable, "-m", "bench.runner"]
        if processes > 1:  # N processes share no stdin: the spec goes in a file they all read
            spec_file = stack.enter_context(tempfile.NamedTemporaryFile("w", prefix="bench-job-", suffix=".json"))
            spec_file.write(payload)
            spec_file.flush()
            command = accelerate_command(processes, ["-m", "bench.runner", "--spec", spec_file.name])
            if job.device == "cpu":
                env["ACCELERATE_USE_CPU"] = "1"  # with --multi_gpu: N gloo CPU processes (--cpu alone runs one)
            payload = None
        out = stack.enter_context(open(log, "a", encoding="utf-8"))
        out.write(f"\n== {records.now()} {job.title}\n")
        out.flush()
        proc = subprocess.Popen(
            command, stdin=subprocess.PIPE if payload else subprocess.DEVNULL, stdout=out, env=env, text=True
        )
        interrupted = timed_out = False
        try:
            timed_out = _wait(proc, payload, timeout)
            if timed_out:
                _stop(proc, wait=0)
        except KeyboardInterrupt:
            # A terminal's Ctrl-C reached the child too and it records itself as canceled; an
            # engine's cancel (Ray, SLURM) interrupts only this process: then SIGTERM it.
            interrupted = True
            _stop(proc, wait=3)
    _fallback_for_exit(job, proc.returncode, started, processes, timeout, timed_out, interrupted)
    return worst_status(existing_status(p) or "failed" for p in job.record_paths)


def _fallback_for_exit(
    job: JobSpec, code: int | None, started: float, processes: int, timeout, timed_out: bool, interrupted: bool
) -> None:
    if timed_out:
        reason = f"timed out after {timeout:g}s (--job-timeout); the job was stopped"
        fallback_records(job, "failed", reason, started, replace_statuses=("canceled",))
    elif interrupted or code in (EXIT_CODES["canceled"], -signal.SIGINT):
        fallback_records(job, "canceled", "interrupted before the job could record itself", started)
    elif processes > 1 and code:  # a failed rank makes the launcher stop the others
        reason = f"a process of the {processes}-process job failed (launcher exit code {code}); see its log"
        fallback_records(job, "failed", reason, started, replace_statuses=("canceled",))
    else:
        reason = f"job process exited with code {code}"
        if code and code < 0:
            reason += f" (killed by signal {-code}; out of memory?)"
        fallback_records(job, "failed", reason, started)


def fallback_records(
    job: JobSpec, status: str, error: str, started: float, replace_statuses: tuple[str, ...] = ()
) -> None:
    """Records for the job's tasks that the job process did not write itself (or wrote with one
    of ``replace_statuses``: a job stopped for its timeout records itself ``canceled``)."""
    for task, path in zip(job.tasks, job.record_paths, strict=True):
        fresh = path.exists() and path.stat().st_mtime >= started - 1
        if fresh and existing_status(path) in replace_statuses:  # keep what the job recorded
            record = records.load(path)
            record.result.update(status=status, error=error)
            records.save(record, job.output_dir)
            continue
        if fresh and existing_status(path) is not None:
            continue
        run = {**job.run_section(), "task": task, "finished_at": records.now()}
        records.save(records.build(run, status=status, error=error), job.output_dir)


def accelerate_command(processes: int, script: list[str]) -> list[str]:
    """``accelerate launch`` for ``processes`` local processes on a free port, running ``script``."""
    with socket.socket() as sock:  # a free port, so jobs sharing a node do not collide on 29500
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        f"--num_processes={processes}",
        "--num_machines=1",
        f"--main_process_port={port}",
        "--mixed_precision=no",  # the job sets its own dtype; these two silence launch's warnings
        "--dynamo_backend=no",
        *script,
    ]


def _wait(proc: subprocess.Popen, payload: str | None, timeout: float | None) -> bool:
    """Send ``payload`` to ``proc`` and wait for it to end; True if ``timeout`` passed first.

    Waits in 1 s slices: a blocking wait would not see a KeyboardInterrupt that Ray's cancel
    raises with ``_thread.interrupt_main`` (no signal, so no interrupted system call).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        step = 1.0 if deadline is None else min(1.0, max(0.0, deadline - time.monotonic()))
        try:
            proc.communicate(payload, timeout=step)
            return False
        except subprocess.TimeoutExpired:
            payload = None  # sent; communicate() goes on with the rest of it
            if deadline is not None and time.monotonic() >= deadline:
                return True


def _stop(proc: subprocess.Popen, *, wait: float) -> None:
    """Give ``proc`` ``wait`` seconds to end, then SIGTERM (it records itself canceled), then
    SIGKILL 30 s later. A second Ctrl-C skips ahead."""
    for sig, seconds in ((None, wait), (signal.SIGTERM, 30.0), (signal.SIGKILL, None)):
        if sig is not None and proc.poll() is None:
            proc.send_signal(sig)
        try:
            proc.wait(timeout=seconds)
            return
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            continue
