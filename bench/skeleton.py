"""Models as skeletons: every module and shape on the meta device, no weights, built from the
config alone in well under a second. ``bench.plan`` checks each method config on them before any
model loads; ``bench.matching`` counts trainable parameters on them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.errors import UsageError


def model_skeleton(model: str, head: str, num_labels: int, trust_remote_code: bool = False, device: str = "meta"):
    """``model`` with ``head`` built on the meta device: every module and shape, no weights.
    (``device="cpu"``: random weights instead, for code that reads values, such as NeuroAda's
    selection when parameters are counted.)

    From the config alone (tiny aliases: their code; folders and packaged models: config.json),
    in well under a second for any size. None where the config cannot be had without network
    or converting weights (an uncached ``smollm2-135m``, a hub name offline): the job checks then.
    """
    import torch

    from bench import models

    if model in ("tiny-llama", "tiny-bert"):
        with torch.device(device):
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
        with torch.device(device):
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
    must be smaller than the input size of every target layer, as selection requires; a config
    with ``size_problem(targets)`` (a peft preset such as SHiRA) checks its own size, and one with
    ``model_problem(model, targets)`` (NeuroAda's ``compact_inputs``) what else only the model can refute.
    """
    from methods._base import find_targets

    if not hasattr(cfg, "target_modules") and not hasattr(cfg, "k"):
        return []  # e.g. full fine-tuning: nothing to resolve
    try:
        targets = find_targets(skeleton, getattr(cfg, "target_modules", None))
    except UsageError as err:
        return [f"{method}.target_modules on model '{model}': {err}"]
    size_problem = getattr(cfg, "size_problem", None)
    if size_problem is not None and (problem := size_problem(targets)):
        return [f"{problem} in model '{model}'"]
    model_problem = getattr(cfg, "model_problem", None)
    if model_problem is not None and (problem := model_problem(skeleton, targets)):
        return [f"{problem} (model '{model}')"]
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
