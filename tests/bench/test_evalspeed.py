"""``bench evalspeed`` on the tiny model: both evaluators run alternately on the same requests and
agree; the figures are printed, never asserted."""

from __future__ import annotations

import json

from bench import evalspeed
from bench.cli import main


def test_alternate_switches_the_order_every_repeat():
    calls = []
    run = evalspeed.alternate(lambda: calls.append("a") or 1, lambda: calls.append("b") or 2, repeats=3)
    assert calls == ["a", "b", "b", "a", "a", "b"]
    assert run["outputs"] == {"native": 1, "lm_eval": 2}
    assert len(run["seconds"]["native"]) == len(run["seconds"]["lm_eval"]) == 3


def test_evalspeed_on_the_tiny_model(tmp_path, capsys):
    out = tmp_path / "speed.json"
    code = main(
        ["evalspeed", "--model", "tiny-llama", "--mc-task", "toy_mc", "--gen-tasks", "toy_sum", "--threads", "1",
         "--repeats", "2", "--mc-limit", "12", "--gen-limit", "5", "--no-progress", "--json", str(out)]
    )  # fmt: skip
    assert code == 0
    rows = json.loads(out.read_text())
    assert [(r["case"], r["threads"]) for r in rows] == [("toy_mc loglik", 1), ("toy_sum generate (3 new)", 1)]
    mc, gen = rows
    assert mc["n"] == 36 and mc["identical"] and mc["max_abs_diff"] < 1e-4  # 12 items x 3 choices
    assert gen["n"] == 5 and gen["identical_outputs"] == "5/5" and gen["identical"]
    for r in rows:
        assert r["ratio"]["min"] <= r["ratio"]["median"] <= r["ratio"]["max"]
    assert "| toy_mc loglik | 1 | 36 |" in capsys.readouterr().out


def test_a_generative_task_as_mc_task_is_a_usage_error(capsys):
    assert main(["evalspeed", "--model", "tiny-llama", "--mc-task", "toy_sum", "--no-progress"]) == 2
    assert "--mc-task toy_sum" in capsys.readouterr().err
