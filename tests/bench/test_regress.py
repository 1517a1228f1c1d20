"""``bench regress`` on synthetic records of its suite (the suite itself runs in CI, ``.ci/run``):
records -> summaries, the baseline file, and what the command prints and exits with. The
comparison rules (tolerance, exact counts and bytes, time ratios) are in ``test_regress_rules``."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

import pytest

import tasks
from bench import records, regress
from bench.cli import main
from bench.config import Budget
from bench.records import RunRecord


def jobs():
    for case in regress.SUITE:
        for task in case.tasks:
            model = case.model or tasks.get(task).default_model
            for i, method in enumerate(regress.METHODS):
                for seed in case.seeds:
                    yield case, task, model, i, method, seed


def write_suite(folder: Path, tweak=None) -> None:
    """One record per suite job with made-up values; ``tweak(method, task, seed, rec)`` edits one."""
    for case, task, model, i, method, seed in jobs():
        rec = RunRecord(
            run={
                "method": method,
                "method_label": method,
                "task": task,
                "model": model,
                "seed": seed,
                "budget": asdict(Budget(**case.budget)),
            },
            result={"status": "ok", "metrics": {"accuracy": 40.0 + 10 * i + seed}, "primary_metric": "accuracy"},
            cost={
                "trainable_params": 1000 * (i + 1),
                "total_params": 100_000,
                "buffer_params": 64 * i,
                "head_params": 130,
                "breakdown": {name: 4096 * (i + 1) + seed for name in regress.BREAKDOWN_BYTES},
                "train_tokens_per_s": 1000.0 * (i + 1),
            },
        )
        if tweak:
            tweak(method, task, seed, rec)
        records.save(rec, folder)


def regress_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["regress", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def baseline(tmp_path, capsys):
    folder = tmp_path / "base-records"
    write_suite(folder)
    path = tmp_path / "ci.json"
    code, out, _ = regress_cli(capsys, "--update", "--records", str(folder), "--baseline", str(path))
    assert code == 0 and "wrote" in out
    return path


def compare_with(tmp_path, capsys, baseline, tweak, *extra):
    folder = tmp_path / "now"
    write_suite(folder, tweak)
    return regress_cli(capsys, "--records", str(folder), "--baseline", str(baseline), *extra)


def row(out: str, *cells: str) -> bool:
    """A table row with these cells in order, however wide the columns are."""
    return any(re.fullmatch(r"\s*" + r"\s+".join(map(re.escape, cells)) + r".*", line) for line in out.splitlines())


def test_the_baseline_states_its_tolerance_and_suite(baseline):
    data = json.loads(baseline.read_text())
    assert data["tolerance"] == {"accuracy_points": regress.ACCURACY_POINTS, "time_ratio_factor": 2.0}
    assert data["suite"] == regress.suite_description()
    assert set(data["results"]) == set(regress.expected_keys())
    lora = data["results"]["lora|toy_cls|tiny-bert"]
    assert lora["score"] == 50.5 and lora["per_seed"] == {"0": 50.0, "1": 51.0}
    assert lora["trainable_params"] == 2000 and lora["breakdown"]["1"]["grad_bytes"] == 8193
    assert lora["tokens_per_s_vs_full_ft"] == 0.4  # 2000 / 5000 tokens/s


def test_nothing_moved(tmp_path, capsys, baseline):
    code, out, _ = compare_with(tmp_path, capsys, baseline, None)
    assert code == 0, out
    assert "nothing moved: all" in out and "regress: ok: 0 regression(s), 0 warning(s)" in out
    assert "within ±5 points" in out and "counts and memory-breakdown bytes exact" in out
    assert row(out, "toy_cls", "tiny-bert", "0.20 (0.20)", "0.40 (0.40)")  # the time table, always shown


def set_accuracy(method, task, seed, value):
    def tweak(m, t, s, rec):
        if (m, t, s) == (method, task, seed):
            rec.result["metrics"]["accuracy"] = value

    return tweak


def test_a_regression_exits_1_and_says_how_to_update(tmp_path, capsys, baseline):
    # the rules themselves (tolerance, exact counts and bytes) are in test_regress_rules
    code, out, _ = compare_with(tmp_path, capsys, baseline, set_accuracy("neuroada", "glue_sst2", 0, 30.0))
    assert code == 1, out
    assert row(out, "accuracy", "neuroada", "glue_sst2", "minilm-l6", "40.00", "30.00")
    assert "REGRESSION (worse; beyond ±5)" in out
    assert "regress: FAIL: 1 regression(s)" in out and "python -m bench regress --update" in out


def test_a_failed_breakdown_is_left_out_of_the_summary(tmp_path, capsys, baseline):
    def tweak(m, t, s, rec):
        if (m, t, s) == ("full_ft", "toy_cls", 0):
            rec.cost["breakdown"] = {"reason": "breakdown failed: RuntimeError: boom"}

    folder = tmp_path / "now"
    write_suite(folder, tweak)
    assert list(regress.summarize(folder)["full_ft|toy_cls|tiny-bert"]["breakdown"]) == ["1"]
    code, out, _ = regress_cli(capsys, "--records", str(folder), "--baseline", str(baseline))
    assert code == 1
    assert row(out, "breakdown seed 0", "full_ft", "toy_cls", "tiny-bert", "present", "missing")


def test_time_ratios_only_warn(tmp_path, capsys, baseline):
    def tweak(m, t, s, rec):
        if m == "masked_sparse" and t == "toy_mc":
            rec.cost["train_tokens_per_s"] *= 3  # 0.8 of full_ft's -> 2.4: x3

    code, out, _ = compare_with(tmp_path, capsys, baseline, tweak)
    assert code == 0, out
    assert row(out, "tokens/s ÷ full_ft", "masked_sparse", "toy_mc", "tiny-llama", "0.80", "2.40")
    assert "warning (x3.00; outside x2)" in out and "regress: ok: 0 regression(s), 1 warning(s)" in out
    code, out, _ = compare_with(tmp_path, capsys, baseline, tweak, "--strict-time")
    assert code == 1 and "REGRESSION (x3.00; outside x2)" in out


def test_a_failed_or_missing_job_is_a_regression(tmp_path, capsys, baseline):
    def tweak(m, t, s, rec):
        if (m, t, s) == ("neuroada", "toy_sum", 1):
            rec.result.update(status="diverged", error="loss became nan at step 3", metrics={})

    code, out, _ = compare_with(tmp_path, capsys, baseline, tweak)
    assert code == 1
    assert row(out, "status", "neuroada", "toy_sum", "tiny-llama", "ok", "diverged,ok", "", "REGRESSION")
    (tmp_path / "now" / "lora--toy_mc--seed0.json").unlink()
    (tmp_path / "now" / "lora--toy_mc--seed1.json").unlink()
    code, out, _ = regress_cli(capsys, "--records", str(tmp_path / "now"), "--baseline", str(baseline))
    assert code == 1 and row(out, "record", "lora", "toy_mc", "tiny-llama", "present", "missing")


def test_update_refuses_an_unfinished_run(tmp_path, capsys):
    folder = tmp_path / "records"
    write_suite(folder, set_accuracy("lora", "toy_cls", 0, 1.0))
    (folder / "dora--glue_sst2--seed0.json").unlink()
    code, _, err = regress_cli(capsys, "--update", "--records", str(folder), "--baseline", str(tmp_path / "b.json"))
    assert code == 2 and "did not all finish ok (dora|glue_sst2|minilm-l6)" in err
    assert not (tmp_path / "b.json").exists()


def test_baseline_errors(tmp_path, capsys, baseline):
    folder = tmp_path / "now"
    write_suite(folder)
    missing = tmp_path / "none.json"
    code, _, err = regress_cli(capsys, "--records", str(folder), "--baseline", str(missing))
    assert code == 2 and f"no baseline at '{missing}'; create it with `python -m bench regress --update`" in err

    data = json.loads(baseline.read_text())
    data["suite"][0]["seeds"] = [0]
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    code, _, err = regress_cli(capsys, "--records", str(folder), "--baseline", str(other))
    assert code == 2 and "was made for another suite" in err

    other.write_text(baseline.read_text()[:-20])
    code, _, err = regress_cli(capsys, "--records", str(folder), "--baseline", str(other))
    assert code == 2 and "is not valid JSON" in err


def test_records_of_another_budget_are_refused(tmp_path, capsys, baseline):
    def tweak(m, t, s, rec):
        rec.run["budget"]["max_steps"] += 1

    code, _, err = compare_with(tmp_path, capsys, baseline, tweak)
    assert code == 2 and "is not one of the regress suite's jobs" in err


def test_the_committed_baseline_matches_the_suite():
    data = regress.load_baseline(regress.BASELINE)  # raises if the suite changed without --update
    assert set(data["results"]) == set(regress.expected_keys())
    assert all(entry["status"] == "ok" for entry in data["results"].values())
