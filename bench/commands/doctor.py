"""``python -m bench doctor``: is this machine ready for a run? One line per check (ok, missing or
failed, and the fix), then a verdict; exit 0 when what was asked for can run, else 1.

What must pass depends on the flags (:func:`required`): torch, the demo models and the task data
(``--data-dir``, the hub, or the datasets cache); with ``--device cuda`` also CUDA, a GPU and NVML;
with ``--executor ray`` or ``slurm`` that engine. ``--gpu`` alone asks whether the CUDA paths work:
torch, CUDA, a GPU, NVML and every GPU check that ran (they need neither the demo models nor data).
Everything else (a GPU under ``--device auto``, bf16, the C kernels, lm-eval, Ray, submitit) is
reported but optional. ``--gpu`` runs the CUDA checks of ``bench.gpu_checks`` (a few minutes on
one GPU).
"""

from __future__ import annotations

import argparse
import os

EPILOG = """examples:
  python -m bench doctor                         # ready for a CPU run? (missing GPU parts are listed)
  python -m bench doctor --data-dir ../shared/data --executor ray
  python -m bench doctor --gpu                   # CUDA required, and the GPU checks (a few minutes)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument(
        "--device",
        default="auto",
        help="the --device of the runs you plan: auto (default; CUDA optional), cpu, or cuda (CUDA required)",
    )
    parser.add_argument(
        "--gpu",
        action="store_true",
        help="CUDA required, then run the GPU checks: NeuroAda fp32/bf16 against the dense layer, real bench runs "
        "with allocator and NVML peaks, lm-eval on the GPU, DDP with two GPUs (a few minutes)",
    )
    parser.add_argument(
        "--executor",
        choices=["local", "ray", "slurm"],
        default="local",
        help="the executor you plan to use; ray or slurm make that engine required (default: local)",
    )
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("BENCH_DATA_DIR"),
        help="the task data you plan to use (default: $BENCH_DATA_DIR; unset: the hub or the datasets cache)",
    )


def required(args: argparse.Namespace) -> set[str]:
    """The checks that must pass for what the flags ask. ``--gpu`` alone asks whether the CUDA
    paths work (tiny in-code models and toy tasks: no demo model or data needed)."""
    need = {"torch"}
    if not args.gpu or args.device.startswith("cuda"):  # a run is planned: it needs models and data
        need |= {"models", "data"}
    if args.gpu or args.device.startswith("cuda"):
        need |= {"cuda", "gpu", "nvml"}
    if args.executor == "ray":
        need.add("ray")
    if args.executor == "slurm":
        need.add("submitit")
    return need


def main(args: argparse.Namespace) -> int:
    from bench import checks
    from bench.errors import UsageError

    if args.device not in ("auto", "cpu") and not args.device.startswith("cuda"):
        raise UsageError(f"--device '{args.device}' is not a device name; use auto, cpu, cuda or cuda:N")
    if args.gpu and args.device == "cpu":
        raise UsageError("--gpu checks CUDA; drop --device cpu")
    need = required(args)
    print("peft-bench doctor: what a run needs on this machine (* = required for what you asked)")
    found = report(checks.environment_checks(args.data_dir), need)
    if args.gpu and all(c.ok for c in found if c.name in ("cuda", "gpu")):
        from bench import gpu_checks

        print("GPU checks (--gpu):", flush=True)
        device = args.device if args.device.startswith("cuda") else "cuda"
        gpu = gpu_checks.gpu_checks(device)
        need |= {c.name for c in gpu if c.status != "missing"}  # a check that ran must pass
        found += report(gpu, need)
    elif args.gpu:
        print("GPU checks (--gpu): not run, since CUDA is missing (see above)")
    blocking = [c.name for c in found if c.name in need and not c.ok]
    optional = [c.name for c in found if c.name not in need and not c.ok]
    asked = "GPU checks" if args.gpu else f"{'CUDA' if args.device.startswith('cuda') else 'CPU or GPU'} runs"
    if args.executor != "local":
        asked += f" with --executor {args.executor}"
    if blocking:
        print(f"not ready for {asked}: {', '.join(blocking)} (see the fixes above)")
        return 1
    note = f" (optional, not there: {', '.join(optional)})" if optional else ""
    print(f"ready for {asked}{note}")
    return 0


def report(found: list, need: set[str]) -> list:
    """Print each check's line, ``*`` marking the required ones; return the checks."""
    for check in found:
        print(("* " if check.name in need else "  ") + check.line(), flush=True)
    return found
