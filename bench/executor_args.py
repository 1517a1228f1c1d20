"""The scale-out flags of ``run`` (``--executor``, ``--gpus-per-job``, ``--job-timeout``, Ray and
SLURM settings), validated into :class:`~bench.launch.ExecutorOptions` before anything runs."""

from __future__ import annotations

import argparse
import importlib.util
import math
import re
import shutil
from pathlib import Path
from typing import Any

from bench.errors import UsageError
from bench.executors import EXECUTORS, EXTRAS, SLURM_MODES, submitit_executor
from bench.launch import ExecutorOptions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("scale-out (see README: Running on a cluster)")
    group.add_argument(
        "--executor",
        choices=list(EXECUTORS),
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
