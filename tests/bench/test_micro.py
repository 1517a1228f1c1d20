"""The micro-benchmark runs end to end on a tiny config and reports exact parameter counts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# hidden 32, 2 heads (= 2 KV heads), intermediate 64, 1 layer: q, k, v, o, down give 32 outputs
# each and gate, up 64 each, so NeuroAda trains k * 288 values.
SUM_D_OUT = 5 * 32 + 2 * 64


def test_micro_reports_each_configuration(tmp_path):
    out = tmp_path / "micro.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "micro", "--hidden", "32", "--layers", "1", "--heads", "2",
         "--intermediate", "64", "--vocab", "128", "--batch", "2", "--seq", "8", "--steps", "1",
         "--warmup", "1", "--k", "1,2", "--configs", "neuroada,official,lora", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())
    got = {(r["config"], r["k"]): r for r in rows}
    expected = {("neuroada", 1), ("neuroada", 2), ("official", 1), ("official", 2), ("lora", None), ("frozen", None)}
    assert expected <= set(got)
    for k in (1, 2):
        assert got[("neuroada", k)]["trainable"] == got[("official", k)]["trainable"] == k * SUM_D_OUT
        # ours keeps no dense copy of W + S for backward: never more saved bytes than the official code
        assert got[("neuroada", k)]["saved_bytes"] <= got[("official", k)]["saved_bytes"]
    assert got[("frozen", None)]["trainable"] == 0
    assert "neuroada" in proc.stdout and "× frozen" in proc.stdout


def test_micro_runs_shira_at_neuroadas_budget(tmp_path):
    out = tmp_path / "micro.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "micro", "--hidden", "32", "--layers", "1", "--heads", "2",
         "--intermediate", "64", "--vocab", "128", "--batch", "2", "--seq", "8", "--steps", "1",
         "--warmup", "1", "--k", "2,4", "--configs", "shira", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = {(r["config"], r["k"]): r for r in json.loads(out.read_text())}
    sides = 4 * (32 + 32) + 3 * (32 + 64)  # SHiRA: r (d_in + d_out) per target: q, k, v, o; gate, up, down
    for k, r in ((2, 1), (4, 2)):  # r = round(k * 288 / 544)
        assert got[("shira", k)]["trainable"] == r * sides
