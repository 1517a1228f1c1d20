"""Regenerate ``tests/golden/records/`` from a real toy run (run by hand, not by pytest).

The report tests (``tests/bench/report``) and the golden tables beside this file
(``results.md``, ``results.tex``, ``cost.md``) are built from these records. This script
deletes ``records/*.json`` and writes them again with ``python -m bench run`` on the CPU, one
thread, with the tiny models built in code (``tiny-llama`` for the causal tasks, ``tiny-bert``
for GLUE) and a small budget that is *not* a smoke budget: the demo preset (50 eval items) with
4 steps of 4 examples, max length 96. About 10 minutes on 2 cores.

What the records hold (63 files):

- full_ft, lora, neuroada and neuroada@k=4 (``--set neuroada.k=4``) on boolq, piqa, siqa
  (commonsense: one job trains on the shared mixture), gsm8k, addsub, svamp (arithmetic: one job
  trains on math_10k, so addsub carries the contamination mark †), glue_cola and glue_sst2;
  seeds 0 and 1; except that lora has no siqa result (its commonsense job trains and evaluates
  boolq and piqa only, so the commonsense average leaves siqa out);
- a budget difference: neuroada@k=4 gsm8k seed 1 rerun alone with ``--max-steps 8`` (the
  report warns "runs on gsm8k differ in max_steps");
- a smoke run, kept out of tables: full_ft boolq seed 7 with ``--limit``;
- a failed run: lora gsm8k seed 1 rerun with ``--job-timeout 1`` (recorded ``failed``, "timed
  out after 1s ...");
- a diverged run: neuroada@k=4 svamp seed 1 rerun with ``--max-length 1``: a one-token window
  has no next token to predict, so the loss is NaN at step 1 for real. (A ``--set`` of, say,
  ``neuroada.lr`` would also diverge, but it would change the label to ``neuroada@k=4,lr=...``
  and the record would leave its row.)

Records store absolute paths, timings and the git state of the tree they were made in.

Usage, from anywhere (task data: ``$BENCH_DATA_DIR``, else ``../shared/data`` beside the repo)::

    .venv/bin/python tests/golden/make_records.py
    BENCH_REGEN_GOLDEN=1 .venv/bin/python -m pytest -q tests/bench/report
    .venv/bin/python -m pytest -q tests/bench/report

then review the diff of the golden tables and commit records and tables together.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECORDS = ROOT / "tests" / "golden" / "records"
OUTPUT = RECORDS.relative_to(ROOT).as_posix()

CAUSAL = "boolq,piqa,siqa,gsm8k,addsub,svamp"
GLUE = "glue_cola,glue_sst2"
K4 = "--methods neuroada --set neuroada.k=4"
LLAMA = "--model tiny-llama"
BUDGET = "--preset demo --max-steps 4 --batch-size 4 --micro-batch-size 4 --max-length 96 --eval-batch-size 25"

# (what it makes, its arguments, expected exit code). Seeds 0,1 unless given; the budget above
# unless overridden (a later flag wins). Later runs replace records of earlier ones (--force), so
# the order matters.
RUNS: list[tuple[str, str, int]] = [
    ("full_ft, neuroada: causal tasks", f"--methods full_ft,neuroada --tasks {CAUSAL} {LLAMA}", 0),
    ("lora: causal tasks but siqa", f"--methods lora --tasks boolq,piqa,gsm8k,addsub,svamp {LLAMA}", 0),
    ("neuroada@k=4: causal tasks", f"{K4} --tasks {CAUSAL} {LLAMA}", 0),
    ("full_ft, lora, neuroada: GLUE", f"--methods full_ft,lora,neuroada --tasks {GLUE} --model tiny-bert", 0),
    ("neuroada@k=4: GLUE", f"{K4} --tasks {GLUE} --model tiny-bert", 0),
    ("budget difference", f"{K4} --tasks gsm8k --seeds 1 {LLAMA} --max-steps 8 --force", 0),
    ("smoke run", f"--methods full_ft --tasks boolq --seeds 7 {LLAMA} --limit 8", 0),
    ("failed run", f"--methods lora --tasks gsm8k --seeds 1 {LLAMA} --job-timeout 1 --force", 1),
    ("diverged run", f"{K4} --tasks svamp --seeds 1 {LLAMA} --max-length 1 --force", 1),
]

# What the report tests rely on: file -> (status, smoke).
EXPECTED = {
    "full_ft--boolq--seed7.json": ("ok", True),
    "lora--gsm8k--seed1.json": ("failed", False),
    "neuroada@k=4--svamp--seed1.json": ("diverged", False),
    "neuroada@k=4--gsm8k--seed1.json": ("ok", False),
}
COUNT = 63


def data_dir() -> Path:
    path = Path(os.environ.get("BENCH_DATA_DIR") or ROOT.parent / "shared" / "data").resolve()
    if not path.is_dir():
        sys.exit(f"error: no task data at {path}; set BENCH_DATA_DIR to a folder laid out like shared/data")
    return path


def clean(final: bool) -> None:
    """Remove the job logs and locks ``bench run`` leaves beside the records (and, before the
    runs, the records themselves)."""
    for name in ("logs", ".locks", ".submitit"):
        shutil.rmtree(RECORDS / name, ignore_errors=True)
    if not final:
        for path in RECORDS.glob("*.json"):
            path.unlink()


def check() -> None:
    files = sorted(RECORDS.glob("*.json"))
    problems = [f"{len(files)} records, expected {COUNT}"] if len(files) != COUNT else []
    for path in files:
        record = json.loads(path.read_text(encoding="utf-8"))
        status, smoke = record["result"]["status"], record["run"]["smoke"]
        want = EXPECTED.get(path.name, ("ok", False))
        if (status, smoke) != want:
            problems.append(f"{path.name}: status {status}, smoke {smoke}; expected {want}")
    if problems:
        sys.exit("error: " + "; ".join(problems))


def main() -> None:
    where = f"--output-dir {OUTPUT} --device cpu --threads 1 --no-progress".split() + ["--data-dir", str(data_dir())]
    # This checkout's code (also for the job processes), whatever the venv has installed.
    path = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    RECORDS.mkdir(parents=True, exist_ok=True)
    clean(final=False)
    start = time.monotonic()
    for what, args, code in RUNS:
        seeds = "" if "--seeds" in args else "--seeds 0,1"
        argv = f"{seeds} {BUDGET} {args}".split()  # the run's own flags last: they win
        cmd = [sys.executable, "-m", "bench", "run", *argv, *where]
        print(f"== {what}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.monotonic()
        rc = subprocess.run(cmd, cwd=ROOT, env=env).returncode
        print(f"== {what}: exit {rc} in {time.monotonic() - t0:.0f}s", flush=True)
        if rc != code:
            sys.exit(f"error: '{what}' exited {rc}, expected {code}")
    clean(final=True)
    check()
    print(f"wrote {COUNT} records to {RECORDS} in {time.monotonic() - start:.0f}s")


if __name__ == "__main__":
    main()
