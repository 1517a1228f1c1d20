"""Evaluation through lm-evaluation-harness (``--evaluator lm-eval``), as a cross-check of ``bench.evaluate``.

:func:`evaluate` has the signature of :func:`bench.evaluate.evaluate` and returns the same
:class:`~bench.evaluate.EvalResult` (same metric names), but the scoring runs in lm-eval: the
(merged, in-memory) model is wrapped in lm-eval's ``HFLM`` and the rows given are written to a
temporary lm-eval task (a JSONL file read with ``dataset_path: json`` and a YAML config, loaded
with ``TaskManager(include_path=...)``), then scored by ``lm_eval.evaluator.evaluate``:

- ``multiple_choice``: ``output_type: multiple_choice``. Items ``{"context", "choices"}`` become
  ``doc_to_text`` = the context and ``doc_to_choice`` = the choices; a leading space shared by
  every choice becomes lm-eval's ``target_delimiter`` (as in lm-eval's own piqa/arc configs), so
  that ``acc_norm`` divides by the choice length without the delimiter, exactly as lm-eval's
  registered tasks do. Partial-scoring items ``{"contexts", "continuation"}`` (WinoGrande) use
  lm-eval's own device, that of its ``winogrande.yaml``: ``doc_to_text`` returns the gold *index*
  (an int, which makes lm-eval build one context per choice), ``doc_to_choice`` the contexts and
  ``doc_to_target`` the shared continuation. ``accuracy`` / ``accuracy_norm`` are lm-eval's
  per-item ``acc`` / ``acc_norm``, in percent; predictions are the argmax of lm-eval's
  log-likelihoods (the first maximum, like numpy's and ours). Partial scoring reports
  ``accuracy`` only, as lm-eval's winogrande does: lm-eval's ``acc_norm`` there would divide each
  option's score by the length of its context.
- ``generate``: ``output_type: generate_until``, greedy (``do_sample: false``, one beam),
  ``max_gen_toks`` = ``task.max_new_tokens``, ``until`` = ``[]``, to which lm-eval adds the EOS
  text: the native evaluator stops at EOS and nowhere else, and a stop string would truncate
  responses that ``task.extract`` reads past. lm-eval's raw responses (its logged samples) then
  go through *our* ``task.extract`` and ``task.score``, so the scoring is identical.
- ``classify`` / ``regress`` (encoder models): not lm-eval's domain; :class:`UsageError`.

What makes lm-eval and the native evaluator agree (``tests/bench/test_lm_eval_bridge.py`` checks
it to 1e-4 per log-likelihood, plus a few fp32 ulps of the value): the same request strings, the
same encoding (trailing spaces of the context moved to the continuation, whole string encoded
once), padding that real positions never attend to (lm-eval: one right-padded row per request;
native: each context once, left padded with true position ids, its choices from its KV cache,
``bench.loglik``), the same greedy decoding (native: ``bench.decode``, which drops finished
rows). Where they can differ, by design of lm-eval:

- **Special tokens**: lm-eval encodes with the tokenizer's default ``add_special_tokens`` (a
  LLaMA/Gemma/Mistral tokenizer prepends BOS); ``bench.loglik.encode_pair`` passes
  ``add_special_tokens=False``. Same numbers for tokenizers that add nothing (GPT-2 style such
  as SmolLM2, and the tests' character tokenizer).
- **Empty context**: lm-eval conditions on the BOS token when the tokenizer has one (else EOS);
  the native path always on EOS. None of our tasks has an empty context.
- **Length**: lm-eval left-truncates a log-likelihood input to the model's maximum length (and
  a prompt to max length - ``max_gen_toks``); the native path does not truncate.
- **Stop text**: lm-eval also stops generating when the decoded text contains the EOS *string*
  (``</s>`` spelt out by ordinary tokens), the native path only at the EOS token.

Without these rows (a user with network access), :func:`evaluate_registered` runs lm-eval's own
registered task for one of ours, named by :func:`lm_eval_task_name`:

=====================  ===================  ==============================================
ours                   lm-eval              comparable?
=====================  ===================  ==============================================
piqa_mc                piqa                 same prompt and metric; validation split
arc_easy_mc            arc_easy             same prompt and metric; test split
arc_challenge_mc       arc_challenge        same prompt and metric; test split
openbookqa_mc          openbookqa           same prompt (question stem) and metric; test
winogrande_mc          winogrande           same partial scoring; validation (winogrande_xl)
boolq_mc               boolq                same data and metric only: lm-eval's prompt
                                            lacks our "Passage: " prefix (llm-foundry's)
boolq, piqa, siqa,     boolq, piqa,         same data only: ours generate an answer after an
hellaswag, winogrande, social_iqa,          Alpaca prompt, lm-eval's score options by
arc_easy,              hellaswag,           log-likelihood
arc_challenge,         winogrande,
openbookqa             arc_easy, ...
gsm8k                  gsm8k                same data only: lm-eval's is 5-shot
                                            ("Question: ... Answer:"), ours zero-shot Alpaca
=====================  ===================  ==============================================

``lm_eval_task_name`` returns the first five (same protocol) by default, all of them with
``same_protocol=False``. The other arithmetic tasks have no lm-eval counterpart, and the GLUE
tasks (encoders here, prompted causal LMs in lm-eval) none that is comparable: ``None``.

lm-eval's HFLM given an in-memory model runs as one process: in a job shared by several
processes, every rank evaluates every item (same results on each).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.errors import UsageError
from bench.evaluate import EvalResult

# Our task -> lm-eval's registered task with the same prompt, scoring and split (see above).
SAME_PROTOCOL: dict[str, str] = {
    "piqa_mc": "piqa",
    "arc_easy_mc": "arc_easy",
    "arc_challenge_mc": "arc_challenge",
    "openbookqa_mc": "openbookqa",
    "winogrande_mc": "winogrande",
}
# Our task -> lm-eval's task on the same data but prompted or scored its own way.
SAME_DATA: dict[str, str] = {
    "boolq_mc": "boolq",  # lm-eval's prompt has no "Passage: " before the passage
    "boolq": "boolq",
    "piqa": "piqa",
    "siqa": "social_iqa",
    "hellaswag": "hellaswag",
    "winogrande": "winogrande",
    "arc_easy": "arc_easy",
    "arc_challenge": "arc_challenge",
    "openbookqa": "openbookqa",
    "gsm8k": "gsm8k",
}
_PERCENT = {"acc", "acc_norm", "acc_bytes", "acc_mutual_info", "exact_match"}
_RENAME = {"acc": "accuracy", "acc_norm": "accuracy_norm"}
_N_SAMPLES = 5  # items kept in EvalResult.samples, as the native evaluator does


def lm_eval_task_name(task, *, same_protocol: bool = True) -> str | None:
    """lm-eval's registered task for ``task`` (a TaskConfig or its name), or ``None``.

    With ``same_protocol`` (the default) only tasks that lm-eval scores as we do, so that the
    numbers compare; with ``same_protocol=False`` also those on the same data scored lm-eval's
    own way (our generate variants, gsm8k)."""
    name = task if isinstance(task, str) else task.name
    if name in SAME_PROTOCOL:
        return SAME_PROTOCOL[name]
    return None if same_protocol else SAME_DATA.get(name)


def check_supported(task) -> None:
    """Raise :class:`UsageError` unless lm-eval can score ``task`` (call it before loading models)."""
    if task.kind in ("classify", "regress"):
        raise UsageError(
            f"--evaluator lm-eval scores causal LM tasks only; task '{task.name}' is a {task.kind} task "
            "for an encoder with a classification head; use --evaluator native"
        )


# ---------------------------------------------------------------------------------------------
# Offline: our rows as a temporary lm-eval task
# ---------------------------------------------------------------------------------------------
def evaluate(
    task,
    model: nn.Module,
    tokenizer,
    rows: Sequence[dict],
    *,
    batch_size: int,
    device: torch.device,
    progress: bool = True,
) -> EvalResult:
    """Score ``rows`` of ``task`` with lm-eval; a drop-in for :func:`bench.evaluate.evaluate`."""
    check_supported(task)
    items = [task.to_eval(r) for r in rows]
    samples = run_items(task, items, model, tokenizer, batch_size=batch_size, device=device, progress=progress)
    if task.kind == "generate":
        return _generate_result(task, items, samples)
    return _multiple_choice_result(items, samples)


def run_items(
    task,
    items: Sequence[dict],
    model: nn.Module,
    tokenizer,
    *,
    batch_size: int,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> list[dict[str, Any]]:
    """lm-eval's logged samples for ``items`` (``task.to_eval`` outputs), one per item in order.

    Each sample holds ``arguments`` (the request strings lm-eval built), ``resps`` (raw model
    outputs: ``(loglik, is_greedy)`` per choice, or the generated text) and, for multiple
    choice, lm-eval's per-item ``acc`` and ``acc_norm``."""
    check_supported(task)
    if not items:
        raise UsageError(f"task '{task.name}': no rows to evaluate")
    from lm_eval import evaluator
    from lm_eval.tasks import TaskManager

    name = f"peft_bench_{task.name}"
    with tempfile.TemporaryDirectory(prefix="peft-bench-lm-eval-") as tmp, _quiet(progress):
        _write_task(task, name, items, Path(tmp))
        # Only our config: indexing lm-eval's ~15,000 bundled YAML files is slow and not needed.
        manager = TaskManager(include_path=str(Path(tmp) / "tasks"), include_defaults=False)
        lm = _hflm(model, tokenizer, batch_size=batch_size, device=device, progress=progress)
        # evaluator.evaluate, not simple_evaluate: no global reseeding, no hub lookup of a model SHA.
        out = evaluator.evaluate(lm=lm, task_dict=manager.load([name]), bootstrap_iters=0, log_samples=True)
    samples = sorted(out["samples"][name], key=lambda s: s["doc_id"])
    if [s["doc_id"] for s in samples] != list(range(len(items))):
        raise RuntimeError(f"lm-eval returned {len(samples)} samples for {len(items)} items of task '{task.name}'")
    return samples


def _write_task(task, name: str, items: Sequence[dict], root: Path) -> None:
    """``root/data.jsonl`` (one document per item) and ``root/tasks/<name>.yaml``."""
    config: dict[str, Any] = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {
            "data_files": {"test": str(root / "data.jsonl")},
            "cache_dir": str(root / "hf-datasets-cache"),  # removed with root, not left in ~/.cache
        },
        "test_split": "test",
        "num_fewshot": 0,
        "metadata": {"version": task.version},
    }
    if task.kind == "generate":
        docs = [{"prompt": it["prompt"], "reference": str(it["reference"])} for it in items]
        generation_kwargs: dict[str, Any] = {
            "until": [],  # lm-eval adds the EOS text; see the module docstring
            "do_sample": False,
            "num_beams": 1,
            "max_gen_toks": task.max_new_tokens,
        }
        config.update(
            output_type="generate_until",
            doc_to_text="prompt",  # a field name: lm-eval returns the field itself, no Jinja rendering
            doc_to_target="reference",
            generation_kwargs=generation_kwargs,
            metric_list=[_metric("exact_match")],  # not reported: our task.score scores the responses
        )
    elif "contexts" in items[0]:
        continuations = [it["continuation"] for it in items]
        delimiter = _shared_delimiter(continuations)
        docs = [
            {"gold": int(it["gold"]), "contexts": list(it["contexts"]), "continuation": c[len(delimiter) :]}
            for it, c in zip(items, continuations, strict=True)
        ]
        config.update(
            output_type="multiple_choice",
            doc_to_text="gold",  # an int: lm-eval's multiple-input mode, one context per choice
            doc_to_choice="contexts",
            doc_to_target="continuation",
            target_delimiter=delimiter,
            # acc only, as in lm-eval's winogrande.yaml: its acc_norm here would divide by the
            # length of each *context* (doc_to_choice), not of the shared continuation.
            metric_list=[_metric("acc")],
        )
    else:
        delimiter = _shared_delimiter([c for it in items for c in it["choices"]])
        docs = [
            {
                "context": it["context"],
                "choices": [c[len(delimiter) :] for c in it["choices"]],
                "gold": int(it["gold"]),
            }
            for it in items
        ]
        config.update(
            output_type="multiple_choice",
            doc_to_text="context",
            doc_to_choice="choices",
            doc_to_target="gold",
            target_delimiter=delimiter,
            metric_list=[_metric("acc"), _metric("acc_norm")],
        )
    import yaml

    (root / "tasks").mkdir()
    with (root / "data.jsonl").open("w", encoding="utf-8") as fh:
        for doc in docs:
            fh.write(json.dumps(doc, ensure_ascii=False) + "\n")
    (root / "tasks" / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


def _metric(name: str) -> dict[str, Any]:
    return {"metric": name, "aggregation": "mean", "higher_is_better": True}


def _shared_delimiter(continuations: Sequence[str]) -> str:
    """``" "`` when every continuation is a space followed by text (lm-eval's default target
    delimiter, moved out of the choice text), else ``""`` (continuations kept as they are)."""
    return " " if all(len(c) > 1 and c[0] == " " for c in continuations) else ""


def _multiple_choice_result(items: Sequence[dict], samples: Sequence[dict]) -> EvalResult:
    logliks = [[float(r[0]) for r in s["filtered_resps"]] for s in samples]
    predictions = [max(range(len(ll)), key=lambda j, ll=ll: ll[j]) for ll in logliks]
    n = len(items)
    metrics = {"accuracy": 100.0 * sum(float(s["acc"]) for s in samples) / n}
    if "acc_norm" in samples[0]:  # not for partial scoring (WinoGrande); see _write_task
        metrics["accuracy_norm"] = 100.0 * sum(float(s["acc_norm"]) for s in samples) / n
    shown = [
        {"loglik": ll, "prediction": p, "gold": it["gold"]}
        for ll, p, it in list(zip(logliks, predictions, items, strict=True))[:_N_SAMPLES]
    ]
    golds = [it["gold"] for it in items]
    extra = {}
    if "acc_norm" in samples[0]:  # lm-eval's per-item acc_norm: the normalised choice is right or not
        extra["correct_norm"] = [bool(float(s["acc_norm"])) for s in samples]
    return EvalResult(metrics, n, predictions, shown, golds, extra)


def _generate_result(task, items: Sequence[dict], samples: Sequence[dict]) -> EvalResult:
    responses = [s["resps"][0][0] for s in samples]  # raw text, before lm-eval's filters
    predictions = [task.extract(r) for r in responses]
    references = [it["reference"] for it in items]
    shown = [
        {"prompt_tail": it["prompt"][-200:], "response": r, "prediction": p, "reference": it["reference"]}
        for it, r, p in list(zip(items, responses, predictions, strict=True))[:_N_SAMPLES]
    ]
    return EvalResult(task.score(predictions, references), len(items), predictions, shown, references)


# ---------------------------------------------------------------------------------------------
# With network: lm-eval's own registered tasks
# ---------------------------------------------------------------------------------------------
def evaluate_registered(
    task,
    model: nn.Module,
    tokenizer,
    *,
    batch_size: int,
    device: torch.device | str = "cpu",
    limit: int | None = None,
    num_fewshot: int | None = None,
    same_protocol: bool = True,
    progress: bool = True,
    task_manager=None,
) -> EvalResult:
    """Score ``model`` on lm-eval's registered counterpart of ``task`` (a TaskConfig, one of our
    task names, or an lm-eval task name), exactly as ``lm_eval --tasks <name>`` would.

    Downloads the task's dataset (needs network or a warm HF cache). Metrics: ``acc`` and
    ``acc_norm`` become ``accuracy`` and ``accuracy_norm``; other metrics keep lm-eval's name,
    suffixed with their filter when it is not ``none`` (``exact_match_strict-match``); 0-1
    metrics are given in percent, like ours. ``num_fewshot=None`` keeps the task's default
    (gsm8k: 5). ``predictions`` is empty; ``samples`` holds the first few of lm-eval's.
    ``task_manager`` defaults to lm-eval's bundled tasks (``TaskManager()``, ~8 s to index)."""
    ours = not isinstance(task, str) or task in SAME_PROTOCOL or task in SAME_DATA
    if not isinstance(task, str):
        check_supported(task)
    name = lm_eval_task_name(task, same_protocol=same_protocol) if ours else task
    if name is None:
        ours_name = task if isinstance(task, str) else task.name
        mapped = SAME_PROTOCOL if same_protocol else {**SAME_PROTOCOL, **SAME_DATA}
        hint = "; same_protocol=False adds those on the same data" if same_protocol else ""
        raise UsageError(
            f"task '{ours_name}' has no{' comparable' if same_protocol else ''} lm-eval counterpart; "
            f"those that do: {', '.join(mapped)}{hint}"
        )
    import lm_eval
    from lm_eval.tasks import TaskManager

    with _quiet(progress), _preserve_rng():
        lm = _hflm(model, tokenizer, batch_size=batch_size, device=device, progress=progress)
        out = lm_eval.simple_evaluate(
            model=lm,
            tasks=[name],
            num_fewshot=num_fewshot,
            limit=limit,
            bootstrap_iters=0,
            log_samples=True,
            task_manager=task_manager if task_manager is not None else TaskManager(),
        )
    if name not in out["results"]:
        raise UsageError(f"lm-eval task '{name}' is a group; name one of its tasks: {', '.join(out['results'])}")
    metrics: dict[str, float] = {}
    for key, value in out["results"][name].items():
        metric, _, filt = key.partition(",")
        if not filt or metric.endswith("_stderr") or not isinstance(value, (int, float)):
            continue
        label = _RENAME.get(metric, metric) + ("" if filt == "none" else f"_{filt}")
        metrics[label] = 100.0 * value if metric in _PERCENT else float(value)
    n_items = int(out["n-samples"][name]["effective"])
    shown = [
        {"arguments": s["arguments"], "resps": s["resps"], "target": s["target"]}
        for s in out["samples"][name][:_N_SAMPLES]
    ]
    return EvalResult(metrics, n_items, [], json.loads(json.dumps(shown, default=str)))


# ---------------------------------------------------------------------------------------------
# lm-eval's model calls alone (bench evalspeed times these against the native paths)
# ---------------------------------------------------------------------------------------------
def hflm(model: nn.Module, tokenizer, *, batch_size: int):
    """lm-eval's ``HFLM`` around an in-memory model, built once and reused across timed calls."""
    with _quiet(False):
        return _hflm(model, tokenizer, batch_size=batch_size, device=next(model.parameters()).device, progress=False)


def loglikelihood(lm, requests: Sequence[tuple[str, str]]) -> list[float]:
    """``lm.loglikelihood`` on (context, continuation) pairs: lm-eval's own encoding and batching."""
    from lm_eval.api.instance import Instance

    instances = [Instance("loglikelihood", {}, (c, x), i) for i, (c, x) in enumerate(requests)]
    return [float(ll) for ll, _ in lm.loglikelihood(instances, disable_tqdm=True)]


def generate_until(lm, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
    """``lm.generate_until`` greedy with the generation settings of :func:`evaluate`'s tasks."""
    from lm_eval.api.instance import Instance

    kwargs = {"until": [], "do_sample": False, "num_beams": 1, "max_gen_toks": max_new_tokens}
    instances = [Instance("generate_until", {}, (p, dict(kwargs)), i) for i, p in enumerate(prompts)]
    return list(lm.generate_until(instances, disable_tqdm=True))


# ---------------------------------------------------------------------------------------------
# Shared
# ---------------------------------------------------------------------------------------------
def _hflm(model: nn.Module, tokenizer, *, batch_size: int, device: torch.device | str, progress: bool):
    from lm_eval.models.huggingface import HFLM

    class _HFLM(HFLM):
        """HFLM whose progress bars follow ``progress`` (lm-eval's evaluator passes no flag)."""

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            return super().loglikelihood(requests, disable_tqdm=disable_tqdm or not progress)

        def generate_until(self, requests, disable_tqdm: bool = False):
            return super().generate_until(requests, disable_tqdm=disable_tqdm or not progress)

    # An in-memory model is used where it is (``device`` is ignored for it); add_bos_token=None
    # keeps lm-eval's default, the tokenizer's own add_special_tokens.
    return _HFLM(pretrained=model, tokenizer=tokenizer, backend="causal", batch_size=batch_size, device=str(device))


@contextlib.contextmanager
def _quiet(progress: bool) -> Iterator[None]:
    """lm-eval's and datasets' logging at ERROR; their progress bars off unless ``progress``."""
    import datasets
    import lm_eval.api.task
    from tqdm.auto import tqdm

    loggers = [logging.getLogger(n) for n in ("lm_eval", "datasets")]
    levels = [lg.level for lg in loggers]
    bars_were_off = datasets.are_progress_bars_disabled()
    task_tqdm = lm_eval.api.task.tqdm  # "Building contexts" bar, which takes no disable flag
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        if not progress:
            datasets.disable_progress_bars()
            lm_eval.api.task.tqdm = lambda *a, **k: tqdm(*a, **{**k, "disable": True})
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        lm_eval.api.task.tqdm = task_tqdm
        if not progress and not bars_were_off:
            datasets.enable_progress_bars()


@contextlib.contextmanager
def _preserve_rng() -> Iterator[None]:
    """simple_evaluate reseeds python, numpy and torch; give the caller its generators back."""
    import numpy as np

    states = (random.getstate(), np.random.get_state(), torch.random.get_rng_state())
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
