"""Plan a sweep (methods x tasks x seeds), run each job in a fresh subprocess, record it.

``run_one(spec)`` is the whole job, top to bottom: seed, load data and model, apply the method,
train, merge, evaluate, measure, record. The local executor runs jobs one at a time, each in
its own Python process so that peak memory is per job and a crash cannot take the sweep down.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import random
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import records
from bench.config import Budget, build_config, config_to_dict, method_label
from bench.errors import UsageError
from bench.records import RunRecord

EXIT_CODES = {"ok": 0, "failed": 1, "diverged": 3, "canceled": 130}


@dataclass(frozen=True)
class JobSpec:
    """Everything one job needs; serialised to JSON for the job's subprocess and the record."""

    method: str
    label: str
    method_config: dict[str, Any]
    task: str
    seed: int
    model: str
    budget: dict[str, Any]
    preset: str
    smoke: bool
    data_dir: str | None
    output_dir: str
    threads: int | None
    device: str
    command: str
    trust_remote_code: bool = False
    progress: bool = True
    eval_tasks: tuple[str, ...] = ()
    """Tasks evaluated after training (default: ``task`` alone). Tasks that share a training
    set (the commonsense mixture, math_10k) train once and are evaluated one by one."""
    train_per_task: bool = False
    """Train on each task's own train file instead of its suite's shared mixture."""
    evaluator: str = "native"
    """``native`` (bench.evaluate) or ``lm-eval`` (lm-evaluation-harness on the merged model)."""

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.eval_tasks) or (self.task,)

    @property
    def record_paths(self) -> list[Path]:
        return [Path(self.output_dir) / records.record_name(self.label, t, self.seed) for t in self.tasks]

    @property
    def record_path(self) -> Path:
        return self.record_paths[0]

    @property
    def title(self) -> str:
        names = self.tasks if len(self.tasks) <= 3 else (*self.tasks[:2], f"+{len(self.tasks) - 2} more")
        return f"{self.label} x {','.join(names)} seed {self.seed}"


# ---------------------------------------------------------------------------------------------
# Planning: resolve every name and validate every config before any model loads
# ---------------------------------------------------------------------------------------------
def plan(
    *,
    methods_spec: str,
    tasks_spec: str,
    seeds: list[int],
    model: str | None,
    budget: Budget | Callable[[Any], Budget],
    preset: str,
    smoke: bool,
    overrides: dict[str, dict[str, str]],
    data_dir: str | None,
    output_dir: str,
    threads: int | None,
    device: str,
    command: str = "",
    trust_remote_code: bool = False,
    progress: bool = True,
    train_per_task: bool = False,
    evaluator: str = "native",
) -> list[JobSpec]:
    """Jobs for methods x task groups x seeds, after validating every name, config and file.

    Tasks that share their training (same train file, hub source, encoding and model) form one
    group, trained once per method and seed and evaluated task by task, as the papers do for the
    commonsense mixture and math_10k; ``train_per_task`` gives each task its own training.
    """
    import methods as method_registry
    import tasks as task_registry
    from bench import models

    method_names = select_methods(methods_spec)
    selected_tasks = task_registry.select(tasks_spec)
    problems: list[str] = []
    if train_per_task:
        try:
            selected_tasks = [task_registry.per_task_train(t) for t in selected_tasks]
        except UsageError as err:
            problems.append(f"--train-per-task: {err}")
    unknown = sorted(set(overrides) - set(method_names))
    if unknown:
        problems.append(f"--set names method(s) not in --methods: {', '.join(unknown)}; add them to --methods")
    configs: dict[str, Any] = {}
    for name in method_names:
        try:
            configs[name] = build_config(method_registry.get(name).config_cls, name, overrides.get(name, {}))
        except UsageError as err:
            problems.append(str(err))
    if evaluator == "lm-eval":
        from bench import lm_eval_bridge

        for task in selected_tasks:
            try:
                lm_eval_bridge.check_supported(task)
            except UsageError as err:
                problems.append(str(err))
    if not _device_name_ok(device):  # only the name: CUDA may exist on the workers, not here
        problems.append(f"--device '{device}' is not a device name; use auto, cpu, cuda or cuda:N")
    for task in selected_tasks:
        try:
            models.check(model or task.default_model)
        except UsageError as err:
            problems.append(str(err))
        if data_dir is not None and task.generator is None:
            for split, rel in (("eval", task.eval_file), ("train", task.train_file)):
                if rel is None or not (Path(data_dir) / rel).is_file():
                    problems.append(
                        f"data dir '{data_dir}' has no {split} file for task '{task.name}' "
                        f"({rel}); point --data-dir at a folder laid out like shared/data"
                    )
                    continue
                try:  # a broken line or a missing field, named by file and line, before any job runs
                    task.load(split, data_dir)
                except UsageError as err:
                    problems.append(str(err))
    if problems:
        raise UsageError("; ".join(dict.fromkeys(problems)))
    problems = validate_on_skeletons(selected_tasks, model, configs, trust_remote_code)
    if problems:
        raise UsageError("; ".join(dict.fromkeys(problems)))
    jobs = []
    for group in group_by_training(selected_tasks, model):
        task = group[0]
        for name in method_names:
            for seed in seeds:
                jobs.append(
                    JobSpec(
                        method=name,
                        label=method_label(name, overrides.get(name, {})),
                        method_config=config_to_dict(configs[name]),
                        task=task.name,
                        seed=seed,
                        model=model or task.default_model,
                        budget=asdict(budget(task) if callable(budget) else budget),
                        preset=preset,
                        smoke=smoke,
                        data_dir=str(Path(data_dir).resolve()) if data_dir else None,
                        output_dir=str(Path(output_dir)),
                        threads=threads,
                        device=device,
                        command=command,
                        trust_remote_code=trust_remote_code,
                        progress=progress,
                        eval_tasks=tuple(t.name for t in group),
                        train_per_task=train_per_task,
                        evaluator=evaluator,
                    )
                )
    newer = [msg for job in jobs for path in job.record_paths if (msg := newer_record(path))]
    if newer:
        raise UsageError("; ".join(newer))
    return jobs


def newer_record(path: Path) -> str | None:
    """Why the record at ``path`` must not be overwritten: it comes from a newer schema version.

    Resuming treats an unreadable record as unfinished and reruns it; a newer record is
    readable, just not by this version, and rerunning would silently replace it.
    """
    try:
        version = json.loads(path.read_text(encoding="utf-8")).get("schema_version")
    except (OSError, ValueError, AttributeError):
        return None  # absent, or partial/foreign: the job reruns and replaces it
    if isinstance(version, int) and not isinstance(version, bool) and version > records.SCHEMA_VERSION:
        return (
            f"record '{path}' has schema_version {version}, newer than this peft-bench "
            f"({records.SCHEMA_VERSION}); upgrade peft-bench, or pass another --output-dir"
        )
    return None


def model_skeleton(model: str, head: str, num_labels: int, trust_remote_code: bool = False):
    """``model`` with ``head`` built on the meta device: every module and shape, no weights.

    From the config alone (tiny aliases: their code; folders and packaged models: config.json),
    in well under a second for any size. None where the config cannot be had without network
    or converting weights (an uncached ``smollm2-135m``, a hub name offline): the job checks then.
    """
    import torch

    from bench import models

    if model in ("tiny-llama", "tiny-bert"):
        with torch.device("meta"):
            return models.load(model, head, num_labels=num_labels)[0]
    if model == "smollm2-135m" and not (models.cache_dir() / "smollm2-135m-instruct" / "config.json").exists():
        return None
    source = models.resolve(model)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        if isinstance(source, Path):
            raise UsageError(
                f"model folder '{model}' has an unreadable config.json ({str(err).splitlines()[0]}); "
                "pass a folder saved with save_pretrained"
            ) from None
        return None  # a hub name without network: the job reports it
    if head == "sequence_classification":
        config.num_labels = num_labels
    auto = AutoModelForCausalLM if head == "causal_lm" else AutoModelForSequenceClassification
    try:
        with torch.device("meta"):
            return auto.from_config(config, trust_remote_code=trust_remote_code)
    except ValueError:
        kind = "a causal LM" if head == "causal_lm" else "a sequence-classification"
        raise UsageError(
            f"model '{model}' ({config.model_type}) has no {kind} head, which its tasks need; "
            "choose a model of that kind with --model"
        ) from None


def validate_on_skeleton(skeleton, cfg: Any, *, method: str, model: str) -> list[str]:
    """Dry-run a method config's target resolution and ``k`` check on a weightless model.

    Generic over config fields, not method names: ``target_modules`` is resolved exactly as
    ``apply`` does (``methods._base.find_targets``), and a ``k`` (connections per output row)
    must be smaller than the input size of every target layer, as selection requires.
    """
    from methods._base import find_targets

    if not hasattr(cfg, "target_modules") and not hasattr(cfg, "k"):
        return []  # e.g. full fine-tuning: nothing to resolve
    try:
        targets = find_targets(skeleton, getattr(cfg, "target_modules", None))
    except UsageError as err:
        return [f"{method}.target_modules on model '{model}': {err}"]
    k = getattr(cfg, "k", None)
    if isinstance(k, int) and targets:
        name, layer = min(targets, key=lambda nm: nm[1].in_features)
        if k >= layer.in_features:
            return [
                f"{method}.k={k} must be smaller than the input size {layer.in_features} of '{name}' "
                f"in model '{model}'; use {method}.k <= {layer.in_features - 1}, or full_ft"
            ]
    return []


def validate_on_skeletons(selected: list, model: str | None, configs: dict[str, Any], trust_remote_code: bool):
    """Problems of each method config on each model the tasks use (one skeleton per model and head)."""
    problems: list[str] = []
    built: set[tuple[str, str, int]] = set()
    for task in selected:
        key = (model or task.default_model, task.head, task.num_labels)
        if key in built:
            continue
        built.add(key)
        try:
            skeleton = model_skeleton(*key, trust_remote_code=trust_remote_code)
        except UsageError as err:
            problems.append(str(err))
            continue
        if skeleton is None:
            continue
        for name, cfg in configs.items():
            problems += validate_on_skeleton(skeleton, cfg, method=name, model=key[0])
    return problems


def group_by_training(selected: list, model: str | None) -> list[list]:
    """Tasks in groups that can share one training run, in first-seen order."""

    def key(task):
        if task.generator is not None or task.train_file is None:
            return ("alone", task.name)
        return (task.train_file, task.train_hub, task.to_train, task.head, model or task.default_model)

    groups: list[tuple[Any, list]] = []
    for task in selected:
        k = key(task)
        for gk, members in groups:
            if gk == k:
                members.append(task)
                break
        else:
            groups.append((k, [task]))
    return [members for _, members in groups]


def select_methods(spec: str) -> list[str]:
    """``--methods``: a comma list of method names, or ``all``."""
    import methods as method_registry
    from bench.registry import did_you_mean

    parts = [p.strip() for p in spec.split(",")]
    if not spec.strip() or any(not p for p in parts):
        raise UsageError(f"--methods '{spec}' is not a comma list of names; e.g. --methods neuroada,lora")
    out: list[str] = []
    for part in parts:
        names = method_registry.names() if part == "all" else [part]
        for name in names:
            if name not in method_registry.names():
                choices = [*method_registry.names(), "all"]
                raise UsageError(
                    f"unknown method '{name}'{did_you_mean(name, choices)} available: {', '.join(choices)}"
                )
            if name not in out:
                out.append(name)
    return out


# ---------------------------------------------------------------------------------------------
# One job
# ---------------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _device_name_ok(name: str) -> bool:
    import torch

    try:
        return name == "auto" or isinstance(torch.device(name), torch.device)
    except (RuntimeError, ValueError, TypeError):
        return False


def pick_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available here; use --device cpu or auto")
    return torch.device(name)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_state() -> dict[str, Any]:
    """The code's git sha and whether the tree had uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return {"git_sha": sha or None, "git_dirty": bool(dirty) if sha else None}
    except (OSError, subprocess.SubprocessError):
        return {"git_sha": None, "git_dirty": None}


def head_parameter_names(model) -> list[str]:
    """The task head (classifier/score) of a sequence-classification model."""
    return [n for n, _ in model.named_parameters() if any(part in ("classifier", "score") for part in n.split("."))]


def job_tasks(spec: JobSpec):
    """The job's training task and its evaluation tasks (per-task training applied)."""
    import tasks as task_registry

    names = spec.eval_tasks or (spec.task,)
    selected = [task_registry.get(n) for n in names]
    if spec.train_per_task:
        selected = [task_registry.per_task_train(t) for t in selected]
    return selected[0], selected


def run_one(spec: JobSpec) -> list[RunRecord]:
    """Run one job in this process: train once, then evaluate and record each of its tasks.

    Never raises for a failed job: a failure becomes the status of every record it touches.
    """
    import torch

    import methods as method_registry
    from bench import distributed, measure, models
    from bench.config import config_from_dict
    from bench.evaluate import evaluate
    from bench.train import Diverged, calibration_batches, encode_train, train
    from methods._base import count_parameters, trainable_count

    task, eval_tasks = job_tasks(spec)
    method = method_registry.get(spec.method)
    budget = Budget(**spec.budget)
    run = {
        **asdict(spec),
        "method_label": spec.label,
        "train_task": task.name,
        "train_file": task.train_file,
        "trained_with": [t.name for t in eval_tasks],
        "started_at": _now(),
        **git_state(),
    }
    for key in ("label", "output_dir", "progress", "task", "eval_tasks"):
        run.pop(key)
    status: dict[str, Any] = {"status": "failed", "error": None}
    train_result: dict[str, Any] = {}
    cost: dict[str, Any] = {}
    env: dict[str, Any] = {}
    evaluations: dict[str, dict[str, Any]] = {}
    sampler = None
    ddp = None
    try:
        # -- setup: threads, seed, device ---------------------------------------------------
        if spec.threads:
            torch.set_num_threads(spec.threads)
        seed_everything(spec.seed)
        ddp = distributed.init()  # None unless launched with several processes (--gpus-per-job N > 1)
        if ddp is not None and not ddp.is_main:
            spec = replace(spec, progress=False)
        device = ddp.device if ddp is not None else pick_device(spec.device)
        dtype = torch.bfloat16 if (budget.dtype == "bfloat16" and device.type == "cuda") else torch.float32
        run["dtype"] = str(dtype).removeprefix("torch.")
        env = measure.environment(device)
        if ddp is not None:
            env["world_size"] = ddp.world_size
        sampler = measure.NvmlSampler(device.index or 0) if device.type == "cuda" else None

        # -- data -------------------------------------------------------------------------
        train_rows = task.load("train", spec.data_dir)
        eval_rows = {t.name: t.load("eval", spec.data_dir)[: budget.eval_limit] for t in eval_tasks}

        # -- model and method -------------------------------------------------------------
        model, tokenizer = models.load(
            spec.model,
            task.head,
            num_labels=task.num_labels,
            dtype=dtype,
            seed=spec.seed,
            trust_remote_code=spec.trust_remote_code,
        )
        total_params = count_parameters(model)
        base_buffers = sum(b.numel() for b in model.buffers())
        examples = encode_train(task, tokenizer, train_rows, budget)
        regression = task.kind == "regress"
        cfg = config_from_dict(method.config_cls, spec.method_config)
        calibration = calibration_batches(examples, budget, tokenizer.pad_token_id, regression)
        model = method.apply(model, cfg, calibration=calibration)
        heads = head_parameter_names(model) if task.head == "sequence_classification" else []
        for name, p in model.named_parameters():  # every method trains the new task head
            if name in heads:
                p.requires_grad_(True)
        trainable = trainable_count(method, model)
        model.to(device)
        if budget.gradient_checkpointing and hasattr(model, "gradient_checkpointing_enable"):
            model.gradient_checkpointing_enable()
        optimizer = method.optimizer(model, cfg, budget.weight_decay)
        cost.update(
            trainable_params=trainable,
            total_params=total_params,
            trainable_fraction=trainable / total_params,
            head_params=sum(p.numel() for n, p in model.named_parameters() if n in heads),
            head_trained=bool(heads),
            buffer_params=sum(b.numel() for b in model.buffers()) - base_buffers,
        )
        if device.type == "cpu":  # exact bytes of one step, on a copy (on CUDA the copy would cost a model)
            first = {k: v.to(device) for k, v in calibration[0].items()}
            cost["breakdown"] = measure.breakdown_or_reason(
                model, lambda m: method.optimizer(m, cfg, budget.weight_decay), first
            )
        # The copy raised the peak: reset it, so peak memory covers training and evaluation.
        cost["memory_before_train"] = {
            "peak_rss_mb": measure.peak_rss_mb(),
            **measure.cuda_peaks(),
            "rss_peak_reset": measure.reset_peak_rss(),
        }

        # -- train --------------------------------------------------------------------------
        measure.cuda_reset()
        if sampler:
            sampler.__enter__()
        stats = train(
            model,
            optimizer,
            examples,
            budget,
            seed=spec.seed,
            pad_id=tokenizer.pad_token_id,
            regression=regression,
            device=device,
            progress=spec.progress,
            ddp=ddp,
        )
        cost.update(
            train_seconds=stats.train_seconds,
            train_tokens_per_s=stats.tokens_per_s,
            train_samples_per_s=stats.samples_per_s,
            steps_timed=stats.steps - stats.warmup_steps,
            warmup_steps=stats.warmup_steps,
            tokens_seen=stats.tokens_seen,
        )
        train_result.update(
            final_loss=stats.final_loss,
            losses=stats.losses,
            n_train_examples=len(examples),
            samples_seen=stats.samples_seen,
        )
        cost["memory_train"] = {"peak_rss_mb": measure.peak_rss_mb(), **measure.cuda_peaks()}
        del optimizer

        # -- merge, then evaluate the merged model (what a user deploys) on each task --------
        model = method.merge(model)
        if spec.evaluator == "lm-eval":
            from bench.lm_eval_bridge import evaluate
        for eval_task in eval_tasks:
            try:
                with measure.Timer() as timer:
                    ev = evaluate(
                        eval_task,
                        model,
                        tokenizer,
                        eval_rows[eval_task.name],
                        batch_size=budget.eval_batch_size,
                        device=device,
                        progress=spec.progress,
                    )
                evaluations[eval_task.name] = {
                    "result": {
                        "status": "ok",
                        "error": None,
                        "metrics": ev.metrics,
                        "n_eval": ev.n_items,
                        "samples": ev.samples,
                        "evaluated": "merged",
                        "evaluator": spec.evaluator,
                    },
                    "cost": {
                        "eval_seconds": timer.seconds,
                        "eval_samples_per_s": ev.n_items / timer.seconds if timer.seconds else None,
                    },
                }
            except Exception as err:  # one task's evaluation failing does not sink the others
                evaluations[eval_task.name] = {
                    "result": {"status": "failed", "error": f"{type(err).__name__}: {err}", "metrics": {}},
                    "cost": {},
                    "traceback": traceback.format_exc(limit=8),
                }
        status.update(status="ok")
    except Diverged as err:
        status.update(status="diverged", error=str(err))
        train_result["losses"] = err.losses  # the steps before the loss broke, for diagnosis
    except KeyboardInterrupt:
        status.update(status="canceled", error="interrupted (Ctrl-C)")
    except Exception as err:  # a failed job becomes a record; the sweep goes on
        status.update(status="failed", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc(limit=8))
    finally:
        if sampler is not None:  # stopped on every path, so a failed job still reports GPU memory
            sampler.__exit__(None, None, None)
            cost["memory_nvml"] = sampler.summary()
        run["finished_at"] = _now()
        cost["peak_memory_mb"] = measure_peak(cost)
        out = []
        for t in eval_tasks:
            task_run = {
                **run,
                "task": t.name,
                "task_version": t.version,
                "suite": t.suite,
                "kind": t.kind,
                "protocol": t.protocol,
                "primary_metric": t.primary_metric,
                "contaminated_by": list(getattr(t, "contaminated_by", ()) or ()),
            }
            evaluation = evaluations.get(t.name)
            if status["status"] == "ok" and evaluation is not None:
                result = {**train_result, **evaluation["result"], "primary_metric": t.primary_metric}
                if "traceback" in evaluation:
                    result["traceback"] = evaluation["traceback"]
                task_cost = {**cost, **evaluation["cost"]}
            else:
                result = {**train_result, **status, "metrics": {}, "primary_metric": t.primary_metric}
                task_cost = dict(cost)
            record = RunRecord(run=task_run, result=result, cost=task_cost, env=env)
            if ddp is None or ddp.is_main:  # one process writes a multi-process job's records
                records.save(record, spec.output_dir)
            out.append(record)
    return out


def measure_peak(cost: dict[str, Any]) -> float:
    """The job's peak memory in MiB: the torch allocator's peak on CUDA, else peak RSS."""
    from bench import measure

    cuda = measure.cuda_peaks()
    if cuda:
        cost["memory"] = {"peak_rss_mb": measure.peak_rss_mb(), **cuda}
        return cuda["torch_max_allocated_mb"]
    cost["memory"] = {"peak_rss_mb": measure.peak_rss_mb()}
    return cost["memory"]["peak_rss_mb"]


# ---------------------------------------------------------------------------------------------
# The local executor: one fresh subprocess per job
# ---------------------------------------------------------------------------------------------
def existing_status(path: Path) -> str | None:
    """The status of a finished record at ``path``; None if absent or unreadable (partial)."""
    if not path.exists():
        return None
    try:
        return records.load(path).status
    except (UsageError, KeyError):
        return None


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


def should_run(job: JobSpec, *, force: bool, rerun_failed: bool) -> tuple[tuple[str, ...], dict[str, str | None]]:
    """The job's tasks that need running given their records, and the existing statuses."""
    statuses = {t: existing_status(p) for t, p in zip(job.tasks, job.record_paths, strict=True)}
    if force:
        return job.tasks, statuses
    # A canceled job never finished: resuming runs it. Failed and diverged are results, kept
    # unless asked (--rerun-failed), since rerunning them usually fails the same way.
    todo = tuple(t for t, st in statuses.items() if st in (None, "canceled") or (st != "ok" and rerun_failed))
    return todo, statuses


def run_sweep(
    jobs: list[JobSpec],
    *,
    force: bool = False,
    rerun_failed: bool = False,
    progress: bool = True,
    executor: str = "local",
    options: Any = None,
) -> list[tuple[JobSpec, str]]:
    """Run ``jobs``; returns (job, status) per job, including skipped ones.

    ``executor``: ``local`` runs them here, one after another; ``ray`` and ``slurm`` hand each
    job to that engine (``bench.executors``), which runs the same subprocess on a worker.
    ``options`` (``bench.executors.ExecutorOptions``): GPUs per job, job timeout, engine settings.

    Resuming: a task whose record exists is skipped (``rerun_failed``: unless it did not finish
    ``ok``; ``force``: always rerun). A missing, unreadable or canceled record is always rerun. A job
    whose group has some tasks done trains again and evaluates only the others.
    """
    from tqdm.auto import tqdm

    from bench import executors

    options = options or executors.ExecutorOptions()
    if executor != "local":
        return executors.run(
            executor, jobs, force=force, rerun_failed=rerun_failed, progress=progress, options=options
        )
    outcomes: list[tuple[JobSpec, str]] = []
    bar = tqdm(jobs, desc="sweep", unit="job", disable=not progress, dynamic_ncols=True, file=sys.stderr)
    for job in bar:
        todo, statuses = should_run(job, force=force, rerun_failed=rerun_failed)
        if not todo:
            existing = ",".join(sorted({str(s) for s in statuses.values()}))
            hint = "--force" if existing == "ok" else "--rerun-failed or --force"
            tqdm.write(f"skip     {job.title}: record exists ({existing}); {hint} to rerun", file=sys.stderr)
            outcomes.append((job, f"skipped ({existing})"))
            continue
        job = replace(job, eval_tasks=todo)
        bar.set_postfix_str(job.title)
        started = time.time()
        try:
            with job_lock(job):
                status = run_in_subprocess(job, **options.launch(job))
        except Locked:
            tqdm.write(f"skip     {job.title}: another sweep is running it", file=sys.stderr)
            outcomes.append((job, "skipped (locked)"))
            continue
        outcomes.append((job, status))
        tqdm.write(f"{status:<8} {job.title} ({time.time() - started:.0f}s)", file=sys.stderr)
        if status == "canceled":
            break
    bar.close()
    return outcomes


def _fallback_records(
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
        run = {**asdict(job), "task": task, "method_label": job.label, "finished_at": _now()}
        for key in ("label", "output_dir", "progress", "eval_tasks"):
            run.pop(key)
        records.save(RunRecord(run=run, result={"status": status, "error": error, "metrics": {}}), job.output_dir)


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
    import tempfile

    started = time.time()
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    payload: str | None = json.dumps(asdict(job))
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
        proc = subprocess.Popen(command, stdin=subprocess.PIPE if payload else subprocess.DEVNULL, env=env, text=True)
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
    if timed_out:
        reason = f"timed out after {timeout:g}s (--job-timeout); the job was stopped"
        _fallback_records(job, "failed", reason, started, replace_statuses=("canceled",))
    elif interrupted or proc.returncode in (EXIT_CODES["canceled"], -signal.SIGINT):
        _fallback_records(job, "canceled", "interrupted before the job could record itself", started)
    elif processes > 1 and proc.returncode:  # a failed rank makes the launcher stop the others
        reason = f"a process of the {processes}-process job failed (launcher exit code {proc.returncode}); see its log"
        _fallback_records(job, "failed", reason, started, replace_statuses=("canceled",))
    else:
        reason = f"job process exited with code {proc.returncode}"
        if proc.returncode and proc.returncode < 0:
            reason += f" (killed by signal {-proc.returncode}; out of memory?)"
        _fallback_records(job, "failed", reason, started)
    return worst_status(existing_status(p) or "failed" for p in job.record_paths)


def accelerate_command(processes: int, script: list[str]) -> list[str]:
    """``accelerate launch`` for ``processes`` local processes on a free port, running ``script``."""
    import socket

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


def worst_status(statuses) -> str:
    order = ("canceled", "failed", "diverged", "ok")
    found = set(statuses)
    return next((s for s in order if s in found), "failed")


def _sigterm_as_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM (a scheduler's preemption, `kill`) records `canceled`


def main(argv: list[str] | None = None) -> int:
    """Entry point of a job's subprocess: read a JobSpec as JSON on stdin (or from ``--spec FILE``,
    as every process of a multi-process job does), run it."""
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    argv = sys.argv[1:] if argv is None else argv
    data = json.loads(Path(argv[1]).read_text() if argv[:1] == ["--spec"] else sys.stdin.read())
    data["eval_tasks"] = tuple(data.get("eval_tasks") or ())
    spec = JobSpec(**data)
    try:
        out = run_one(spec)
    except KeyboardInterrupt:  # Ctrl-C before run_one's own handler (its imports): the sweep records it
        return EXIT_CODES["canceled"]
    return EXIT_CODES.get(worst_status(r.status for r in out), 1)


if __name__ == "__main__":
    sys.exit(main())
