"""``JobSpec``: everything one job needs, planned by ``bench.plan`` and run by ``bench.runner``.

It sits below both the job (``bench.runner``) and the launcher (``bench.launch``), which each
need it: the launcher sends it to the job's subprocess as JSON, and the job reads it back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import records


@dataclass(frozen=True)
class JobSpec:
    """One method on one task group and seed; serialised to JSON for the job's subprocess."""

    method: str
    label: str
    """The method's name in tables and file names (the method plus its --set overrides)."""
    method_config: dict[str, Any]
    task: str
    """The training task (the first of the group)."""
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
    holdout: int = 0
    """Rows of the training file held out as a validation split (the same rows for every method
    and seed: ``bench.runner.split_train``); 0: train on all of it."""
    evaluate_on: str = "eval"
    """``eval`` (the task's eval set) or ``validation`` (the held-out rows: a learning-rate trial)."""
    lr_search: dict[str, Any] | None = None
    """The learning-rate search that chose ``method_config.lr`` (bench.tune): grid, trials,
    criterion, chosen rate, whether it sits at the grid's edge, and the search's cost."""
    match_params: dict[str, Any] | None = None
    """How ``--match-params`` sized this method (bench.matching.Match): reference, target,
    knob, value, achieved count, note."""
    recipe: dict[str, Any] | None = None
    """The preset's recipe for this method and suite (bench.recipes.Recipe.as_record): the budget
    fields and method settings it set, their source and what it does not reproduce; None: none."""

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

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        data = json.loads(text)
        data["eval_tasks"] = tuple(data.get("eval_tasks") or ())
        return cls(**data)

    def run_section(self) -> dict[str, Any]:
        """The record's ``run`` fields that come from the spec alone (no task, no timing)."""
        run = {**asdict(self), "method_label": self.label}
        for key in ("label", "output_dir", "progress", "task", "eval_tasks"):
            run.pop(key)
        return run
