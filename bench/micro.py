"""``python -m bench micro``: one training step of each method on a random-init LLaMA, timed and measured.

Every configuration runs in a fresh subprocess (so peak RSS is its own): build the model, apply the
method, AdamW, ``--warmup`` untimed steps (the first one also counts the bytes saved for backward),
then the median of ``--steps`` timed steps. The frozen model (no weight gradients; the input
embeddings require grad so that backward still runs through every layer) is the floor: it is timed
first, last and between every few configurations, and each ratio divides by the mean of the two
frozen timings around it, so drift on a shared machine does not bias the ratios.

``--repeat N`` runs that whole plan N times, odd rounds in reverse order (so no configuration
always follows the same one), and prints each configuration's ratio as the median and range over
the N rounds: one run of a plan is not evidence on a shared machine (frozen alone varied by up
to 40% between processes here).

``--paired`` times each configuration against a frozen twin in its own subprocess, their steps
alternating (see :func:`bench.micro_step.run_paired`): the ratio is fastest step over fastest
step within those same minutes, not timings minutes apart in other processes, so it needs no
frozen rows; the pairs' median ratio is shown beside it. Use it (with ``--repeat`` and more
``--steps``) for ratios of a few percent. Peak RSS and the allocator peak are then left out (both
models share the process).

``--device cuda`` runs on the GPU (``--dtype auto``: bf16 there), times with wall time after a
``torch.cuda.synchronize()``, and adds ``peak alloc MB``: the allocator's peak during the timed steps
(``torch.cuda.max_memory_allocated``, reset after warm-up), the figure for the paper's "up to 60%
less memory than masked tuning".

Columns:
- ``cpu s`` / ``wall s``: median step time (zero_grad, forward, backward, optimizer step) in process
  CPU time and in wall time; ``× frozen`` uses ``--clock`` (CPU time by default: with one thread it
  equals wall time on an idle machine, and unlike wall time it does not count other processes' turns);
- ``saved MB``: bytes that autograd saves for backward in one step (``saved_tensors_hooks``), each
  storage once, parameters and buffers excluded (they exist anyway);
- ``state MB``: trainable parameters + their gradients + the optimizer's state tensors;
- ``peak RSS MB``: the subprocess's peak resident memory;
- ``trainable`` and ``fraction``: trainable entries as the method counts them
  (``methods._base.trainable_count``; masked sparse: the selected entries) and their share of
  the base model's parameters.

``official`` is the official NeuroAda code's way (:class:`bench.micro_step.DenseScatterLinear`).
``kept_inputs`` is frozen with each target linear's input kept until backward
(:class:`bench.micro_step.KeptInputLinear`): the same arithmetic as frozen, plus the memory that any
method with a gradient for those weights must keep (LoRA, NeuroAda, masked sparse, full
fine-tuning) unless it recomputes them, so its ratio is such a method's floor.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import torch

from bench.args import add_progress
from bench.micro_step import OWN_CONFIGS, run_one, run_paired

CONFIGS = ("frozen", "kept_inputs", "lora", "dora", "full_ft", "masked_sparse", "official", "shira", "neuroada")
K_CONFIGS = ("masked_sparse", "official", "shira", "neuroada")  # run once per --k
_RESULT = "MICRO_RESULT "
_ROOT = Path(__file__).resolve().parent.parent


def add_arguments(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("model (random-init LLaMA; defaults: the 110M config)")
    model.add_argument("--hidden", type=int, default=768, help="hidden size (default: 768)")
    model.add_argument("--layers", type=int, default=12, help="decoder layers (default: 12)")
    model.add_argument("--heads", type=int, default=12, help="attention heads, also key/value heads (default: 12)")
    model.add_argument("--intermediate", type=int, default=2048, help="MLP intermediate size (default: 2048)")
    model.add_argument("--vocab", type=int, default=32000, help="vocabulary size (default: 32000)")
    run = parser.add_argument_group("run")
    run.add_argument("--batch", type=int, default=8, help="sequences per step (default: 8)")
    run.add_argument("--seq", type=int, default=128, help="tokens per sequence (default: 128)")
    run.add_argument("--steps", type=int, default=5, help="timed steps per configuration; the median is shown")
    run.add_argument("--warmup", type=int, default=2, help="untimed steps before timing (default: 2, at least 1)")
    run.add_argument("--threads", type=int, default=1, help="torch threads per configuration (default: 1)")
    run.add_argument(
        "--configs",
        default="all",
        help=f"comma list among {', '.join(CONFIGS)}, or all (frozen always runs: it is the reference)",
    )
    run.add_argument(
        "--k", default="1,16", help="comma list of k for masked_sparse, official, neuroada (default: 1,16)"
    )
    run.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="which step time the ratios use: process CPU time (default; robust on a shared machine with "
        "1 thread) or wall time (use it with several threads)",
    )
    run.add_argument("--frozen-every", type=int, default=4, help="re-time frozen after this many configurations")
    run.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run the whole interleaved plan N times (odd rounds in reverse order) and print each ratio's "
        "median and range over the rounds (default: 1)",
    )
    run.add_argument(
        "--paired",
        action="store_true",
        help="time each configuration against a frozen twin in the same process, steps alternating; the "
        "ratio is fastest step over fastest step of --steps pairs (use it for differences of a few percent)",
    )
    run.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to run (default: cpu)")
    run.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="model dtype (default auto: bfloat16 on cuda, float32 on cpu)",
    )
    run.add_argument("--json", dest="json_path", help="also write the rows as JSON to this file")
    add_progress(parser)


def run_spec(spec: dict) -> dict:
    """One configuration's row, in this process (the child's work; tests call it directly)."""
    return (run_paired if spec.get("paired") else run_one)(spec)


def _child(argv: list[str]) -> int:
    print(_RESULT + json.dumps(run_spec(json.loads(argv[0]))), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------------
def _plan(args: argparse.Namespace) -> list[tuple[str, int | None]]:
    from bench.errors import UsageError

    picked = list(CONFIGS) if args.configs == "all" else [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in picked if c not in CONFIGS]
    if unknown:
        raise UsageError(f"--configs: unknown {', '.join(unknown)}; choose among {', '.join(CONFIGS)} or all")
    try:
        ks = [int(k) for k in args.k.split(",")]
    except ValueError:
        raise UsageError(f"--k={args.k!r} must be a comma list of integers such as 1,16") from None
    for flag in ("hidden", "layers", "heads", "intermediate", "vocab", "batch", "seq", "steps", "threads", "warmup"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag}={getattr(args, flag)} must be >= 1")
    if args.hidden % args.heads:
        raise UsageError(f"--hidden={args.hidden} must be a multiple of --heads={args.heads}")
    if any(k < 1 or k >= min(args.hidden, args.intermediate) for k in ks):
        raise UsageError(f"--k={args.k} must lie in [1, {min(args.hidden, args.intermediate) - 1}]")
    others = []
    for c in picked:
        if c == "frozen":
            continue
        others += [(c, k) for k in ks] if c in K_CONFIGS else [(c, None)]
    if args.paired:  # each configuration brings its own frozen twin
        return others
    plan: list[tuple[str, int | None]] = [("frozen", None)]
    for i in range(0, len(others), max(1, args.frozen_every)):
        plan += others[i : i + max(1, args.frozen_every)] + [("frozen", None)]
    return plan


def _label(row: dict) -> str:
    return row["config"] + (f" k={row['k']}" if row.get("k") is not None else "")


def format_table(rows: list[dict]) -> str:
    """A markdown table; ratios against the frozen timings around each row (``ratio`` key). On CUDA a
    ``peak alloc MB`` column (the allocator's peak during the timed steps) replaces peak RSS."""
    cuda = any(r.get("peak_alloc_mb") is not None for r in rows)
    peak = "peak alloc MB" if cuda else "peak RSS MB"
    lines = [
        f"| configuration | cpu s | wall s | × frozen | saved MB | state MB | {peak} | trainable | fraction |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {_label(r)} | {r['cpu_s']:.3f} | {r['wall_s']:.3f} | {r['ratio']:.3f} | "
            f"{r['saved_bytes'] / 1e6:,.0f} | {r['state_bytes'] / 1e6:,.2f} | "
            f"{_peak(r, cuda)} | {r['trainable']:,} | {r['fraction']:.4%} |"
        )
    return "\n".join(lines)


def _peak(row: dict, cuda: bool) -> str:
    peak = row.get("peak_alloc_mb") if cuda else row.get("peak_rss_mb")
    return "–" if peak is None else f"{peak:,.0f}"


def _with_ratios(rows: list[dict], clock: str) -> list[dict]:
    key = f"{clock}_s"
    frozen_at = [i for i, r in enumerate(rows) if r["config"] == "frozen"]
    for i, r in enumerate(rows):
        before = [rows[j][key] for j in frozen_at if j <= i][-1:]
        after = [rows[j][key] for j in frozen_at if j >= i][:1]
        ref = (before + after) or [float("nan")]
        r["ratio"] = r[key] / statistics.fmean(ref)
    return rows


def _run_config(spec: dict, env: dict) -> tuple[dict | None, str]:
    """One configuration in a fresh subprocess: its row, or None and the tail of its output."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.micro", "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        cwd=_ROOT,
    )
    found = [line for line in proc.stdout.splitlines() if line.startswith(_RESULT)]
    if proc.returncode != 0 or not found:
        tail = "\n    ".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        return None, f"exit {proc.returncode}; no row:\n    {tail}"
    return json.loads(found[-1][len(_RESULT) :]), ""


def summarize(rows: list[dict]) -> list[dict]:
    """One row per configuration over the rounds: the median ratio, its range and the median times;
    memory and counts from the first round (they do not vary)."""
    by_label: dict[str, list[dict]] = {}
    for r in rows:
        by_label.setdefault(_label(r), []).append(r)
    out = []
    for group in by_label.values():
        ratios = [r["ratio"] for r in group]
        out.append(
            dict(
                group[0],
                ratio=statistics.median(ratios),
                ratio_min=min(ratios),
                ratio_max=max(ratios),
                rounds=len({r["round"] for r in group}),
                cpu_s=statistics.median(r["cpu_s"] for r in group),
                wall_s=statistics.median(r["wall_s"] for r in group),
            )
        )
        if all("pairs_median" in r for r in group):
            out[-1]["pairs_median"] = statistics.median(r["pairs_median"] for r in group)
    return out


def format_summary(rows: list[dict]) -> str:
    """Markdown: each configuration's ratio over the rounds (median [min, max]); paired rows add
    the median over rounds of their pairs' median ratio."""
    cuda = any(r.get("peak_alloc_mb") is not None for r in rows)
    paired = all("pairs_median" in r for r in rows)
    lines = [
        "| configuration | × frozen median | [min, max] | rounds | "
        + ("pairs median | " if paired else "")
        + f"cpu s | wall s | {'peak alloc MB' if cuda else 'peak RSS MB'} | trainable |",
        "| --- | ---: | --- | ---: | " + ("---: | " if paired else "") + "---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        alloc = _peak(r, cuda)
        pairs = f"{r['pairs_median']:.3f} | " if paired else ""
        lines.append(
            f"| {_label(r)} | {r['ratio']:.3f} | [{r['ratio_min']:.3f}, {r['ratio_max']:.3f}] | {r['rounds']} | "
            f"{pairs}{r['cpu_s']:.3f} | {r['wall_s']:.3f} | {alloc} | {r['trainable']:,} |"
        )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    import methods
    from bench.errors import UsageError

    plan = _plan(args)
    if args.repeat < 1:
        raise UsageError(f"--repeat={args.repeat} must be >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no CUDA device here; run on a GPU machine or use --device cpu")
    dtype = args.dtype if args.dtype != "auto" else ("bfloat16" if args.device == "cuda" else "float32")
    clock = "wall" if args.device == "cuda" else args.clock  # CPU time does not see GPU work
    keys = ("hidden", "layers", "heads", "intermediate", "vocab", "batch", "seq", "steps", "warmup", "threads")
    spec_base = {key: getattr(args, key) for key in keys} | {
        "device": args.device,
        "dtype": dtype,
        "paired": args.paired,
        "clock": clock,
    }
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    missing = sorted({n for n, _ in plan if n not in OWN_CONFIGS and n not in methods.names()})
    for name in missing:
        print(f"note: skipping {name}: not registered (methods: {', '.join(methods.names())})")
    rounds = [plan if r % 2 == 0 else plan[::-1] for r in range(args.repeat)]
    rows: list[dict] = []
    bar = tqdm(total=sum(map(len, rounds)), desc="micro", unit="config", disable=args.no_progress)
    for r, order in enumerate(rounds):
        round_rows = []
        for name, k in order:
            label = name + (f" k={k}" if k is not None else "")
            bar.set_postfix_str(f"round {r + 1}: {label}")
            bar.update()
            if name in missing:
                continue
            row, why = _run_config(dict(spec_base, config=name, k=k), env)
            if row is None:
                tqdm.write(f"note: {label} failed ({why})")
                continue
            round_rows.append(dict(row, round=r))
        rows += round_rows if args.paired else _with_ratios(round_rows, clock)
    bar.close()
    _print_results(args, rows, clock, dtype)
    return 0


def _print_results(args: argparse.Namespace, rows: list[dict], clock: str, dtype: str) -> None:
    if not rows:
        print("\nno rows")
        return
    print(
        f"\nLLaMA hidden {args.hidden}, {args.layers} layers, {args.heads} heads, intermediate {args.intermediate}, "
        f"vocab {args.vocab} ({rows[0]['base_params'] / 1e6:.0f}M params); batch {args.batch}x{args.seq}, {dtype} "
        f"on {args.device}, {args.threads} thread(s), AdamW; median of {args.steps} steps after {args.warmup} warm-up."
    )
    if args.paired:
        frozen = [r[f"frozen_{clock}_s"] for r in rows]
        print(
            f"paired: each configuration beside a frozen twin in its process, {args.steps} pairs of alternating "
            f"steps; × frozen = its fastest step / the twin's fastest step ({clock} time; interference only "
            f"slows a step); frozen medians {min(frozen):.3f}-{max(frozen):.3f} s; memory peaks left out "
            "(two models per process)."
        )
    else:
        frozen = [r[f"{clock}_s"] for r in rows if r["config"] == "frozen"]
        print(
            f"frozen timed {len(frozen)}x ({clock}): {', '.join(f'{t:.3f}' for t in frozen)} s; "
            f"× frozen divides each row's {clock} time by the mean of the frozen timings just around it."
        )
    print(format_table([r for r in rows if r["round"] == 0]))
    if args.repeat > 1:
        print(f"\nover {args.repeat} interleaved rounds (odd rounds in reverse order):")
        print(format_summary(summarize(rows)))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(rows, indent=2, sort_keys=True))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        sys.exit(_child(sys.argv[2:]))
    parser = argparse.ArgumentParser(prog="python -m bench.micro", description=__doc__.splitlines()[0])
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
