"""One job, in this process: ``python -m bench.runner`` reads a :class:`~bench.spec.JobSpec` as
JSON on stdin (or ``--spec FILE``) and runs it.

:func:`run_one` reads top to bottom in named phases, one screen each: **set up** (threads, seed,
device, environment), **build** (data, model, method, optimizer), **train**, **evaluate** (the
merged model, task by task) and **record** (one record per evaluated task). A failure in any
phase becomes the status of every record the job writes; it never raises.
"""

from __future__ import annotations

import logging
import random
import signal
import subprocess
import sys
import traceback
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import records, validation
from bench.config import Budget
from bench.records import RunRecord
from bench.spec import JobSpec


@dataclass
class Job:
    """What the phases hand each other; the record is built from it whatever happened."""

    spec: JobSpec
    train_task: Any
    eval_tasks: list
    budget: Budget
    run: dict[str, Any]
    status: dict[str, Any] = field(default_factory=lambda: {"status": "failed", "error": None})
    train_result: dict[str, Any] = field(default_factory=dict)
    cost: dict[str, Any] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)
    evaluations: dict[str, dict[str, Any]] = field(default_factory=dict)
    device: Any = None
    dtype: Any = None
    ddp: Any = None
    sampler: Any = None
    # built by `build`
    model: Any = None
    tokenizer: Any = None
    method: Any = None
    method_config: Any = None
    optimizer: Any = None
    examples: list = field(default_factory=list)
    eval_rows: dict[str, list] = field(default_factory=dict)
    val_rows: list = field(default_factory=list)


def run_one(spec: JobSpec) -> list[RunRecord]:
    """Run one job: train once, then evaluate and record each of its tasks.

    Never raises for a failed job: a failure becomes the status of every record it touches.
    """
    from bench.train import Diverged

    job = start(spec)
    try:
        set_up(job)
        build(job)
        train_phase(job)
        evaluate_phase(job)
        job.status.update(status="ok")
    except Diverged as err:
        job.status.update(status="diverged", error=str(err))
        job.train_result["losses"] = err.losses  # the steps before the loss broke, for diagnosis
    except KeyboardInterrupt:
        job.status.update(status="canceled", error="interrupted (Ctrl-C)")
    except Exception as err:  # a failed job becomes a record; the sweep goes on
        job.status.update(
            status="failed", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc(limit=8)
        )
    finally:
        out = record_phase(job)
    return out


def start(spec: JobSpec) -> Job:
    """The job's tasks, budget and the record's ``run`` section as far as the spec tells it."""
    train_task, eval_tasks = job_tasks(spec)
    if spec.evaluate_on == "validation":  # a learning-rate trial: scored on held-out training rows
        eval_tasks = [train_task]
    run = {
        **spec.run_section(),
        "train_task": train_task.name,
        "train_file": train_task.train_file,
        "trained_with": [t.name for t in eval_tasks],
        "started_at": records.now(),
        **git_state(),
    }
    return Job(spec=spec, train_task=train_task, eval_tasks=eval_tasks, budget=Budget(**spec.budget), run=run)


# -- set up: threads, seed, device, environment ---------------------------------------------
def set_up(job: Job) -> None:
    import torch

    from bench import distributed, measure, nvml

    if job.spec.threads:
        torch.set_num_threads(job.spec.threads)
    seed_everything(job.spec.seed)
    job.ddp = distributed.init()  # None unless launched with several processes (--gpus-per-job N > 1)
    if job.ddp is not None and not job.ddp.is_main:
        job.spec = replace(job.spec, progress=False)
    job.device = job.ddp.device if job.ddp is not None else pick_device(job.spec.device)
    bf16 = job.budget.dtype == "bfloat16" and job.device.type == "cuda"
    job.dtype = torch.bfloat16 if bf16 else torch.float32
    job.run["dtype"] = str(job.dtype).removeprefix("torch.")
    job.env = measure.environment(job.device)
    if job.ddp is not None:
        job.env["world_size"] = job.ddp.world_size
    job.sampler = nvml.NvmlSampler(job.device.index or 0) if job.device.type == "cuda" else None


# -- build: data, model, method, optimizer --------------------------------------------------
def build(job: Job) -> None:
    import methods as method_registry
    from bench import measure, models
    from bench.config import config_from_dict
    from bench.train import calibration_batches, encode_train
    from methods._base import count_parameters, trainable_count

    spec, task, budget = job.spec, job.train_task, job.budget
    train_rows, job.val_rows = validation.split_train(task.load("train", spec.data_dir), spec.holdout)
    if budget.epochs is not None:  # steps follow from the train set (HF Trainer's count); both recorded
        job.budget = budget = steps_from_epochs(job.run, budget, len(train_rows))
    if spec.evaluate_on == "validation":
        criterion = validation.validation_criterion(task, job.val_rows)
        job.run["validation"] = {"rows": len(job.val_rows), "criterion": criterion}
        job.eval_rows = {task.name: job.val_rows}
    else:
        job.eval_rows = {t.name: t.load("eval", spec.data_dir)[: budget.eval_limit] for t in job.eval_tasks}
    model, job.tokenizer = models.load(
        spec.model,
        task.head,
        num_labels=task.num_labels,
        dtype=job.dtype,
        seed=spec.seed,
        trust_remote_code=spec.trust_remote_code,
    )
    total_params = count_parameters(model)
    base_buffers = sum(b.numel() for b in model.buffers())
    job.examples = encode_train(task, job.tokenizer, train_rows, budget)
    regression = task.kind == "regress"
    job.method = method = method_registry.get(spec.method)
    job.method_config = cfg = config_from_dict(method.config_cls, spec.method_config)
    calibration = calibration_batches(job.examples, budget, job.tokenizer.pad_token_id, regression)
    model = method.apply(model, cfg, calibration=calibration)
    heads = head_parameter_names(model) if task.head == "sequence_classification" else []
    for name, p in model.named_parameters():  # every method trains the new task head
        if name in heads:
            p.requires_grad_(True)
    trainable = trainable_count(method, model)
    model.to(job.device)
    if budget.gradient_checkpointing and hasattr(model, "gradient_checkpointing_enable"):
        model.gradient_checkpointing_enable()
    job.model = model
    head_params = sum(p.numel() for n, p in model.named_parameters() if n in heads)
    # Nothing trains (the frozen backbone on a causal task): evaluated zero-shot, no optimizer.
    job.train_result["training"] = training_kind(trainable, head_params)
    job.optimizer = method.optimizer(model, cfg, budget.weight_decay) if trainable else None
    job.cost.update(
        trainable_params=trainable,
        total_params=total_params,
        trainable_fraction=trainable / total_params,
        head_params=head_params,
        head_trained=bool(heads),
        buffer_params=sum(b.numel() for b in model.buffers()) - base_buffers,
    )
    if not trainable:
        job.cost["breakdown"] = {"reason": "nothing trains: no training step to measure"}
    elif job.device.type == "cpu":  # exact bytes of one step, on a copy (on CUDA the copy would cost a model)
        first = {k: v.to(job.device) for k, v in calibration[0].items()}
        job.cost["breakdown"] = measure.breakdown_or_reason(
            model, lambda m: method.optimizer(m, cfg, budget.weight_decay), first
        )
    # The copy raised the peak: reset it, so peak memory covers training and evaluation.
    job.cost["memory_before_train"] = {
        "peak_rss_mb": measure.peak_rss_mb(),
        **measure.cuda_peaks(),
        "rss_peak_reset": measure.reset_peak_rss(),
    }


# -- train ----------------------------------------------------------------------------------
def train_phase(job: Job) -> None:
    from bench import measure
    from bench.train import train

    measure.cuda_reset()
    if job.sampler:
        job.sampler.__enter__()
    if job.optimizer is None:
        job.train_result.update(n_train_examples=len(job.examples), samples_seen=0, final_loss=None, losses=[])
        return
    stats = train(
        job.model,
        job.optimizer,
        job.examples,
        job.budget,
        seed=job.spec.seed,
        pad_id=job.tokenizer.pad_token_id,
        regression=job.train_task.kind == "regress",
        device=job.device,
        progress=job.spec.progress,
        ddp=job.ddp,
    )
    job.cost.update(
        train_seconds=stats.train_seconds,
        train_tokens_per_s=stats.tokens_per_s,
        train_samples_per_s=stats.samples_per_s,
        steps_timed=stats.steps - stats.warmup_steps,
        warmup_steps=stats.warmup_steps,
        tokens_seen=stats.tokens_seen,
    )
    job.train_result.update(
        final_loss=stats.final_loss,
        losses=stats.losses,
        n_train_examples=len(job.examples),
        samples_seen=stats.samples_seen,
    )
    job.cost["memory_train"] = {"peak_rss_mb": measure.peak_rss_mb(), **measure.cuda_peaks()}
    job.optimizer = None


# -- evaluate: the merged model (what a user deploys; unmerged where the method has no merge) --
def evaluate_phase(job: Job) -> None:
    from bench import measure

    if job.spec.evaluator == "lm-eval":
        from bench.lm_eval_bridge import evaluate
    else:
        from bench.evaluate import evaluate
    job.model = job.method.merge(job.model)
    as_evaluated = getattr(job.method, "evaluated_as", None)
    evaluated = as_evaluated(job.model) if as_evaluated is not None else "merged"
    if job.run.get("validation", {}).get("criterion") == "loss":
        job.evaluations[job.train_task.name] = validation.validation_loss(
            job.train_task, job.model, job.tokenizer, job.val_rows, job.budget, job.device
        )
        return
    for task in job.eval_tasks:
        try:
            with measure.Timer() as timer:
                ev = evaluate(
                    task,
                    job.model,
                    job.tokenizer,
                    job.eval_rows[task.name],
                    batch_size=job.budget.eval_batch_size,
                    device=job.device,
                    progress=job.spec.progress,
                )
            result = {"metrics": ev.metrics, "n_eval": ev.n_items, "samples": ev.samples}
            result.update(item_results(task, ev, job.eval_rows[task.name]))
            result.update(evaluated=evaluated, evaluator=job.spec.evaluator)
            speed = ev.n_items / timer.seconds if timer.seconds else None
            job.evaluations[task.name] = {
                "status": "ok",
                "result": result,
                "cost": {"eval_seconds": timer.seconds, "eval_samples_per_s": speed},
            }
        except Exception as err:  # one task's evaluation failing does not sink the others
            job.evaluations[task.name] = {
                "status": "failed",
                "error": f"{type(err).__name__}: {err}",
                "result": {"traceback": traceback.format_exc(limit=8)},
                "cost": {},
            }


# -- record: one record per evaluated task ---------------------------------------------------
def record_phase(job: Job) -> list[RunRecord]:
    if job.sampler is not None:  # stopped on every path, so a failed job still reports GPU memory
        job.sampler.__exit__(None, None, None)
        job.cost["memory_nvml"] = job.sampler.summary()
    job.run["finished_at"] = records.now()
    job.cost["peak_memory_mb"] = measure_peak(job.cost)
    out = []
    for task in job.eval_tasks:
        run = {**job.run, **task_fields(task)}
        directions = dict(task.higher_is_better)
        if job.run.get("validation", {}).get("criterion") == "loss":  # a trial scored by its loss
            run["primary_metric"] = "val_loss"
            directions = {"val_loss": False}
        evaluation = job.evaluations.get(task.name)
        if job.status["status"] == "ok" and evaluation is not None:
            status, error = evaluation["status"], evaluation.get("error")
            result = {**job.train_result, **evaluation["result"]}
            cost = {**job.cost, **evaluation["cost"]}
        else:
            status, error = job.status["status"], job.status.get("error")
            result = {**job.train_result, **{k: v for k, v in job.status.items() if k == "traceback"}}
            cost = dict(job.cost)
        record = records.build(
            run,
            status=status,
            error=error,
            result=result,
            cost=cost,
            env=job.env,
            higher_is_better=directions,
        )
        if job.ddp is None or job.ddp.is_main:  # one process writes a multi-process job's records
            records.save(record, job.spec.output_dir)
        out.append(record)
    return out


def item_results(task, ev, rows: list[dict]) -> dict[str, Any]:
    """Per-item results for paired comparisons: ``items`` (id = position in the eval file,
    prediction, reference, and correct unless the task is a regression) and ``items_hash``."""
    items: dict[str, list] = {"id": list(range(len(ev.predictions))), "prediction": list(ev.predictions)}
    if ev.references:
        items["reference"] = list(ev.references)
        if task.kind != "regress":
            items["correct"] = [p == r for p, r in zip(ev.predictions, ev.references, strict=True)]
    items.update({k: list(v) for k, v in ev.extra.items()})
    return {"items": items, "items_hash": records.items_hash(rows)}


def steps_from_epochs(run: dict[str, Any], budget: Budget, n_train: int) -> Budget:
    """``budget`` with ``max_steps`` for ``budget.epochs`` over ``n_train`` rows
    (:func:`bench.config.epoch_steps`); the record's ``run.budget`` and ``run.epoch_steps`` say so."""
    from dataclasses import asdict

    from bench.config import epoch_steps

    per_epoch, steps = epoch_steps(n_train, budget)
    budget = replace(budget, max_steps=steps)
    run["budget"] = asdict(budget)
    run["epoch_steps"] = {
        "epochs": budget.epochs,
        "n_train": n_train,
        "steps_per_epoch": per_epoch,
        "max_steps": steps,
        "rule": "HF Trainer 4.45: max(ceil(n / micro_batch) // grad_accum, 1) per epoch, ceil(epochs x that)",
    }
    return budget


def training_kind(trainable: int, head_params: int) -> str:
    """What trained, for the record: ``zero-shot`` (nothing), ``linear-probe`` (the new head
    alone: the frozen backbone on a classification task) or ``fine-tuned``."""
    if trainable == 0:
        return "zero-shot"
    return "linear-probe" if trainable == head_params else "fine-tuned"


def task_fields(task) -> dict[str, Any]:
    """The record's ``run`` fields that describe the evaluated task."""
    return {
        "task": task.name,
        "task_version": task.version,
        "suite": task.suite,
        "kind": task.kind,
        "protocol": task.protocol,
        "primary_metric": task.primary_metric,
        "contaminated_by": list(getattr(task, "contaminated_by", ()) or ()),
    }


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
# Helpers of the phases
# ---------------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str):
    import torch

    from bench.errors import UsageError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available here; use --device cpu or auto")
    return torch.device(name)


def git_state() -> dict[str, Any]:
    """The code's git sha and whether the tree had uncommitted changes."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        sha = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return {"git_sha": sha or None, "git_dirty": bool(dirty) if sha else None}
    except (OSError, subprocess.SubprocessError):
        return {"git_sha": None, "git_dirty": None}


def head_parameter_names(model) -> list[str]:
    """The task head (classifier/score) of a sequence-classification model."""
    return [n for n, _ in model.named_parameters() if any(part in ("classifier", "score") for part in n.split("."))]


def job_tasks(spec: JobSpec):
    """The job's training task and its evaluation tasks (per-task training applied)."""
    import tasks as task_registry

    selected = [task_registry.get(n) for n in spec.tasks]
    if spec.train_per_task:
        selected = [task_registry.per_task_train(t) for t in selected]
    protocol = spec.budget.get("protocol", "harness")
    selected = [task_registry.with_protocol(t, protocol) for t in selected]
    return selected[0], selected


# ---------------------------------------------------------------------------------------------
# The job process
# ---------------------------------------------------------------------------------------------
def quiet_libraries() -> None:
    """Send the libraries' messages (load reports, warnings, logging) to stdout, which the
    launcher points at the job's log; stderr keeps the progress bars and our own lines."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_default_handler()  # its own stderr handler; propagate to ours instead
        hf_logging.enable_propagation()
        hf_logging.disable_progress_bar()  # loading and conversion bars: the terminal shows ours
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass


def _sigterm_as_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM (a scheduler's preemption, `kill`) records `canceled`


def main(argv: list[str] | None = None) -> int:
    """Entry point of a job's subprocess: read a JobSpec as JSON on stdin (or from ``--spec FILE``,
    as every process of a multi-process job does), run it."""
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    argv = sys.argv[1:] if argv is None else argv
    spec = JobSpec.from_json(Path(argv[1]).read_text() if argv[:1] == ["--spec"] else sys.stdin.read())
    try:
        quiet_libraries()
        out = run_one(spec)
    except KeyboardInterrupt:  # Ctrl-C before run_one's own handler (its imports): the sweep records it
        return records.EXIT_CODES["canceled"]
    return records.EXIT_CODES[records.worst_status(r.status for r in out)]


if __name__ == "__main__":
    sys.exit(main())
