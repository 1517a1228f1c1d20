"""Executors: where a sweep's jobs run. ``local`` (this machine, one job at a time), ``ray``
(Ray core: one task per job) and ``slurm`` (submitit: one job array).

Every executor runs a job the same way, through ``bench.runner.run_in_subprocess``: a fresh
``python -m bench.runner`` process (under ``accelerate launch`` with ``--gpus-per-job N > 1``)
that writes the job's own records; if it dies first, the launcher writes ``failed`` or
``canceled`` records for it. Resuming is the same everywhere: the driver skips jobs whose
records exist (``runner.should_run``) and the worker checks again under the job's lock, so a
job another sweep finished meanwhile is not run twice.

Ray and SLURM workers write records straight into ``--output-dir``, which must therefore be
on a filesystem that the driver and every node share (the path is made absolute for them),
and every node must import this project (``pip install -e .`` in a shared environment, or
``--slurm-setup`` lines that activate one). The per-record locks are ``flock`` locks; across
nodes they hold only where the shared filesystem implements ``flock`` (NFSv4, Lustre mounted
with ``-o flock``, BeeGFS, GPFS), so do not point two sweeps at one folder elsewhere.

To add an executor: a ``run_<name>(jobs, *, force, rerun_failed, progress, options)`` that
returns ``(job, status)`` per job, an entry in :data:`EXECUTORS`, and its flags here.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import math
import re
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.errors import UsageError
from bench.runner import (
    JobSpec,
    Locked,
    _fallback_records,
    existing_status,
    job_lock,
    run_in_subprocess,
    should_run,
    worst_status,
)

EXECUTORS = ("local", "ray", "slurm")
# executor -> (module it needs, how to install it)
EXTRAS = {
    "ray": ("ray", "pip install -e '.[ray]' (or: pip install 'ray[default]>=2.30')"),
    "slurm": ("submitit", "pip install -e '.[slurm]' (or: pip install 'submitit>=1.5')"),
}
SLURM_MODES = ("slurm", "local", "debug")
DEFAULT_SLURM_MINUTES = 24 * 60  # submitit's own default is 5 minutes: too short for any real job


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
        """Keyword arguments of ``runner.run_in_subprocess`` for ``job``."""
        # --gpus-per-job 0: hide GPUs, since Ray leaves CUDA_VISIBLE_DEVICES unset for GPU-less tasks.
        env = {"CUDA_VISIBLE_DEVICES": ""} if self.gpus_per_job == 0 else {}
        return {"processes": self.processes, "timeout": self.job_timeout, "env": env}


def run(
    executor: str,
    jobs: list[JobSpec],
    *,
    force: bool = False,
    rerun_failed: bool = False,
    progress: bool = True,
    options: ExecutorOptions | None = None,
) -> list[tuple[JobSpec, str]]:
    """Run ``jobs`` on ``executor``; (job, status) per job in plan order, skipped ones included."""
    from bench import runner

    options = options or ExecutorOptions()
    kwargs = dict(force=force, rerun_failed=rerun_failed, progress=progress, options=options)
    if executor == "local":
        return runner.run_sweep(jobs, executor="local", **kwargs)
    if executor == "ray":
        return run_ray(jobs, **kwargs)
    if executor == "slurm":
        return run_submitit(jobs, **kwargs)
    raise UsageError(f"unknown executor '{executor}'; choose one of {', '.join(EXECUTORS)}")


def run_job(job: JobSpec, *, force: bool, rerun_failed: bool, launch: dict[str, Any]) -> str:
    """One job where it landed (a Ray worker, a SLURM node): lock, check its records again, run.

    The same steps as the local loop; the re-check skips a job that another sweep finished
    between this sweep's plan and now.
    """
    try:
        with job_lock(job):
            todo, statuses = should_run(job, force=force, rerun_failed=rerun_failed)
            if not todo:
                return f"skipped ({','.join(sorted({str(s) for s in statuses.values()}))})"
            return run_in_subprocess(replace(job, eval_tasks=todo), **launch)
    except Locked:
        return "skipped (locked)"


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
            existing = ",".join(sorted({str(s) for s in statuses.values()}))
            hint = "--force" if existing == "ok" else "--rerun-failed or --force"
            print(f"skip     {job.title}: record exists ({existing}); {hint} to rerun", file=sys.stderr)
            skipped[i] = f"skipped ({existing})"
            continue
        todo.append((i, replace(job, eval_tasks=tasks, output_dir=str(Path(job.output_dir).resolve()))))
    return todo, skipped


def lost(job: JobSpec, status: str, error: str, submitted: float) -> str:
    """Records for a job whose engine lost it (worker or node died, canceled before it ran)."""
    _fallback_records(job, status, error, submitted)
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
        self.tqdm.write(f"{status:<8} {job.title} ({seconds:.0f}s{where})", file=sys.stderr)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _in_order(n: int, skipped: dict[int, str], done: dict[int, tuple[JobSpec, str]], jobs: list[JobSpec]):
    return [done[i] if i in done else (jobs[i], skipped[i]) for i in range(n) if i in done or i in skipped]


# ---------------------------------------------------------------------------------------------
# Ray
# ---------------------------------------------------------------------------------------------
def check_ray_resources(ray, need: dict[str, float], where: str) -> None:
    """Fail fast when no node of the cluster can ever hold one job: Ray would queue it forever."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    for name, amount in need.items():
        best = max((r.get(name, 0.0) for r in nodes), default=0.0)
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


def run_ray(
    jobs: list[JobSpec], *, force: bool, rerun_failed: bool, progress: bool, options: ExecutorOptions
) -> list[tuple[JobSpec, str]]:
    """One Ray task per job, placed by its CPU/GPU needs; each runs ``run_job`` on its worker.

    Connects to ``options.ray_address`` (or $RAY_ADDRESS), else starts a local cluster, unless
    this process is already connected (``bench scale`` does that). Tasks are not retried: a
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


# ---------------------------------------------------------------------------------------------
# CLI: the "scale-out" flags of `run`, validated before anything runs
# ---------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("scale-out (see README: Running on a cluster)")
    group.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local: one job at a time here (default); ray: Ray tasks; slurm: a SLURM job array (submitit)",
    )
    group.add_argument(
        "--gpus-per-job",
        type=int,
        default=None,
        metavar="N",
        help="GPUs per job (default 1; 0 with --device cpu); N > 1 runs a job under `accelerate launch` "
        "with N processes (with --device cpu: N CPU processes, for testing)",
    )
    group.add_argument(
        "--job-timeout",
        default=None,
        metavar="TIME",
        help="stop a job after TIME (seconds, or 90m, 2h, 1d) and record it failed",
    )
    group.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="an existing Ray cluster (auto, host:6379, ray://host:10001)",
    )
    group.add_argument(
        "--ray-num-cpus", type=int, default=None, metavar="N", help="CPUs of the local Ray cluster started here"
    )
    group.add_argument(
        "--slurm-mode",
        choices=SLURM_MODES,
        default=None,
        help="slurm: sbatch (default); local: submitit's local executor (subprocesses here); debug: in-process",
    )
    group.add_argument("--slurm-partition", default=None, metavar="NAME", help="SLURM partition")
    group.add_argument(
        "--slurm-time",
        default=None,
        metavar="TIME",
        help="SLURM time limit per job: minutes, HH:MM:SS or D-HH:MM:SS (default: --job-timeout + 5 min, else 24 h)",
    )
    group.add_argument(
        "--slurm-setup",
        action="append",
        default=None,
        metavar="LINE",
        help="a shell line run before each job, e.g. 'source .venv/bin/activate' (repeatable)",
    )
    group.add_argument(
        "--slurm-array-parallelism", type=int, default=None, metavar="N", help="at most N jobs of the array at once"
    )
    group.add_argument(
        "--slurm-config",
        default=None,
        metavar="FILE",
        help="TOML or JSON of submitit parameters (slurm_partition, timeout_min, gpus_per_node, cpus_per_task, "
        "mem_gb, slurm_setup, slurm_additional_parameters, ...); flags override it",
    )
    group.add_argument(
        "--slurm-folder", default=None, metavar="DIR", help="submitit's logs (default: OUTPUT_DIR/.submitit)"
    )


RAY_FLAGS = ("ray_address", "ray_num_cpus")
SLURM_FLAGS = (
    "slurm_mode",
    "slurm_partition",
    "slurm_time",
    "slurm_setup",
    "slurm_array_parallelism",
    "slurm_config",
    "slurm_folder",
)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def parse_duration(text: str, flag: str) -> float:
    """``90`` (seconds), ``90s``, ``30m``, ``2h``, ``1d`` -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise UsageError(f"{flag} '{text}' must be a positive duration: seconds, or e.g. 90m, 2h, 1d")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def parse_slurm_time(text: str) -> int:
    """SLURM's time formats (minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS) -> minutes."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not m:
        raise UsageError(f"--slurm-time '{text}' must be minutes, HH:MM:SS or D-HH:MM:SS, e.g. --slurm-time 12:00:00")
    days, a, b, c = (int(g) if g else None for g in m.groups())
    if days is not None:  # D-HH[:MM[:SS]]
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:  # HH:MM:SS
        seconds = a * 3600 + b * 60 + c
    elif b is not None:  # MM:SS
        seconds = a * 60 + b
    else:  # minutes
        seconds = a * 60
    if seconds <= 0:
        raise UsageError(f"--slurm-time '{text}' must be positive")
    return math.ceil(seconds / 60)


def read_slurm_config(path: str) -> dict[str, Any]:
    """submitit parameters from a TOML or JSON file."""
    import json

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--slurm-config '{path}' is not a file")
    try:
        if p.suffix == ".json":
            data = json.loads(p.read_text(encoding="utf-8"))
        else:
            try:
                import tomllib
            except ImportError:  # Python 3.10
                raise UsageError(f"--slurm-config '{path}': TOML needs Python 3.11+; use a .json file") from None
            data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise UsageError(f"--slurm-config '{path}' does not parse: {' '.join(str(err).split())}") from None
    if not isinstance(data, dict):
        raise UsageError(f"--slurm-config '{path}' must hold a table of submitit parameters")
    return data


def options_from_args(args: argparse.Namespace, budget) -> ExecutorOptions:
    """The executor options of ``run``'s flags; every bad combination in one UsageError."""
    problems: list[str] = []
    executor = args.executor
    for names, owner in ((RAY_FLAGS, "ray"), (SLURM_FLAGS, "slurm")):
        given = [_flag(n) for n in names if getattr(args, n, None) is not None]
        if given and executor != owner:
            problems.append(f"{', '.join(given)} only apply to --executor {owner} (got --executor {executor})")
    if executor in EXTRAS and importlib.util.find_spec(EXTRAS[executor][0]) is None:
        problems.append(f"--executor {executor} needs the optional '{executor}' extra: {EXTRAS[executor][1]}")
    gpus = args.gpus_per_job
    device = args.device
    if gpus is not None and gpus < 0:
        problems.append(f"--gpus-per-job {gpus} must be 0 or more")
    elif gpus == 0 and device.startswith("cuda"):
        problems.append(f"--gpus-per-job 0 contradicts --device {device}; use --device cpu or auto")
    elif gpus is not None and gpus > 1:
        if budget.micro_batch_size % gpus:
            problems.append(
                f"--gpus-per-job {gpus} splits every micro-batch over {gpus} processes; the micro-batch "
                f"size {budget.micro_batch_size} must be a multiple of it (set --micro-batch-size)"
            )
        if executor == "local" and device != "cpu":
            import torch

            have = torch.cuda.device_count()
            if have < gpus:
                problems.append(
                    f"--gpus-per-job {gpus}: this machine has {have} GPU(s); use --executor ray|slurm, "
                    f"or --device cpu to run {gpus} CPU processes (for testing)"
                )
    timeout = None
    if args.job_timeout is not None:
        try:
            timeout = parse_duration(args.job_timeout, "--job-timeout")
        except UsageError as err:
            problems.append(str(err))
    if args.ray_num_cpus is not None and (args.ray_num_cpus <= 0 or args.ray_address):
        problems.append("--ray-num-cpus sizes a local Ray cluster: a positive number, and not with --ray-address")
    for name in ("slurm_array_parallelism",):
        value = getattr(args, name)
        if value is not None and value <= 0:
            problems.append(f"{_flag(name)} {value} must be a positive integer")
    slurm: dict[str, Any] = {}
    mode = args.slurm_mode or "slurm"
    if executor == "slurm":
        if args.slurm_config:
            try:
                slurm.update(read_slurm_config(args.slurm_config))
            except UsageError as err:
                problems.append(str(err))
        if args.slurm_time:
            try:
                slurm["timeout_min"] = parse_slurm_time(args.slurm_time)
            except UsageError as err:
                problems.append(str(err))
        if args.slurm_partition:
            slurm["slurm_partition"] = args.slurm_partition
        if args.slurm_setup:
            slurm["slurm_setup"] = [*slurm.get("slurm_setup", []), *args.slurm_setup]
        if args.slurm_array_parallelism:
            slurm["slurm_array_parallelism"] = args.slurm_array_parallelism
        if mode == "slurm" and shutil.which("sbatch") is None:
            problems.append(
                "--executor slurm: sbatch is not on PATH; run on a SLURM login node, or test with --slurm-mode local"
            )
    if problems:
        raise UsageError("; ".join(dict.fromkeys(problems)))
    options = ExecutorOptions(
        gpus_per_job=gpus,
        job_timeout=timeout,
        ray_address=args.ray_address,
        ray_num_cpus=args.ray_num_cpus,
        slurm_mode=mode,
        slurm_folder=args.slurm_folder,
        slurm_parameters=slurm,
    )
    if executor == "slurm":  # submitit checks every parameter name and type now, not at submission
        submitit_executor(options, args.output_dir)
    return options
