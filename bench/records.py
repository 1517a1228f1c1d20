"""Run records: one versioned JSON file per job and task, written atomically, read by reports only.

File name: ``<method label>--<task>--seed<N>.json`` (``indent=2``, sorted keys). The sections are
typed below (:class:`RunSection`, :class:`ResultSection`, :class:`CostSection`,
:class:`EnvSection`), one comment per key, as lm-eval's result schema. :func:`build` is the one
function that assembles a record, for the job (``bench.runner``) and for the launcher's fallback
records (``bench.launch``) alike. Keys are added over time; readers use ``.get`` for all but
``run.method_label``, ``run.task``, ``run.seed`` and ``result.status``, so older records stay
readable.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, TypedDict

from bench.errors import UsageError

SCHEMA_VERSION = 1
"""Bumped when a field changes meaning or is removed; readers refuse newer versions. Adding a
key does not bump it (readers tolerate keys they do not know and the absence of new ones)."""

Status = Literal["ok", "failed", "diverged", "canceled"]
STATUSES = ("ok", "failed", "diverged", "canceled")
EXIT_CODES = {"ok": 0, "failed": 1, "diverged": 3, "canceled": 130}
"""A job process's exit code for its worst status (``bench.runner`` sets it, ``bench.launch`` reads it)."""


def worst_status(statuses) -> str:
    """The worst of ``statuses`` (canceled > failed > diverged > ok); ``failed`` for none."""
    found = set(statuses)
    return next((s for s in ("canceled", "failed", "diverged", "ok") if s in found), "failed")


class RunSection(TypedDict, total=False):
    """What ran: enough to rerun it (``command``) and to judge whether two runs are comparable."""

    method: str  # registry name (``neuroada``)
    method_label: str  # the name in tables and file names: the method plus its --set overrides
    method_config: dict[str, Any]  # every field of the method's config dataclass
    task: str  # the evaluated task
    task_version: int  # TaskConfig.version: bumped when prompt, extraction or data change
    suite: str  # commonsense | arithmetic | glue | toy
    kind: str  # generate | multiple_choice | classify | regress
    protocol: str  # how the task is scored (``loglik``, ``generate-greedy``, ...)
    primary_metric: str  # the metric shown in tables
    contaminated_by: list[str]  # train files known to contain this task's eval problems
    train_task: str  # the task whose train file trained the model (a suite mixture is shared)
    train_file: str | None  # relative to the data dir
    trained_with: list[str]  # every task evaluated from the same training run
    train_per_task: bool  # --train-per-task: each task trained on its own train file
    seed: int
    model: str  # alias, folder or hub name
    dtype: str  # float32 | bfloat16
    budget: dict[str, Any]  # bench.config.Budget: identical for every method on a task (a recipe aside)
    epoch_steps: dict[str, Any]  # with budget.epochs: epochs, n_train, steps_per_epoch, max_steps, rule
    recipe: dict[str, Any] | None  # bench.recipes: the preset's per-method settings, their source, differences
    preset: str  # the budget preset's name
    smoke: bool  # a reduced budget or --limit: kept out of report tables
    data_dir: str | None  # absolute; None: the hub
    threads: int | None  # torch CPU threads
    device: str  # as asked: auto | cpu | cuda | cuda:N
    evaluator: str  # native | lm-eval
    match_params: dict[str, Any] | None  # --match-params: reference, target, knob, value, achieved, note
    trust_remote_code: bool
    command: str  # the command line that reruns this job
    git_sha: str | None  # the code's commit
    git_dirty: bool | None  # uncommitted changes to tracked files when it ran
    started_at: str  # UTC, ISO 8601
    finished_at: str  # UTC, ISO 8601


class ResultSection(TypedDict, total=False):
    """How it ended and what it scored."""

    status: Status  # ok | failed | diverged (loss not finite) | canceled (Ctrl-C, SIGTERM)
    error: str | None  # one line: why the job did not finish ok
    traceback: str  # the last frames, for a failed job
    metrics: dict[str, float]  # metric name -> value (percent for accuracy-like metrics)
    higher_is_better: dict[str, bool]  # metric name -> direction, from the task's declaration
    primary_metric: str  # the metric shown in tables
    n_eval: int  # items evaluated
    samples: list[dict[str, Any]]  # a few eval items with the raw output, for reading
    items: dict[str, list[Any]]  # per eval item, in order: id, prediction, reference, correct (not for
    # regression), correct_norm (log-likelihood tasks): what paired tests and intervals use
    items_hash: str  # sha256 of the evaluated rows: runs are paired only when it is equal
    evaluated: str  # merged: the method was folded into the weights before evaluation;
    # unmerged: the method has no merge (some peft methods; tables add "(unmerged)" to its label)
    evaluator: str  # native | lm-eval
    training: str  # zero-shot (nothing trained) | linear-probe (the head alone) | fine-tuned
    n_train_examples: int  # encoded training examples
    samples_seen: int  # training examples consumed (steps x batch)
    final_loss: float | None  # mean loss of the last optimizer step
    losses: list[float]  # loss per optimizer step (up to the break for a diverged job)


class CostSection(TypedDict, total=False):
    """What it cost: parameters, memory, time."""

    trainable_params: int  # counted the method's way (masked sparse: selected entries), head included
    total_params: int  # parameters of the base model with its head, before the method
    trainable_fraction: float  # trainable_params / total_params
    head_params: int  # parameters of a new classification head (trained by every method)
    head_trained: bool
    buffer_params: int  # buffer entries the method added (NeuroAda's indices)
    peak_memory_mb: float  # torch allocator peak on CUDA, else the job's peak RSS
    memory: dict[str, Any]  # per-source detail: peak_rss_mb, torch_max_allocated_mb, ...
    memory_before_train: dict[str, Any]  # the same, after building the model (before the reset)
    memory_train: dict[str, Any]  # the same, after training
    memory_nvml: dict[str, Any]  # pynvml's device-used memory during the run, or why not measured
    breakdown: dict[str, Any]  # CPU: exact bytes of params, grads, optimizer state, saved tensors
    train_seconds: float  # wall time of the timed training steps
    train_tokens_per_s: float  # non-padding tokens per second, warm-up excluded
    train_samples_per_s: float
    steps_timed: int  # optimizer steps in the timing (after warm-up)
    warmup_steps: int  # optimizer steps left out of the timing
    tokens_seen: int
    eval_seconds: float
    eval_samples_per_s: float | None


class EnvSection(TypedDict, total=False):
    """Where it ran."""

    packages: dict[str, str]  # versions of torch, transformers, peft, lm-eval, ...
    python: str
    platform: str
    device: str  # the resolved device
    cpu: str  # the CPU's model name
    cpu_count: int
    gpu: str  # the GPU's name (CUDA jobs only)
    cuda: str  # torch's CUDA version (CUDA jobs only)
    threads: int  # torch's CPU threads
    world_size: int  # processes of a multi-process job


@dataclass
class RunRecord:
    run: RunSection
    result: ResultSection
    cost: CostSection = field(default_factory=dict)  # type: ignore[assignment]
    env: EnvSection = field(default_factory=dict)  # type: ignore[assignment]
    schema_version: int = SCHEMA_VERSION

    @property
    def status(self) -> str:
        return self.result.get("status", "failed")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def now() -> str:
    """UTC time, ISO 8601 to the second, as records store it."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def build(
    run: dict[str, Any],
    *,
    status: str,
    error: str | None = None,
    result: dict[str, Any] | None = None,
    cost: dict[str, Any] | None = None,
    env: dict[str, Any] | None = None,
    higher_is_better: dict[str, bool] | None = None,
) -> RunRecord:
    """The one way a record is made: the run section, a status, and what else is known.

    ``result`` adds metrics, losses, sample items; ``higher_is_better`` the task's metric
    directions (every record carries them, so reports need no list of their own). A record that
    did not end ``ok`` keeps no metrics.
    """
    section: dict[str, Any] = {**(result or {}), "status": status, "error": error}
    section.setdefault("metrics", {})
    if status != "ok":
        section["metrics"] = {}
    if higher_is_better is not None:
        section["higher_is_better"] = dict(higher_is_better)
    if run.get("primary_metric"):
        section.setdefault("primary_metric", run["primary_metric"])
    return RunRecord(run=run, result=section, cost=dict(cost or {}), env=dict(env or {}))  # type: ignore[arg-type]


def items_hash(rows: list[dict[str, Any]]) -> str:
    """A fingerprint of the evaluated items (the raw rows, in order), so that a comparison can
    refuse to pair runs that saw different items."""
    import hashlib

    text = json.dumps(rows, sort_keys=True, ensure_ascii=False, default=str)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


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
