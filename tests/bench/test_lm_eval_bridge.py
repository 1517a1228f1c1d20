"""lm-eval agreement: on the same model and items, ``bench.evaluate`` and lm-evaluation-harness
(``bench.lm_eval_bridge``) send the same requests and get the same log-likelihoods, accuracies
and greedy responses.

The model is the random-init tiny LLaMA with the character tokenizer, which adds no special
tokens, so lm-eval (which encodes with the tokenizer's defaults) prepends nothing the native
path does not. Known divergences are pinned by their own tests (truncation).
"""

from __future__ import annotations

import os
import random
import re
import tempfile
from pathlib import Path

import pytest
import torch

import tasks
from bench import lm_eval_bridge, models
from bench.decode import greedy as generate
from bench.errors import UsageError
from bench.evaluate import evaluate
from bench.loglik import encode_pair as encode_pair_lm_eval
from bench.loglik import shared as loglikelihoods

CPU = torch.device("cpu")
LOGLIK_ATOL = 1e-4  # fp32 sums over <= ~300 tokens; batches are padded differently by the two paths
# plus a few fp32 ulps of the value: the random tiny model gives log-likelihoods down to -1,200,
# where one ulp is 1.2e-4 (the native path scores from a KV cache, lm-eval from whole rows)
LOGLIK_RTOL = 4e-7
N_ROWS = 20
DATA_DIR = Path(os.environ.get("BENCH_DATA_DIR") or Path(__file__).resolve().parents[2] / ".." / "shared" / "data")
needs_data = pytest.mark.skipif(
    not DATA_DIR.is_dir(), reason=f"shared data not found at {DATA_DIR} (set BENCH_DATA_DIR)"
)


@pytest.fixture(scope="module")
def llama():
    return models.tiny_llama(0), models.tiny_tokenizer()


def _rows(task_name: str, n: int | None = N_ROWS) -> list[dict]:
    task = tasks.get(task_name)
    rows = task.load("eval", None if task.generator else DATA_DIR)
    return rows[:n]


def _requests(items: list[dict]) -> list[tuple[str, str]]:
    """The (context, continuation) pairs the native evaluator scores, in item order."""
    out: list[tuple[str, str]] = []
    for it in items:
        if "contexts" in it:
            out += [(c, it["continuation"]) for c in it["contexts"]]
        else:
            out += [(it["context"], ch) for ch in it["choices"]]
    return out


def _lm_eval_logliks(samples: list[dict]) -> list[float]:
    return [float(r[0]) for s in samples for r in s["filtered_resps"]]


def _check_mc_agreement(task_name: str, model, tok) -> None:
    task = tasks.get(task_name)
    rows = _rows(task_name)
    items = [task.to_eval(r) for r in rows]
    requests = _requests(items)
    native = evaluate(task, model, tok, rows, batch_size=8, device=CPU, progress=False)
    native_ll = loglikelihoods(model, tok, requests, batch_size=8, device=CPU, progress=False)
    samples = lm_eval_bridge.run_items(task, items, model, tok, batch_size=8)
    bridged = lm_eval_bridge.evaluate(task, model, tok, rows, batch_size=8, device=CPU, progress=False)

    # the same request strings (lm-eval moves a leading space into target_delimiter and back) ...
    assert [tuple(a) for s in samples for a in s["arguments"]] == requests
    # ... the same log-likelihood per request ...
    torch.testing.assert_close(
        torch.tensor(_lm_eval_logliks(samples), dtype=torch.float64),
        torch.tensor(native_ll, dtype=torch.float64),
        rtol=LOGLIK_RTOL,
        atol=LOGLIK_ATOL,
    )
    # ... hence the same argmax per item and exactly the same accuracy.
    assert bridged.predictions == native.predictions
    assert bridged.metrics["accuracy"] == native.metrics["accuracy"]
    assert bridged.n_items == native.n_items == len(rows)
    assert bridged.samples[0]["gold"] == native.samples[0]["gold"]
    if "contexts" in items[0]:
        assert set(bridged.metrics) == {"accuracy"}  # lm-eval's winogrande reports acc only
        return
    # accuracy_norm is lm-eval's acc_norm: log-likelihood / characters of the choice *without*
    # the target delimiter (the leading space). Recomputed here from the native log-likelihoods.
    hits, start = 0, 0
    for it in items:
        n = len(it["choices"])
        normed = [native_ll[start + j] / len(it["choices"][j].removeprefix(" ")) for j in range(n)]
        hits += max(range(n), key=lambda j, normed=normed: normed[j]) == it["gold"]
        start += n
    assert bridged.metrics["accuracy_norm"] == 100.0 * hits / len(items)


def test_toy_mc_agreement(llama):
    _check_mc_agreement("toy_mc", *llama)


@needs_data
@pytest.mark.parametrize("task_name", ["piqa_mc", "winogrande_mc", "openbookqa_mc"])
def test_real_mc_agreement(llama, task_name):
    _check_mc_agreement(task_name, *llama)


@needs_data
def test_lm_eval_left_truncates_long_inputs_native_does_not(llama):
    """BoolQ passages exceed the tiny model's 512 positions in characters: lm-eval keeps the
    last max_length + 1 tokens of context + continuation, the native path keeps them all. The
    items that fit agree; those that do not, differ."""
    model, tok = llama
    task = tasks.get("boolq_mc")
    items = [task.to_eval(r) for r in _rows("boolq_mc")]
    requests = _requests(items)
    native_ll = loglikelihoods(model, tok, requests, batch_size=8, device=CPU, progress=False)
    lm_ll = _lm_eval_logliks(lm_eval_bridge.run_items(task, items, model, tok, batch_size=8))
    window = model.config.max_position_embeddings + 1  # lm-eval's max_length, plus the dropped last token
    long = [sum(map(len, encode_pair_lm_eval(tok, c, x))) > window for c, x in requests]
    assert 0 < sum(long) < len(long)
    diffs = [abs(a - b) - LOGLIK_RTOL * abs(b) for a, b in zip(native_ll, lm_ll, strict=True)]
    assert max(d for d, lg in zip(diffs, long, strict=True) if not lg) <= LOGLIK_ATOL
    assert max(d for d, lg in zip(diffs, long, strict=True) if lg) > 1e-3


@pytest.mark.parametrize(("task_name", "n"), [("toy_sum", None), pytest.param("boolq", 8, marks=needs_data)])
def test_generate_agreement(llama, task_name, n):
    """Greedy responses: ours == lm-eval's generate_until (until = EOS only), then the same
    extraction and score. BoolQ (generate variant): 32 new tokens after an Alpaca prompt."""
    model, tok = llama
    task = tasks.get(task_name)
    rows = _rows(task_name, n)
    items = [task.to_eval(r) for r in rows]
    responses = generate(
        model,
        tok,
        [it["prompt"] for it in items],
        max_new_tokens=task.max_new_tokens,
        batch_size=4,
        device=CPU,
        progress=False,
    )
    samples = lm_eval_bridge.run_items(task, items, model, tok, batch_size=4)
    assert [s["resps"][0][0] for s in samples] == responses
    assert any(responses)  # text to compare, not only empty strings
    native = evaluate(task, model, tok, rows, batch_size=4, device=CPU, progress=False)
    bridged = lm_eval_bridge.evaluate(task, model, tok, rows, batch_size=4, device=CPU, progress=False)
    assert bridged.metrics == native.metrics
    assert bridged.predictions == native.predictions
    assert bridged.samples == native.samples


# ---------------------------------------------------------------------------------------------
# Former divergences (BOS, acc_norm length), fixed in the native evaluator
# ---------------------------------------------------------------------------------------------
def test_native_matches_lm_eval_with_a_bos_adding_tokenizer(llama):
    from tokenizers import processors

    model, _ = llama
    tok = models.tiny_tokenizer()
    tok._tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    task = tasks.get("toy_mc")
    items = [task.to_eval(r) for r in _rows("toy_mc")]
    native_ll = loglikelihoods(model, tok, _requests(items), batch_size=8, device=CPU, progress=False)
    lm_ll = _lm_eval_logliks(lm_eval_bridge.run_items(task, items, model, tok, batch_size=8))
    torch.testing.assert_close(torch.tensor(lm_ll), torch.tensor(native_ll), rtol=LOGLIK_RTOL, atol=LOGLIK_ATOL)


@needs_data
def test_native_accuracy_norm_matches_lm_eval(llama):
    model, tok = llama
    task = tasks.get("piqa_mc")
    rows = _rows("piqa_mc")
    native = evaluate(task, model, tok, rows, batch_size=8, device=CPU, progress=False)
    bridged = lm_eval_bridge.evaluate(task, model, tok, rows, batch_size=8, device=CPU, progress=False)
    assert native.metrics["accuracy_norm"] == bridged.metrics["accuracy_norm"]


# ---------------------------------------------------------------------------------------------
# Interface
# ---------------------------------------------------------------------------------------------
def test_encoder_tasks_are_refused_with_a_clear_error():
    with pytest.raises(UsageError, match=r"lm-eval scores causal LM tasks only; task 'toy_cls' is a classify"):
        lm_eval_bridge.evaluate(tasks.get("toy_cls"), None, None, [{}], batch_size=1, device=CPU)


def test_temporary_task_files_are_removed(llama, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    task = tasks.get("toy_mc")
    lm_eval_bridge.evaluate(task, *llama, _rows("toy_mc", 4), batch_size=4, device=CPU, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_evaluate_registered_path_on_a_local_task(llama, tmp_path):
    """The network path (simple_evaluate, metric renaming, RNG restored) on a task config of our
    own instead of lm-eval's bundled one, which would need the hub."""
    from lm_eval.tasks import TaskManager

    model, tok = llama
    task = tasks.get("toy_mc")
    rows = _rows("toy_mc", None)
    lm_eval_bridge._write_task(task, "local_toy_mc", [task.to_eval(r) for r in rows], tmp_path)
    manager = TaskManager(include_path=str(tmp_path / "tasks"), include_defaults=False)
    rng_before = (random.getstate(), torch.random.get_rng_state())
    result = lm_eval_bridge.evaluate_registered(
        "local_toy_mc", model, tok, batch_size=8, progress=False, task_manager=manager
    )
    assert (random.getstate(), torch.random.get_rng_state().tolist()) == (rng_before[0], rng_before[1].tolist())
    native = evaluate(task, model, tok, rows, batch_size=8, device=CPU, progress=False)
    assert result.n_items == native.n_items
    assert set(result.metrics) == {"accuracy", "accuracy_norm"}
    # lm-eval's mean x 100 against our 100 x hits / n: equal up to rounding of the last bit
    assert result.metrics["accuracy"] == pytest.approx(native.metrics["accuracy"], rel=1e-12)


def test_task_names_exist_in_lm_eval():
    """Every name we map to is declared (``task: <name>``) by one of lm-eval's bundled YAMLs."""
    import lm_eval.tasks

    declared: set[str] = set()
    for path in Path(lm_eval.tasks.__file__).parent.rglob("*.yaml"):
        declared.update(re.findall(r"^task:\s*(\S+)\s*$", path.read_text(encoding="utf-8", errors="ignore"), re.M))
    mapped = {*lm_eval_bridge.SAME_PROTOCOL.values(), *lm_eval_bridge.SAME_DATA.values()}
    assert mapped <= declared, sorted(mapped - declared)
    assert set(lm_eval_bridge.SAME_PROTOCOL) | set(lm_eval_bridge.SAME_DATA) <= set(tasks.names())
    assert lm_eval_bridge.lm_eval_task_name(tasks.get("piqa_mc")) == "piqa"
    assert lm_eval_bridge.lm_eval_task_name("siqa") is None  # generate variant: not comparable
    assert lm_eval_bridge.lm_eval_task_name("siqa", same_protocol=False) == "social_iqa"
    assert lm_eval_bridge.lm_eval_task_name("boolq_mc") is None  # lm-eval's prompt has no "Passage: "
    assert lm_eval_bridge.lm_eval_task_name("boolq_mc", same_protocol=False) == "boolq"
    assert lm_eval_bridge.lm_eval_task_name("glue_sst2", same_protocol=False) is None
    with pytest.raises(UsageError, match=r"task 'toy_mc' has no comparable lm-eval counterpart; those that do: piqa"):
        lm_eval_bridge.evaluate_registered(tasks.get("toy_mc"), None, None, batch_size=1)
