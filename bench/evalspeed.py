"""``python -m bench evalspeed``: the native evaluator against lm-eval on the same items and model.

One process, one in-memory model, one set of requests. For each thread count and each case, the
two evaluators run ``--repeats`` times **alternating** (native first on even repeats, lm-eval
first on odd ones), so that drift on a shared machine hits both alike; each repeat's ratio is
native rate / lm-eval rate over that pair of runs, and the table shows the median and range.

Cases:
- ``loglik``: the multiple-choice task's requests (every item x choice), native
  :func:`bench.loglik.shared` against lm-eval's ``HFLM.loglikelihood``; requests/s, the largest
  log-likelihood difference, and accuracy / acc_norm from each side's log-likelihoods.
- ``generate``: each generative task's prompts with its ``max_new_tokens``, native
  :func:`bench.decode.greedy` against lm-eval's ``HFLM.generate_until`` (greedy, stop at EOS);
  items/s, how many outputs are identical, and the task's score from each side's outputs.

It prints figures and asserts nothing; the README quotes a run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from bench import decode, lm_eval_bridge, loglik
from bench.args import add_progress, int_list, positive_int
from bench.evaluate import mc_choices, mc_metrics, mc_requests


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="smollm2-135m", help="model alias or path (default: smollm2-135m)")
    parser.add_argument("--mc-task", default="arc_easy_mc", help="log-likelihood task (default: arc_easy_mc)")
    parser.add_argument(
        "--mc-limit", type=positive_int("--mc-limit"), default=300, help="its first N items (default: 300)"
    )
    parser.add_argument(
        "--gen-tasks", default="arc_easy,gsm8k", help="generative tasks, comma list (default: arc_easy,gsm8k)"
    )
    parser.add_argument(
        "--gen-limit", type=positive_int("--gen-limit"), default=24, help="their first N items (default: 24)"
    )
    parser.add_argument(
        "--batch-size", type=positive_int("--batch-size"), default=8, help="both evaluators' batch size (default: 8)"
    )
    parser.add_argument("--threads", default="1,2", help="torch thread counts, comma list (default: 1,2)")
    parser.add_argument(
        "--repeats", type=positive_int("--repeats"), default=3, help="alternating repeats per case (default: 3)"
    )
    parser.add_argument("--cases", choices=("all", "loglik", "generate"), default="all")
    parser.add_argument("--data-dir", default=None, help="task data (default: $BENCH_DATA_DIR)")
    parser.add_argument("--json", dest="json_path", help="also write the rows as JSON to this file")
    add_progress(parser)


def main(args: argparse.Namespace) -> int:
    import os

    import tasks
    from bench import models
    from bench.errors import UsageError

    data_dir = args.data_dir or os.environ.get("BENCH_DATA_DIR")
    threads = int_list(args.threads, "--threads")
    if 0 in threads:
        raise UsageError("--threads 0: give thread counts of at least 1, e.g. --threads 1,2")
    mc = tasks.get(args.mc_task)
    gens = [tasks.get(n) for n in args.gen_tasks.split(",") if n]
    if mc.kind != "multiple_choice":
        raise UsageError(f"--mc-task {mc.name} is a '{mc.kind}' task; give a multiple_choice one (e.g. arc_easy_mc)")
    for t in gens:
        if t.kind != "generate":
            raise UsageError(f"--gen-tasks: {t.name} is a '{t.kind}' task; give generative ones (e.g. arc_easy,gsm8k)")
    model, tok = models.load(args.model, "causal_lm")
    model.eval()
    lm = lm_eval_bridge.hflm(model, tok, batch_size=args.batch_size)
    rows: list[dict[str, Any]] = []
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        if args.cases in ("all", "loglik"):
            items = [mc.to_eval(r) for r in mc.load("eval", data_dir)[: args.mc_limit]]
            rows.append(loglik_case(model, tok, lm, mc, items, n_threads, args))
            _print_row(rows[-1])
        for t in gens if args.cases in ("all", "generate") else []:
            items = [t.to_eval(r) for r in t.load("eval", data_dir)[: args.gen_limit]]
            rows.append(generate_case(model, tok, lm, t, items, n_threads, args))
            _print_row(rows[-1])
    print(f"\n{args.model}, batch {args.batch_size}, {args.repeats} alternating repeats; median [min, max]")
    print(table(rows))
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=1)
    return 0


def alternate(native: Callable[[], Any], reference: Callable[[], Any], repeats: int) -> dict[str, Any]:
    """Run both ``repeats`` times, alternating which goes first; seconds per run and last outputs."""
    seconds: dict[str, list[float]] = {"native": [], "lm_eval": []}
    outputs: dict[str, Any] = {}
    for r in range(repeats):
        order = [("native", native), ("lm_eval", reference)]
        for name, fn in order if r % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            outputs[name] = fn()
            seconds[name].append(time.perf_counter() - start)
    return {"seconds": seconds, "outputs": outputs}


def _rates(n: int, seconds: dict[str, list[float]]) -> dict[str, Any]:
    native = [n / s for s in seconds["native"]]
    ref = [n / s for s in seconds["lm_eval"]]
    ratios = [a / b for a, b in zip(native, ref, strict=True)]  # per repeat: the two runs side by side
    return {"native": _summary(native), "lm_eval": _summary(ref), "ratio": _summary(ratios)}


def _summary(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def loglik_case(model, tok, lm, task, items, threads: int, args) -> dict[str, Any]:
    requests, spans = mc_requests(items)
    device = next(model.parameters()).device
    run = alternate(
        lambda: loglik.shared(model, tok, requests, batch_size=args.batch_size, device=device, progress=False),
        lambda: lm_eval_bridge.loglikelihood(lm, requests),
        args.repeats,
    )
    native, ref = run["outputs"]["native"], run["outputs"]["lm_eval"]
    scores = {name: _mc_scores(task, items, spans, lls) for name, lls in (("native", native), ("lm_eval", ref))}
    return {
        "case": f"{task.name} loglik",
        "threads": threads,
        "n": len(requests),
        "unit": "req/s",
        **_rates(len(requests), run["seconds"]),
        "max_abs_diff": max(abs(a - b) for a, b in zip(native, ref, strict=True)),
        "scores": scores,
        "identical": scores["native"] == scores["lm_eval"],
    }


def _mc_scores(task, items, spans, lls) -> dict[str, float]:
    """The task's metric, and its acc_norm form, from one side's log-likelihoods (as ``bench.evaluate``)."""
    predictions, predictions_norm = mc_choices(items, spans, lls)
    return mc_metrics(task, predictions, predictions_norm, [it["gold"] for it in items])


def generate_case(model, tok, lm, task, items, threads: int, args) -> dict[str, Any]:
    prompts = [it["prompt"] for it in items]
    device = next(model.parameters()).device
    n_new = task.max_new_tokens
    run = alternate(
        lambda: decode.greedy(
            model, tok, prompts, max_new_tokens=n_new, batch_size=args.batch_size, device=device, progress=False
        ),
        lambda: lm_eval_bridge.generate_until(lm, prompts, n_new),
        args.repeats,
    )
    native, ref = run["outputs"]["native"], run["outputs"]["lm_eval"]
    references = [it["reference"] for it in items]
    scores = {
        name: task.score([task.extract(o) for o in outs], references)
        for name, outs in (("native", native), ("lm_eval", ref))
    }
    same = sum(a == b for a, b in zip(native, ref, strict=True))
    new_tokens = [len(tok(o, add_special_tokens=False)["input_ids"]) for o in native]
    return {
        "case": f"{task.name} generate ({n_new} new)",
        "threads": threads,
        "n": len(prompts),
        "unit": "items/s",
        **_rates(len(prompts), run["seconds"]),
        "identical_outputs": f"{same}/{len(prompts)}",
        "new_tokens": _summary(new_tokens),  # per output (text re-encoded; EOS not counted)
        "scores": scores,
        "identical": same == len(prompts),
    }


def _fmt(s: dict[str, float], spec: str = ".1f") -> str:
    return f"{s['median']:{spec}} [{s['min']:{spec}}, {s['max']:{spec}}]"


def _scores_text(row: dict[str, Any]) -> str:
    native, ref = row["scores"]["native"], row["scores"]["lm_eval"]
    parts = [f"{k} {native[k]:.1f}/{ref[k]:.1f}" for k in native]
    if "max_abs_diff" in row:
        parts.append(f"max Δll {row['max_abs_diff']:.1e}")
    else:
        parts.append(f"same text {row['identical_outputs']}")
        parts.append(f"new tokens {_fmt(row['new_tokens'], '.0f')}")
    return ", ".join(parts)


def table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown: one line per case and thread count."""
    lines = [
        "| case | threads | n | native | lm-eval | × lm-eval | scores native/lm-eval |",
        "|---|---:|---:|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['threads']} | {r['n']} | {_fmt(r['native'], '.3g')} {r['unit']} | "
            f"{_fmt(r['lm_eval'], '.3g')} {r['unit']} | {_fmt(r['ratio'], '.2f')} | {_scores_text(r)} |"
        )
    return "\n".join(lines)


def _print_row(row: dict[str, Any]) -> None:
    print(
        f"{row['case']}, {row['threads']} thread(s): native {_fmt(row['native'], '.3g')} {row['unit']}, "
        f"lm-eval {_fmt(row['lm_eval'], '.3g')}, ratio {_fmt(row['ratio'], '.2f')}; {_scores_text(row)}",
        flush=True,
    )
