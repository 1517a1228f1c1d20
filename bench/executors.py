"""Executors: where a sweep's jobs run, behind one table (:data:`EXECUTORS`). ``local`` (this
machine, one job at a time), ``ray`` (Ray core: one task per job) and ``slurm`` (submitit: one
job array). All three share the resume triage (one skip message), :func:`run_job` on the worker
and one progress display.

Every executor runs a job the same way, through ``bench.launch.run_in_subprocess``: a fresh
``python -m bench.runner`` process (under ``accelerate launch`` with ``--gpus-per-job N > 1``)
that writes the job's own records; if it dies first, the launcher writes ``failed`` or
``canceled`` records for it. Resuming is the same everywhere: the driver skips jobs whose
records exist (``launch.should_run``) and the worker checks again under the job's lock, so a
job another sweep finished meanwhile is not run twice.

Ray and SLURM workers write records straight into ``--output-dir``, which must therefore be
on a filesystem that the driver and every node share (the path is made absolute for them),
and every node must import this project (``pip install -e .`` in a shared environment, or
``--slurm-setup`` lines that activate one). The per-record locks are ``flock`` locks; across
nodes they hold only where the shared filesystem implements ``flock`` (NFSv4, Lustre mounted
with ``-o flock``, BeeGFS, GPFS), so do not point two sweeps at one folder elsewhere.

To add an executor: a ``run_<name>(jobs, *, force, rerun_failed, progress, options)`` that
returns ``(job, status)`` per job, and an entry in :data:`EXECUTORS`; its flags go in
``bench.executor_args``.
"""

from __future__ import annotations

import importlib
import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.errors import UsageError
from bench.launch import (
    ExecutorOptions,
    Locked,
    existing_status,
    fallback_records,
    job_lock,
    run_in_subprocess,
    should_run,
    skip_message,
    worst_status,
)
from bench.spec import JobSpec

# executor -> (module it needs, how to install it)
EXTRAS = {
    "ray": ("ray", "pip install -e '.[ray]' (or: pip install 'ray[default]>=2.30')"),
    "slurm": ("submitit", "pip install -e '.[slurm]' (or: pip install 'submitit>=1.5')"),
}
SLURM_MODES = ("slurm", "local", "debug")
DEFAULT_SLURM_MINUTES = 24 * 60  # submitit's own default is 5 minutes: too short for any real job


def run(
    executor: str,
    jobs: list[JobSpec],
    *,
    force: bool = False,
    rerun_failed: bool = False,
    progress: bool = True,
    options: ExecutorOptions | None = None,
) -> list[tuple[JobSpec, str]]:
    """Run ``jobs`` on ``executor``; (job, status) per job in plan order, skipped ones included.

    Resuming: a task whose record exists is skipped (``rerun_failed``: unless it did not finish
    ``ok``; ``force``: always rerun). A missing, unreadable or canceled record is always rerun. A
    job whose group has some tasks done trains again and evaluates only the others.
    """
    if executor not in EXECUTORS:
        raise UsageError(f"unknown executor '{executor}'; choose one of {', '.join(EXECUTORS)}")
    options = options or ExecutorOptions()
    return EXECUTORS[executor](jobs, force=force, rerun_failed=rerun_failed, progress=progress, options=options)


def run_job(job: JobSpec, *, force: bool, rerun_failed: bool, launch: dict[str, Any]) -> str:
    """One job where it landed (here, a Ray worker, a SLURM node): lock, check its records
    again, run. The re-check skips a job that another sweep finished since the plan."""
    try:
        with job_lock(job):
            todo, statuses = should_run(job, force=force, rerun_failed=rerun_failed)
            if not todo:
                return skip_message(job, statuses)[1]
            return run_in_subprocess(replace(job, eval_tasks=todo), **launch)
    except Locked:
        return "skipped (locked)"


# ---------------------------------------------------------------------------------------------
# Local: one job after another on this machine
# ---------------------------------------------------------------------------------------------
def run_local(
    jobs: list[JobSpec], *, force: bool, rerun_failed: bool, progress: bool, options: ExecutorOptions
) -> list[tuple[JobSpec, str]]:
    """Each job in a fresh subprocess here, in plan order; a canceled job stops the sweep."""
    todo, skipped = triage(jobs, force=force, rerun_failed=rerun_failed)
    done: dict[int, tuple[JobSpec, str]] = {}
    bar = _Progress(len(todo), progress)
    try:
        for i, job in todo:
            bar.bar.set_postfix_str(job.title)
            started = time.time()
            status = run_job(job, force=force, rerun_failed=rerun_failed, launch=options.launch(job))
            done[i] = (job, status)
            bar.done(job, status, time.time() - started)
            if status == "canceled":
                break
    finally:
        bar.close()
    return _in_order(len(jobs), skipped, done, jobs)


# ---------------------------------------------------------------------------------------------
# Shared by the engines
# ---------------------------------------------------------------------------------------------
def require(executor: str):
    """The engine's module, or a one-line error saying how to install it."""
    module, hint = EXTRAS[executor]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(f"--executor {executor} needs the optional '{executor}' extra: {hint}") from None


def triage(
    jobs: list[JobSpec], *, force: bool, rerun_failed: bool
) -> tuple[list[tuple[int, JobSpec]], dict[int, str]]:
    """(index, job) to submit, trimmed to unfinished tasks with the output dir made absolute for
    remote workers, and the statuses of skipped jobs by index, as the local loop decides them."""
    todo, skipped = [], {}
    for i, job in enumerate(jobs):
        tasks, statuses = should_run(job, force=force, rerun_failed=rerun_failed)
        if not tasks:
            line, skipped[i] = skip_message(job, statuses)
            print(line, file=sys.stderr)
            continue
        todo.append((i, replace(job, eval_tasks=tasks, output_dir=str(Path(job.output_dir).resolve()))))
    return todo, skipped


def lost(job: JobSpec, status: str, error: str, submitted: float) -> str:
    """Records for a job whose engine lost it (worker or node died, canceled before it ran)."""
    fallback_records(job, status, error, submitted)
    return worst_status(existing_status(p) or "failed" for p in job.record_paths)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[-1] if text else ''}"[:300]


class _Progress:
    """The sweep's bar and one line per finished job, as the local loop prints them."""

    def __init__(self, total: int, enabled: bool):
        from tqdm.auto import tqdm

        self.tqdm = tqdm
        self.bar = tqdm(
            total=total, desc="sweep", unit="job", disable=not enabled, dynamic_ncols=True, file=sys.stderr
        )

    def done(self, job: JobSpec, status: str, seconds: float, where: str = "") -> None:
        if status == "skipped (locked)":
            self.tqdm.write(f"skip     {job.title}: another sweep is running it", file=sys.stderr)
        else:
            self.tqdm.write(f"{status:<8} {job.title} ({seconds:.0f}s{where})", file=sys.stderr)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _in_order(n: int, skipped: dict[int, str], done: dict[int, tuple[JobSpec, str]], jobs: list[JobSpec]):
    return [done[i] if i in done else (jobs[i], skipped[i]) for i in range(n) if i in done or i in skipped]


# ---------------------------------------------------------------------------------------------
# Ray
# ---------------------------------------------------------------------------------------------
def largest_node(ray, name: str) -> float:
    """The most of resource ``name`` (``CPU``, ``GPU``) that one live node of the cluster has."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    return max((r.get(name, 0.0) for r in nodes), default=0.0)


def check_ray_resources(ray, need: dict[str, float], where: str) -> None:
    """Fail fast when no node of the cluster can ever hold one job: Ray would queue it forever."""
    for name, amount in need.items():
        best = largest_node(ray, name)
        if amount > best:
            if name == "GPU":
                hint = (
                    "connect to a cluster with GPU nodes (--ray-address), lower --gpus-per-job, "
                    "or run the jobs on CPU (--device cpu)"
                )
            else:
                hint = "add CPUs (--ray-num-cpus on a local cluster) or lower --gpus-per-job"
            raise UsageError(
                f"the Ray cluster ({where}) has no node with {amount:g} {name}(s) for a job "
                f"(the largest has {best:g}); the jobs would wait forever: {hint}"
            )


def cpu_fallback(ray, options: ExecutorOptions, job: JobSpec, where: str) -> ExecutorOptions:
    """``options`` for a cluster without GPUs: with ``--device auto`` and no ``--gpus-per-job``,
    the jobs run on CPU (as ``--device auto`` does on a machine without a GPU) instead of waiting
    forever for one; an explicit ``--gpus-per-job`` or ``--device cuda`` keeps asking for GPUs."""
    if job.device != "auto" or options.gpus_per_job is not None or largest_node(ray, "GPU") >= 1:
        return options
    print(
        f"the Ray cluster ({where}) has no GPU: the jobs run on CPU (--device auto; "
        "--gpus-per-job 1 would wait for a GPU node instead)",
        file=sys.stderr,
    )
    return replace(options, gpus_per_job=0)  # 0: no GPU reserved, and CUDA hidden from the job


def run_ray(
    jobs: list[JobSpec], *, force: bool, rerun_failed: bool, progress: bool, options: ExecutorOptions
) -> list[tuple[JobSpec, str]]:
    """One Ray task per job, placed by its CPU/GPU needs; each runs ``run_job`` on its worker.

    Connects to ``options.ray_address`` (or $RAY_ADDRESS), else starts a local cluster, unless
    this process is already connected (``bench scale`` does that). On a cluster without GPUs,
    ``--device auto`` jobs run on CPU (:func:`cpu_fallback`). Tasks are not retried: a
    job whose worker or node dies is recorded ``failed`` and ``--rerun-failed`` reruns it.
    """
    ray = require("ray")
    todo, skipped = triage(jobs, force=force, rerun_failed=rerun_failed)
    if not todo:
        return _in_order(len(jobs), skipped, {}, jobs)
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=options.ray_address,
            num_cpus=options.ray_num_cpus,
            include_dashboard=False,
            log_to_driver=True,
        )
    where = options.ray_address or "local"
    done: dict[int, tuple[JobSpec, str]] = {}
    try:
        sample = todo[0][1]
        options = cpu_fallback(ray, options, sample, where)
        need = {"CPU": options.cpus(sample), "GPU": options.gpus(sample)}
        check_ray_resources(ray, {k: v for k, v in need.items() if v > 0}, where)
        task = ray.remote(num_cpus=need["CPU"], num_gpus=need["GPU"], max_retries=0)(run_job)
        refs = {}
        for i, job in todo:
            ref = task.options(name=job.title).remote(
                job, force=force, rerun_failed=rerun_failed, launch=options.launch(job)
            )
            refs[ref] = (i, job, time.time())
        print(f"{len(refs)} Ray task(s) on the {where} cluster", file=sys.stderr)
        bar = _Progress(len(refs), progress)
        pending = list(refs)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                for ref in ready:
                    i, job, submitted = refs[ref]
                    try:
                        status = ray.get(ref)
                    except ray.exceptions.RayError as err:  # the worker or its node died
                        status = lost(job, "failed", f"Ray task lost: {_first_line(err)}", submitted)
                    done[i] = (job, status)
                    bar.done(job, status, time.time() - submitted)
        except KeyboardInterrupt:
            # Pending tasks never start; running ones get a KeyboardInterrupt, and the job
            # process a SIGTERM from its launcher: it records itself canceled.
            for ref in pending:
                ray.cancel(ref)
            for ref in pending:
                i, job, submitted = refs[ref]
                try:
                    status = ray.get(ref, timeout=90)
                except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError):
                    status = lost(job, "canceled", "canceled before the job could record itself", submitted)
                done[i] = (job, status)
        finally:
            bar.close()
    finally:
        if started_here:
            ray.shutdown()
    return _in_order(len(jobs), skipped, done, jobs)


# ---------------------------------------------------------------------------------------------
# SLURM (submitit)
# ---------------------------------------------------------------------------------------------
def submitit_executor(options: ExecutorOptions, output_dir: str, sample: JobSpec | None = None):
    """submitit's executor for ``options``, parameters checked (a UsageError names a bad one).

    Parameters: defaults (name, time limit from ``--job-timeout`` or 24 h, GPUs and CPUs per
    job), then the ``--slurm-config`` file, then flags (``options.slurm_parameters`` holds both).
    """
    submitit = require("slurm")
    folder = options.slurm_folder or str(Path(output_dir).resolve() / ".submitit" / "%j")
    minutes = math.ceil(options.job_timeout / 60) + 5 if options.job_timeout else DEFAULT_SLURM_MINUTES
    params: dict[str, Any] = {"name": "peft-bench", "timeout_min": minutes, "tasks_per_node": 1}
    if sample is not None:
        params.update(gpus_per_node=options.gpus(sample))
        if options.cpus(sample) > 1:
            params.update(cpus_per_task=options.cpus(sample))
    params.update(options.slurm_parameters)
    if sample is not None and options.gpus_per_job is not None:  # the flag wins over the file
        params.update(gpus_per_node=options.gpus(sample))
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster=options.slurm_mode)
        executor.update_parameters(**params)
    except (NameError, AssertionError, TypeError, ValueError) as err:
        text = " ".join(str(err).split())[:400]
        raise UsageError(
            f"submitit rejected the SLURM settings ({text}); check --slurm-config and --slurm-* flags"
        ) from None
    return executor


def run_submitit(
    jobs: list[JobSpec], *, force: bool, rerun_failed: bool, progress: bool, options: ExecutorOptions
) -> list[tuple[JobSpec, str]]:
    """All jobs as one SLURM job array (submitit), each running ``run_job`` on its node.

    ``options.slurm_mode`` ``local`` runs the same array as subprocesses of this machine
    (submitit's LocalExecutor), ``debug`` in this process: both for testing.
    """
    todo, skipped = triage(jobs, force=force, rerun_failed=rerun_failed)
    if not todo:
        return _in_order(len(jobs), skipped, {}, jobs)
    executor = submitit_executor(options, todo[0][1].output_dir, todo[0][1])
    submitted = time.time()
    try:
        with executor.batch():  # one job array; slurm_array_parallelism caps how many run at once
            handles = [
                executor.submit(run_job, job, force=force, rerun_failed=rerun_failed, launch=options.launch(job))
                for _, job in todo
            ]
    except Exception as err:  # sbatch refused the array: nothing was submitted
        raise UsageError(f"submitting the SLURM job array failed: {_first_line(err)}") from None
    kind = {"slurm": "SLURM", "local": "submitit-local", "debug": "submitit-debug"}[options.slurm_mode]
    print(f"{len(handles)} {kind} job(s), array {handles[0].job_id.split('_')[0]}", file=sys.stderr)
    bar = _Progress(len(handles), progress)
    pending = {h: (i, job) for h, (i, job) in zip(handles, todo, strict=True)}
    done: dict[int, tuple[JobSpec, str]] = {}
    poll = 2.0 if options.slurm_mode == "slurm" else 0.5  # done() stats result files; submitit throttles sacct
    try:
        while pending:
            finished = [h for h in pending if h.done()]
            for h in finished:
                i, job = pending.pop(h)
                try:
                    status = h.result()
                except Exception as err:  # the SLURM job died: time limit, node failure, scancel
                    status = lost(job, "failed", f"SLURM job {h.job_id} failed: {_first_line(err)}", submitted)
                done[i] = (job, status)
                bar.done(job, status, time.time() - submitted, f", job {h.job_id}")
            if pending and not finished:
                time.sleep(poll)
    except KeyboardInterrupt:
        for h in pending:
            h.cancel(check=False)  # scancel: SLURM sends SIGTERM, the job records itself canceled
        deadline = time.time() + 90
        while any(not h.done() for h in pending) and time.time() < deadline:
            time.sleep(1)
        for i, job in pending.values():
            lost(job, "canceled", "canceled before the job could record itself", submitted)
            done[i] = (job, "canceled")
    finally:
        bar.close()
    return _in_order(len(jobs), skipped, done, jobs)


EXECUTORS = {"local": run_local, "ray": run_ray, "slurm": run_submitit}
"""Executor name -> ``run_<name>(jobs, *, force, rerun_failed, progress, options)``."""
