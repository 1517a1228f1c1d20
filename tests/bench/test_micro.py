"""The micro-benchmark runs end to end on a tiny config and reports exact parameter counts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
# hidden 32, 2 heads (= 2 KV heads), intermediate 64, 1 layer: q, k, v, o, down give 32 outputs
# each and gate, up 64 each, so NeuroAda trains k * 288 values.
SUM_D_OUT = 5 * 32 + 2 * 64
TINY_ARGS = ["--hidden", "32", "--layers", "1", "--heads", "2", "--intermediate", "64", "--vocab", "128",
             "--batch", "2", "--seq", "8", "--warmup", "1"]  # fmt: skip


@pytest.fixture
def micro_in_process(monkeypatch, capsys):
    """``bench micro`` through the CLI in this process: each configuration's child work runs here
    instead of in a fresh interpreter (test_micro_reports_each_configuration covers the subprocess);
    returns a function of the arguments that gives the exit code and stdout."""
    from bench import cli, micro

    monkeypatch.setattr(micro, "_run_config", lambda spec, env: (micro.run_spec(spec), ""))

    def run(*argv: str) -> tuple[int, str]:
        capsys.readouterr()
        code = cli.main(["micro", *TINY_ARGS, "--no-progress", *argv])  # --threads 1, as conftest sets
        return code, capsys.readouterr().out

    return run


def test_micro_reports_each_configuration(tmp_path):
    out = tmp_path / "micro.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "micro", *TINY_ARGS, "--steps", "1", "--k", "1,2",
         "--configs", "neuroada,official,lora", "--json", str(out)],
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


def test_repeat_runs_the_plan_in_rounds_and_summarizes(micro_in_process, tmp_path):
    out = tmp_path / "micro.json"
    code, stdout = micro_in_process(
        "--steps", "1", "--k", "1", "--configs", "neuroada,lora", "--repeat", "2", "--json", str(out)
    )  # fmt: skip
    assert code == 0
    rows = json.loads(out.read_text())
    # each round: frozen, neuroada k=1, lora, frozen; the second in reverse order
    assert [(r["round"], r["config"]) for r in rows] == [
        (0, "frozen"), (0, "neuroada"), (0, "lora"), (0, "frozen"),
        (1, "frozen"), (1, "lora"), (1, "neuroada"), (1, "frozen"),
    ]  # fmt: skip
    assert "over 2 interleaved rounds" in stdout and "| neuroada k=1 |" in stdout


def test_summarize_takes_the_median_and_range_of_each_ratio():
    from bench.micro import summarize

    def row(config, k, rnd, ratio):
        return {"config": config, "k": k, "round": rnd, "ratio": ratio, "cpu_s": ratio, "wall_s": 2 * ratio}

    rows = [row("neuroada", 1, r, v) for r, v in enumerate([1.10, 1.00, 1.02])] + [row("lora", None, 0, 1.2)]
    got = {(r["config"], r["k"]): r for r in summarize(rows)}
    assert got[("neuroada", 1)]["ratio"] == 1.02
    assert (got[("neuroada", 1)]["ratio_min"], got[("neuroada", 1)]["ratio_max"]) == (1.00, 1.10)
    assert got[("neuroada", 1)]["rounds"] == 3 and got[("lora", None)]["rounds"] == 1
    assert got[("neuroada", 1)]["wall_s"] == 2.04


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_usage_error(capsys):
    from bench import cli

    assert cli.main(["micro", "--device", "cuda", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--device cuda" in err and len(err.strip().splitlines()) == 1


def test_the_table_shows_the_allocator_peak_on_cuda():
    from bench.micro import format_table

    row = {"config": "neuroada", "k": 1, "cpu_s": 1.0, "wall_s": 2.0, "ratio": 1.02, "saved_bytes": 3e6,
           "state_bytes": 1e6, "peak_rss_mb": 900.0, "trainable": 5, "fraction": 0.1}  # fmt: skip
    assert (
        format_table([row]).splitlines()[2]
        == "| neuroada k=1 | 1.000 | 2.000 | 1.020 | 3 | 1.00 | 900 | 5 | 10.0000% |"
    )
    cuda = format_table([dict(row, peak_alloc_mb=1234.4)]).splitlines()
    assert "peak alloc MB" in cuda[0] and cuda[2].endswith("| 1,234 | 5 | 10.0000% |")


def test_micro_runs_shira_at_neuroadas_budget(micro_in_process, tmp_path):
    out = tmp_path / "micro.json"
    code, _ = micro_in_process("--steps", "1", "--k", "2,4", "--configs", "shira", "--json", str(out))
    assert code == 0
    got = {(r["config"], r["k"]): r for r in json.loads(out.read_text())}
    sides = 4 * (32 + 32) + 3 * (32 + 64)  # SHiRA: r (d_in + d_out) per target: q, k, v, o; gate, up, down
    for k, r in ((2, 1), (4, 2)):  # r = round(k * 288 / 544)
        assert got[("shira", k)]["trainable"] == r * sides


def test_kept_inputs_is_run_as_a_reference_not_skipped_as_unregistered(micro_in_process, tmp_path):
    out = tmp_path / "micro.json"
    code, stdout = micro_in_process("--steps", "1", "--configs", "kept_inputs", "--json", str(out))
    assert code == 0 and "skipping" not in stdout
    rows = json.loads(out.read_text())
    assert [r["config"] for r in rows] == ["frozen", "kept_inputs", "frozen"] and rows[1]["trainable"] == 0
    assert "| kept_inputs |" in stdout


def test_paired_runs_each_configuration_beside_its_own_frozen_twin(micro_in_process, tmp_path):
    out = tmp_path / "micro.json"
    code, stdout = micro_in_process(
        "--steps", "2", "--k", "1", "--configs", "neuroada,lora", "--paired", "--repeat", "2", "--json", str(out)
    )  # fmt: skip
    assert code == 0
    rows = json.loads(out.read_text())
    # no frozen rows: each ratio comes from its own process's pairs
    assert [(r["round"], r["config"]) for r in rows] == [(0, "neuroada"), (0, "lora"), (1, "lora"), (1, "neuroada")]
    for r in rows:
        assert r["paired"] and len(r["pair_ratios"]) == len(r["frozen_cpu_times"]) == 2
        assert r["ratio"] == min(r["cpu_times"]) / min(r["frozen_cpu_times"])
    assert "paired: each configuration beside a frozen twin" in stdout and "| neuroada k=1 |" in stdout
    assert "pairs median" in stdout
