"""Planning a sweep: a :class:`RunRequest` becomes validated :class:`~bench.spec.JobSpec` s.

Every name is resolved and every config, data file (or, without a data dir, whether the hub or
the local datasets cache can provide it) and model skeleton is checked before any model loads;
all problems are collected and raised as one :class:`~bench.errors.UsageError`. Tasks that
share their training (the commonsense mixture, math_10k) form one job per method and seed,
trained once and evaluated task by task.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import recipes, records
from bench.config import Budget, build_config, config_to_dict, method_label
from bench.errors import UsageError
from bench.skeleton import validate_on_skeletons
from bench.spec import JobSpec


@dataclass(frozen=True)
class RunRequest:
    """What a user asked for: methods x tasks x seeds, under one budget, written to one folder."""

    methods: str
    """``--methods``: a comma list of built-in or preset names, ``peft:PATH``, ``all`` or ``peft``."""
    tasks: str
    """``--tasks``: a comma list of task or suite names, or ``all``."""
    output_dir: str
    budget: Budget | Callable[[Any], Budget]
    """One budget, or a function of the task (presets may set per-suite budgets)."""
    seeds: tuple[int, ...] = (0,)
    model: str | None = None
    """Alias, folder or hub name; None: each task's default model."""
    preset: str = "custom"
    smoke: bool = False
    """A reduced budget or --limit: the records are kept out of report tables."""
    overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    """``--set``: method -> field -> value (strings, converted by the config's types)."""
    data_dir: str | None = None
    threads: int | None = None
    device: str = "auto"
    command: str = ""
    """The command line that reruns the sweep, kept in every record."""
    trust_remote_code: bool = False
    progress: bool = True
    train_per_task: bool = False
    evaluator: str = "native"
    match_params: str | None = None
    """``--match-params METHOD``: size every other method to METHOD's trainable count (bench.matching)."""
    budget_overrides: dict[str, Any] = field(default_factory=dict)
    """The budget fields given on the command line; a preset's recipe (bench.recipes) leaves them."""

    def budget_of(self, task) -> Budget:
        return self.budget(task) if callable(self.budget) else self.budget


def plan(request: RunRequest) -> list[JobSpec]:
    """Jobs for methods x task groups x seeds, after validating every name, config and file."""
    import methods as method_registry
    import tasks as task_registry

    choices = {c.name: c for c in select_methods(request.methods)}
    method_names = list(choices)
    selected = task_registry.select(request.tasks)
    problems: list[str] = []
    if request.train_per_task:
        try:
            selected = [task_registry.per_task_train(t) for t in selected]
        except UsageError as err:
            problems.append(f"--train-per-task: {err}")
    if request.match_params and request.match_params not in method_names:
        problems.append(
            f"--match-params {request.match_params} is not in --methods ({', '.join(method_names)}); "
            "add it to --methods"
        )
    unknown = sorted(set(request.overrides) - set(method_names))
    if unknown:
        problems.append(f"--set names method(s) not in --methods: {', '.join(unknown)}; add them to --methods")
    configs: dict[str, Any] = {}
    for name in method_names:
        choice = choices[name]
        try:
            configs[name] = build_config(
                method_registry.get(choice.method).config_cls, name, request.overrides.get(name, {}), choice.config
            )
        except UsageError as err:
            problems.append(str(err))
    problems += check_tasks(request, selected)
    problems += head_problems(configs, selected)
    if problems:
        raise UsageError("; ".join(dict.fromkeys(problems)))
    problems = validate_on_skeletons(selected, request.model, configs, request.trust_remote_code)
    if problems:
        raise UsageError("; ".join(dict.fromkeys(problems)))
    jobs = []
    for group in group_by_training(selected, request.model):
        sized, matches = configs, {}
        if request.match_params:
            sized, matches = matched_configs(request, group[0], configs)
        for name in method_names:
            match = matches[name].as_record() if name in matches else None
            config, recipe = with_recipe(request, group[0], choices[name], sized[name], match)
            jobs += [job_spec(request, group, choices[name], config, seed, match, recipe) for seed in request.seeds]
    newer = [msg for job in jobs for path in job.record_paths if (msg := newer_record(path))]
    if newer:
        raise UsageError("; ".join(newer))
    return jobs


def matched_configs(request: RunRequest, task, configs: dict[str, Any]) -> tuple[dict[str, Any], dict]:
    """``configs`` sized to ``request.match_params`` on the model of ``task`` (bench.matching)."""
    import copy

    from bench import matching
    from bench.skeleton import model_skeleton

    model = request.model or task.default_model
    weights = model_skeleton(model, task.head, task.num_labels, request.trust_remote_code, device="cpu")
    if weights is None:
        raise UsageError(
            f"--match-params needs the configuration of model '{model}', which is not available offline "
            "yet; run one job on it first (it is cached), or pass a local folder with --model"
        )
    return matching.match_all(configs, request.match_params, lambda: copy.deepcopy(weights))


def with_recipe(request: RunRequest, task, choice: Any, config: Any, match: dict | None = None):
    """``(config, recipe)``: the method's config with the settings of its recipe under the preset
    on ``task``'s suite (bench.recipes), except the fields the user set with ``--set`` and the knob
    ``--match-params`` sized; ``recipe`` is None where the preset has none (peft presets have none)."""
    import methods as method_registry

    recipe = recipes.recipe_for(request.preset, task.suite, choice.method, config_to_dict(config))
    if recipe is None:
        return config, None
    keep = set(request.overrides.get(choice.name, {}))
    if match and match.get("knob"):
        keep |= {match["knob"], "alpha"}  # alpha follows r when matching sizes LoRA
    wanted = {k: v for k, v in recipe.settings.items() if k not in keep}
    typed = build_config(method_registry.get(choice.method).config_cls, choice.name, wanted)
    return replace(config, **{k: getattr(typed, k) for k in wanted}), recipe


def head_problems(configs: dict[str, Any], selected: list) -> list[str]:
    """Configs made for another kind of model than a task's (a peft config's ``task_type``)."""
    return [
        problem
        for cfg in configs.values()
        if hasattr(cfg, "head_problem")
        for task in selected
        if (problem := cfg.head_problem(task.head))
    ]


def job_spec(
    request: RunRequest,
    group: list,
    choice: Any,
    config: Any,
    seed: int,
    match: dict | None = None,
    recipe: recipes.Recipe | None = None,
) -> JobSpec:
    """The job of ``choice`` (a :class:`methods.Choice`) on a task group and seed."""
    task = group[0]
    overrides = request.overrides.get(choice.name, {})
    budget = recipes.apply_budget(recipe, request.budget_of(task), request.budget_overrides)
    return JobSpec(
        method=choice.method,
        label=method_label(choice.name, overrides),
        method_config=config_to_dict(config),
        task=task.name,
        seed=seed,
        model=request.model or task.default_model,
        budget=asdict(budget),
        preset=request.preset,
        smoke=request.smoke,
        data_dir=str(Path(request.data_dir).resolve()) if request.data_dir else None,
        output_dir=str(Path(request.output_dir)),
        threads=request.threads,
        device=request.device,
        command=request.command,
        trust_remote_code=request.trust_remote_code,
        progress=request.progress,
        eval_tasks=tuple(t.name for t in group),
        train_per_task=request.train_per_task,
        evaluator=request.evaluator,
        match_params=match,
        recipe=recipe.as_record() if recipe else None,
    )


def check_tasks(request: RunRequest, selected: list) -> list[str]:
    """Problems with the tasks: the evaluator's support, the device name, models, data files (or,
    without ``--data-dir``, data the jobs could not load from an unreachable hub: ``bench.hub``)."""
    import tasks
    from bench import models

    problems: list[str] = []
    if request.evaluator == "lm-eval":
        from bench import lm_eval_bridge

        for task in selected:
            try:
                lm_eval_bridge.check_supported(task)
            except UsageError as err:
                problems.append(str(err))
    if not device_name_ok(request.device):  # only the name: CUDA may exist on the workers, not here
        problems.append(f"--device '{request.device}' is not a device name; use auto, cpu, cuda or cuda:N")
    for task in selected:  # the budget's protocol must exist for the task (tasks/protocols.py)
        try:
            tasks.with_protocol(task, request.budget_of(task).protocol)
        except UsageError as err:
            problems.append(str(err))
    data_dir = request.data_dir
    if data_dir is None:  # the jobs load from the hub: stop now if they cannot (offline, nothing cached)
        from bench import hub

        if (line := hub.missing_data(selected)) is not None:
            problems.append(line)
    for task in selected:
        try:
            models.check(request.model or task.default_model)
        except UsageError as err:
            problems.append(str(err))
        if data_dir is None or task.generator is not None:
            continue
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
    return problems


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


def select_methods(spec: str) -> list:
    """``--methods``: a comma list of built-in or preset names, ``peft:PATH``, ``all`` (the built-ins)
    or ``peft`` (every preset), as :class:`methods.Choice` s in order, each name once."""
    import methods as method_registry

    parts = [p.strip() for p in spec.split(",")]
    if not spec.strip() or any(not p for p in parts):
        raise UsageError(f"--methods '{spec}' is not a comma list of names; e.g. --methods neuroada,lora")
    out: dict[str, Any] = {}
    for part in parts:
        for choice in method_registry.choose(part):
            if choice.name in out and out[choice.name] != choice:
                raise UsageError(
                    f"--methods: two methods are named '{choice.name}'; give one peft config another name "
                    '(its file name, or "peft_bench": {"name": ...})'
                )
            out[choice.name] = choice
    return list(out.values())


def device_name_ok(name: str) -> bool:
    import torch

    try:
        return name == "auto" or isinstance(torch.device(name), torch.device)
    except (RuntimeError, ValueError, TypeError):
        return False
