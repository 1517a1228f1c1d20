"""GLUE: eight sentence(-pair) classification tasks on an encoder with a classification head.

Suite ``glue`` (the usual column order): glue_cola, glue_sst2, glue_mrpc, glue_qqp, glue_stsb,
glue_mnli, glue_qnli, glue_rte.

- **Data**: the Hugging Face ``nyu-mll/glue`` schema (local files were re-keyed into it, labels in
  its encodings); evaluation on the validation split (MNLI: validation_matched), as GLUE papers
  do, since the test labels are hidden.
- **Items**: ``to_train``/``to_eval`` return ``{"text", "text_pair", "label"}``; ``text_pair`` is
  ``None`` for the single-sentence tasks (CoLA, SST-2). STS-B is a regression (``kind="regress"``,
  one output, float label 0-5); the others are classifications (MNLI three-way).
- **Metrics**, all in percent like every other task (higher is better): accuracy 0-100;
  Matthews correlation, F1, Pearson and Spearman correlations multiplied by 100 (so -100..100
  for correlations). CoLA: Matthews (primary) and accuracy; MRPC and QQP: F1 of the positive
  class (paraphrase / duplicate, label 1; primary) and accuracy; STS-B: Pearson (primary) and
  Spearman; SST-2, MNLI (matched), QNLI, RTE: accuracy. A correlation with a constant side is
  undefined and reported as 0. Metrics come from sklearn (Matthews, F1) and scipy (Pearson,
  Spearman).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from bench.registry import TASKS as REGISTRY
from tasks._base import HubSource, TaskConfig

VERSION = 1
MODEL = "minilm-l6"
HUB_PATH = "nyu-mll/glue"
DISPLAY_NAMES = {
    "cola": "CoLA",
    "sst2": "SST-2",
    "mrpc": "MRPC",
    "qqp": "QQP",
    "stsb": "STS-B",
    "mnli": "MNLI",
    "qnli": "QNLI",
    "rte": "RTE",
}
"""Table labels by GLUE config name (the GLUE paper's spelling)."""


# ---------------------------------------------------------------------------------------------
# Metrics (pure; fractions, not percent): sklearn and scipy, imported on first use because they
# add about 2 s to every start of the CLI, and most runs score no GLUE task.
# ---------------------------------------------------------------------------------------------
def matthews_corrcoef(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Matthews correlation (sklearn: binary MCC, Gorodkin's multi-class form for more classes);
    0.0 when undefined (a constant prediction or reference, as sklearn returns) or empty."""
    from sklearn import metrics

    if not references:
        return 0.0  # sklearn refuses empty input; an empty eval set scores 0 like accuracy
    return float(metrics.matthews_corrcoef(list(references), list(predictions)))


def f1_binary(predictions: Sequence[int], references: Sequence[int], positive: int = 1) -> float:
    """F1 of the ``positive`` class; 0.0 when it is neither predicted nor present, or empty."""
    from sklearn import metrics

    if not references:
        return 0.0
    # labels=[positive]: the F1 of that class whatever other labels occur (average="binary"
    # refuses label sets without ``positive``); zero_division=0.0: no TP, FP or FN -> 0.0.
    score = metrics.f1_score(
        list(references), list(predictions), labels=[positive], average="macro", zero_division=0.0
    )
    return float(score)


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation (scipy); 0.0 when either side is constant (undefined) or under 2 items."""
    from scipy import stats

    return _correlation(stats.pearsonr, x, y)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman correlation (scipy: Pearson of the tie-averaged ranks); 0.0 when undefined."""
    from scipy import stats

    return _correlation(stats.spearmanr, x, y)


def _correlation(
    correlate: Callable[[Sequence[float], Sequence[float]], Any], x: Sequence[float], y: Sequence[float]
) -> float:
    from scipy import stats

    if len(x) != len(y):
        raise ValueError(f"{correlate.__name__}: {len(x)} predictions but {len(y)} references")
    if len(x) < 2:
        return 0.0  # scipy needs two points; one or none has no correlation
    with warnings.catch_warnings():
        # A constant side makes the correlation undefined: scipy warns and returns nan. We report
        # 0.0 (no evidence of correlation), as the hand-written version before scipy did.
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        value = float(correlate(x, y)[0])
    return 0.0 if math.isnan(value) else value


def _accuracy(predictions: Sequence[Any], references: Sequence[Any]) -> float:
    if not references:
        return 0.0
    return sum(p == r for p, r in zip(predictions, references, strict=True)) / len(references)


# Scores in percent.
def score_accuracy(predictions: Sequence[int], references: Sequence[int]) -> dict[str, float]:
    return {"accuracy": 100.0 * _accuracy(predictions, references)}


def score_matthews(predictions: Sequence[int], references: Sequence[int]) -> dict[str, float]:
    return {
        "matthews_corr": 100.0 * matthews_corrcoef(predictions, references),
        "accuracy": 100.0 * _accuracy(predictions, references),
    }


def score_f1_accuracy(predictions: Sequence[int], references: Sequence[int]) -> dict[str, float]:
    return {
        "f1": 100.0 * f1_binary(predictions, references),
        "accuracy": 100.0 * _accuracy(predictions, references),
    }


def score_correlations(predictions: Sequence[float], references: Sequence[float]) -> dict[str, float]:
    predictions = [float(p) for p in predictions]
    references = [float(r) for r in references]
    return {"pearson": 100.0 * pearson(predictions, references), "spearman": 100.0 * spearman(predictions, references)}


# ---------------------------------------------------------------------------------------------
# Task configs
# ---------------------------------------------------------------------------------------------
def _item(first: str, second: str | None, cast: Callable[[Any], Any]) -> Callable[[dict], dict]:
    def convert(row: dict) -> dict:
        return {"text": row[first], "text_pair": row[second] if second else None, "label": cast(row["label"])}

    convert.__name__ = f"item_{first}_{second or 'none'}"
    return convert


def _task(
    config: str,
    fields: tuple[str, str | None],
    score: Callable[[Sequence[Any], Sequence[Any]], dict[str, float]],
    metrics: tuple[str, ...],
    description: str,
    *,
    num_labels: int = 2,
    eval_split: str = "validation",
) -> TaskConfig:
    regress = num_labels == 1
    item = _item(*fields, float if regress else int)
    name = f"glue_{config}"
    return TaskConfig(
        name=name,
        suite="glue",
        kind="regress" if regress else "classify",
        version=VERSION,
        metrics=metrics,
        to_train=item,
        to_eval=item,
        score=score,
        default_model=MODEL,
        eval_file=f"{name}/eval.jsonl",
        train_file=f"{name}/train.jsonl",
        required_fields=(*(f for f in fields if f), "label"),
        train_required_fields=(*(f for f in fields if f), "label"),
        hub=HubSource(HUB_PATH, config, train_split="train", eval_split=eval_split),
        protocol=f"{'regress' if regress else 'classify'}: encoder + head, {', '.join(metrics)} in percent "
        f"on {HUB_PATH}/{config} {eval_split}",
        num_labels=num_labels,
        higher_is_better={m: True for m in metrics},  # accuracy, F1 and correlations alike
        description=description,
        display_name=DISPLAY_NAMES[config],
    )


GLUE_COLA = REGISTRY.register(
    _task(
        "cola",
        ("sentence", None),
        score_matthews,
        ("matthews_corr", "accuracy"),
        "CoLA grammatical acceptability (1 = acceptable), Matthews correlation",
    )
)
GLUE_SST2 = REGISTRY.register(
    _task("sst2", ("sentence", None), score_accuracy, ("accuracy",), "SST-2 movie-review sentiment (1 = positive)")
)
GLUE_MRPC = REGISTRY.register(
    _task(
        "mrpc",
        ("sentence1", "sentence2"),
        score_f1_accuracy,
        ("f1", "accuracy"),
        "MRPC paraphrase detection (1 = equivalent), F1 and accuracy",
    )
)
GLUE_QQP = REGISTRY.register(
    _task(
        "qqp",
        ("question1", "question2"),
        score_f1_accuracy,
        ("f1", "accuracy"),
        "QQP duplicate Quora questions (1 = duplicate), F1 and accuracy",
    )
)
GLUE_STSB = REGISTRY.register(
    _task(
        "stsb",
        ("sentence1", "sentence2"),
        score_correlations,
        ("pearson", "spearman"),
        "STS-B sentence similarity 0-5 by regression, Pearson and Spearman",
        num_labels=1,
    )
)
GLUE_MNLI = REGISTRY.register(
    _task(
        "mnli",
        ("premise", "hypothesis"),
        score_accuracy,
        ("accuracy",),
        "MNLI entailment/neutral/contradiction (0/1/2), matched validation accuracy",
        num_labels=3,
        eval_split="validation_matched",
    )
)
GLUE_QNLI = REGISTRY.register(
    _task(
        "qnli",
        ("question", "sentence"),
        score_accuracy,
        ("accuracy",),
        "QNLI does the sentence answer the question (0 = entailment)",
    )
)
GLUE_RTE = REGISTRY.register(
    _task(
        "rte",
        ("sentence1", "sentence2"),
        score_accuracy,
        ("accuracy",),
        "RTE textual entailment (0 = entailment)",
    )
)
TASKS = [GLUE_COLA, GLUE_SST2, GLUE_MRPC, GLUE_QQP, GLUE_STSB, GLUE_MNLI, GLUE_QNLI, GLUE_RTE]
