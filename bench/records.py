"""Run records: one versioned JSON file per job, written atomically, read by reports only.

File name: ``<method label>--<task>--seed<N>.json`` (``indent=2``, sorted keys). Sections:

``run``     what ran: method, method_label, method_config, task, task_version, suite, protocol,
            seed, model, budget, preset, smoke, command, git_sha, git_dirty, data_dir,
            started_at, finished_at
``result``  status (ok | failed | diverged | canceled), error, metrics, primary_metric,
            n_eval, n_train_examples, final_loss
``cost``    trainable_params, total_params, trainable_fraction, buffer_params (e.g. indices),
            peak_memory_mb (peak RSS of the job process; CUDA figures when on a GPU),
            memory (per-source detail), breakdown (CPU: exact bytes of parameters, gradients,
            optimizer state and saved-for-backward tensors on one step), train_seconds,
            eval_seconds, train_tokens_per_s, train_samples_per_s, eval_samples_per_s,
            steps_timed, warmup_steps
``env``     package versions, python, platform, device, cpu/gpu name, threads
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench.errors import UsageError

SCHEMA_VERSION = 1
"""Bumped when a field changes meaning or is removed; readers refuse newer versions."""

Status = Literal["ok", "failed", "diverged", "canceled"]
STATUSES = ("ok", "failed", "diverged", "canceled")


@dataclass
class RunRecord:
    run: dict[str, Any]
    """What ran (see module docstring)."""
    result: dict[str, Any]
    """Status, error, metrics."""
    cost: dict[str, Any] = field(default_factory=dict)
    """Parameters, memory, time, throughput."""
    env: dict[str, Any] = field(default_factory=dict)
    """Package versions, device, threads."""
    schema_version: int = SCHEMA_VERSION

    @property
    def status(self) -> str:
        return self.result.get("status", "failed")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def record_name(label: str, task: str, seed: int) -> str:
    return f"{label}--{task}--seed{seed}.json"


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` via a temp file in the same folder and ``os.replace``.

    A reader, or a sweep killed at any moment, sees the old file or the new one, never a
    half-written one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would hide results from others on a shared FS
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(record: RunRecord, output_dir: str | os.PathLike) -> Path:
    run = record.run
    path = Path(output_dir) / record_name(run["method_label"], run["task"], run["seed"])
    write_atomic(path, json.dumps(record.to_dict(), indent=2, sort_keys=True, default=str) + "\n")
    return path


def load(path: str | os.PathLike) -> RunRecord:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UsageError(f"record '{path}' is not valid JSON ({err.msg}); delete it and rerun the job") from None
    version = data.get("schema_version")
    if not isinstance(version, int):
        raise UsageError(f"record '{path}' has no schema_version; it was not written by peft-bench")
    if version > SCHEMA_VERSION:
        raise UsageError(
            f"record '{path}' has schema_version {version}, newer than this peft-bench "
            f"({SCHEMA_VERSION}); upgrade peft-bench to read it"
        )
    return RunRecord(
        run=data["run"],
        result=data["result"],
        cost=data.get("cost", {}),
        env=data.get("env", {}),
        schema_version=version,
    )


def iter_records(directory: str | os.PathLike) -> Iterator[tuple[Path, RunRecord]]:
    """Every record in ``directory`` (sorted by file name); temp files are skipped."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"records folder '{directory}' does not exist; run `python -m bench run` first")
    for path in sorted(directory.glob("*.json")):
        yield path, load(path)
