"""The task contract (``TaskConfig``), JSONL loading with clear errors, and shared prompts.

A task is a frozen :class:`TaskConfig`. Its functions are pure:

- ``to_train(raw) -> dict``: one training example. Causal kinds return
  ``{"prompt": str, "target": str}`` (loss on the target only); encoder kinds return
  ``{"text": str, "text_pair": str | None, "label": int | float}``.
- ``to_eval(raw) -> dict``: one evaluation item, by ``kind``:
  ``generate``: ``{"prompt", "reference"}``; ``multiple_choice``: ``{"context", "choices",
  "gold"}`` (choices are continuations of the one context), or ``{"contexts", "continuation",
  "gold"}`` (partial scoring, lm-eval's WinoGrande: one context per choice, the option filling
  the blank, and one shared continuation whose log-likelihood is compared; ``gold`` indexes
  ``contexts``); ``classify``/``regress``: ``{"text", "text_pair", "label"}``.
- ``extract(response) -> answer`` (generate only): the answer parsed from the model's text.
- ``score(predictions, references) -> {metric: value}``; the first of ``metrics`` is primary.

Bump ``version`` whenever the prompt, the extraction or the data changes; every record
carries it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench.errors import UsageError

Kind = Literal["generate", "multiple_choice", "classify", "regress"]
Split = Literal["train", "eval"]
KINDS = ("generate", "multiple_choice", "classify", "regress")


@dataclass(frozen=True)
class HubSource:
    """Where users with network access load the task from (``datasets.load_dataset``)."""

    path: str
    name: str | None = None
    train_split: str = "train"
    eval_split: str = "validation"
    convert: Callable[[dict], dict] | None = None
    """Maps a hub row to the local files' field names, so one ``to_train``/``to_eval`` serves both."""
    data_files: dict[str, str] | None = None
    """For raw files (``path="json"``): split name -> URL, pinned to a commit (LLM-Adapters' JSON files)."""


@dataclass(frozen=True)
class TaskConfig:
    name: str
    """Registry name, lowercase (``arc_easy``)."""
    suite: str
    """``commonsense``, ``arithmetic``, ``glue`` or ``toy``; also a ``--tasks`` selector."""
    kind: Kind
    version: int
    """Bumped whenever prompt, extraction or data change."""
    metrics: tuple[str, ...]
    """Metric names; the first is the primary one shown in tables."""
    to_train: Callable[[dict], dict]
    to_eval: Callable[[dict], dict]
    score: Callable[[Sequence[Any], Sequence[Any]], dict[str, float]]
    default_model: str
    """Model alias used when ``--model`` is not given."""
    eval_file: str | None = None
    """Relative to the data dir (layout of ``../shared/data``), e.g. ``arc_easy/eval.jsonl``."""
    train_file: str | None = None
    required_fields: tuple[str, ...] = ()
    """Fields every eval row must have; checked with file and line in the error."""
    train_required_fields: tuple[str, ...] | None = None
    hub: HubSource | None = None
    generator: Callable[[Split], list[dict]] | None = None
    """For in-code tasks (``toy``): produces the rows of a split; no files."""
    extract: Callable[[str], Any] | None = None
    protocol: str = ""
    """How the task is scored, recorded with every result (e.g. ``loglik``, ``generate-greedy``)."""
    max_new_tokens: int = 32
    num_labels: int = 0
    """Classification labels (1 for regression); 0 for causal tasks."""
    higher_is_better: dict[str, bool] = field(default_factory=dict)
    """Direction of every name in ``metrics`` (``True``: higher is better); all are required."""
    description: str = ""
    display_name: str = ""
    """Short label for table columns (``ARC-e``); empty means ``name``."""
    train_hub: HubSource | None = None
    """Hub source of the train split when it is not ``hub``'s own (a mixture such as
    commonsense_170k or math_10k); ``None`` trains on ``hub``'s ``train_split``."""
    contaminated_by: tuple[str, ...] = ()
    """Train files (relative names, e.g. ``math_10k/train.jsonl``) known to contain this task's
    eval problems; records and tables should flag results trained on them."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"task {self.name}: kind '{self.kind}' must be one of {KINDS}")
        if self.kind == "generate" and self.extract is None:
            raise ValueError(f"task {self.name}: a generate task needs an extract function")
        if self.kind in ("classify", "regress") and self.num_labels < 1:
            raise ValueError(f"task {self.name}: num_labels must be >= 1 for {self.kind}")
        if self.generator is None and self.eval_file is None and self.hub is None:
            raise ValueError(f"task {self.name}: give eval_file, hub or generator")
        if not self.metrics:
            raise ValueError(f"task {self.name}: metrics is empty; name at least the primary metric")
        for metric in self.metrics:
            if metric not in self.higher_is_better:
                raise ValueError(
                    f"task {self.name}: metric '{metric}' has no direction; add "
                    f"higher_is_better={{'{metric}': True}} (False if lower is better)"
                )
        if not self.display_name:
            object.__setattr__(self, "display_name", self.name)  # frozen: set the fallback once

    @property
    def head(self) -> str:
        return "sequence_classification" if self.kind in ("classify", "regress") else "causal_lm"

    @property
    def primary_metric(self) -> str:
        return self.metrics[0]

    def load(self, split: Split, data_dir: str | os.PathLike | None) -> list[dict]:
        """Raw rows of ``split``: generated, from ``data_dir``, or from the hub."""
        if self.generator is not None:
            return self.generator(split)
        rel = self.eval_file if split == "eval" else self.train_file
        required = (
            self.required_fields
            if split == "eval"
            else (self.train_required_fields if self.train_required_fields is not None else self.required_fields)
        )
        if data_dir is not None:
            if rel is None:
                raise UsageError(f"task '{self.name}' has no local {split} file")
            return read_jsonl(Path(data_dir) / rel, required)
        hub = self.train_hub if split == "train" and self.train_hub is not None else self.hub
        if hub is None:
            raise UsageError(f"task '{self.name}' has no hub source; pass --data-dir (or set BENCH_DATA_DIR)")
        rows = load_hub(hub, split)
        for i, row in enumerate(rows):
            missing = [f for f in required if f not in row]
            if missing:
                raise UsageError(
                    f"hub dataset {hub.path} ({split}) row {i}: missing field(s) {', '.join(missing)} "
                    f"after conversion; task '{self.name}' needs {', '.join(required)}"
                )
        return rows


def read_jsonl(path: Path, required: Sequence[str] = ()) -> list[dict]:
    """Rows of a JSONL file; a broken line or a missing field names the file and line."""
    if not path.is_file():
        raise UsageError(
            f"data file '{path}' not found; point --data-dir (or BENCH_DATA_DIR) at a folder "
            "laid out like shared/data (<task>/eval.jsonl, <task>/train.jsonl)"
        )
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise UsageError(f"{path}:{lineno}: not valid JSON ({err.msg}); fix or remove the line") from None
            if not isinstance(row, dict):
                raise UsageError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            missing = [f for f in required if f not in row]
            if missing:
                raise UsageError(
                    f"{path}:{lineno}: missing field(s) {', '.join(missing)}; each row needs {', '.join(required)}"
                )
            rows.append(row)
    if not rows:
        raise UsageError(f"data file '{path}' is empty")
    return rows


def load_hub(hub: HubSource, split: Split) -> list[dict]:  # pragma: no cover - needs network
    """Rows from the hub via ``datasets.load_dataset`` (for users with network access)."""
    import datasets

    name = hub.train_split if split == "train" else hub.eval_split
    ds = datasets.load_dataset(hub.path, hub.name, split=name, data_files=hub.data_files)
    rows = [dict(r) for r in ds]
    return [hub.convert(r) for r in rows] if hub.convert else rows


# Alpaca-style prompt used by LLM-Adapters and NeuroAda for commonsense and arithmetic.
ALPACA_PROMPT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)


def alpaca_prompt(instruction: str) -> str:
    return ALPACA_PROMPT.format(instruction=instruction.strip())


def accuracy(predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
    """Exact-match accuracy in percent."""
    if not references:
        return {"accuracy": 0.0}
    hits = sum(p == r for p, r in zip(predictions, references, strict=True))
    return {"accuracy": 100.0 * hits / len(references)}
