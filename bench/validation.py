"""The validation split of learning-rate trials (``bench.tune``): rows held out of the training
file with a fixed seed, and how a trial is scored on them (the task's metric, or the loss).
"""

from __future__ import annotations

import random
from typing import Any

SPLIT_SEED = 1234
"""Seeds the validation split: fixed, so that every method and seed holds out the same rows."""


def split_train(rows: list[dict], holdout: int) -> tuple[list[dict], list[dict]]:
    """(training rows, validation rows): ``holdout`` rows drawn with :data:`SPLIT_SEED`, the rest in
    file order. The eval set is a different file and never enters either."""
    if not holdout:
        return rows, []
    from bench.errors import UsageError

    if holdout >= len(rows):
        raise UsageError(f"a validation split of {holdout} rows leaves no training rows of {len(rows)}")
    held = set(random.Random(SPLIT_SEED).sample(range(len(rows)), holdout))
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def validation_criterion(task, rows: list[dict]) -> str:
    """``metric``: the task's own metric, when its training rows are its own data in its eval
    format (GLUE; commonsense tasks trained per task); else ``loss``: the mean loss of the
    held-out rows (a suite mixture, or log-likelihood tasks whose training rows are generative)."""
    own = bool(task.train_file and task.eval_file) and task.train_file.split("/")[0] == task.eval_file.split("/")[0]
    fits = all(f in row for row in rows for f in task.required_fields)
    return "metric" if own and fits and rows else "loss"


def validation_loss(task, model, tokenizer, rows: list[dict], budget, device) -> dict[str, Any]:
    """The evaluation of a trial scored by loss: ``val_loss`` (lower is better), in the shape
    ``bench.runner`` records evaluations."""
    from bench import measure
    from bench.train import encode_train, mean_loss

    examples = encode_train(task, tokenizer, rows, budget)
    with measure.Timer() as timer:
        loss = mean_loss(
            model, examples, budget, pad_id=tokenizer.pad_token_id, regression=task.kind == "regress", device=device
        )
    result = {"metrics": {"val_loss": loss}, "n_eval": len(examples)}
    return {"status": "ok", "result": result, "cost": {"eval_seconds": timer.seconds}}
