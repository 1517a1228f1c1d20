"""The learning-rate search: the same grid size for every method, the chosen rate is the best
validation trial, an edge choice is flagged, trials resume like runs, and the final records
keep the search."""

from __future__ import annotations

import json

import pytest

from bench import executors, tune
from bench.config import budget_for
from bench.plan import RunRequest, plan


def test_grid_is_half_decades_around_the_rate():
    assert tune.grid(1e-3, 5) == [1e-4, 0.000316, 1e-3, 0.00316, 0.01]
    assert tune.grid(8e-3, 3) == [0.00253, 8e-3, 0.0253]
    assert tune.grid(2e-5, 1) == [2e-5]
    assert len(tune.grid(1e-3, 4)) == 4


def finals(tmp_path, methods="base,neuroada,lora,full_ft", tasks="toy_sum,toy_cls"):
    request = RunRequest(
        methods=methods,
        tasks=tasks,
        budget=budget_for("smoke"),
        output_dir=str(tmp_path),
        device="cpu",
        threads=1,
        progress=False,
        seeds=(3, 4),
    )
    return plan(request)


def test_every_method_gets_the_same_number_of_trials(tmp_path):
    trials = tune.trial_jobs(finals(tmp_path), 5, 8)
    sizes = {key: len(jobs) for key, jobs in trials.items()}
    assert set(sizes.values()) == {5}
    # base trains nothing on a causal task: no search there; its linear probe is searched
    assert ("base", "toy_sum") not in trials and ("base", "toy_cls") in trials
    for (label, _task), jobs in trials.items():
        assert all(j.evaluate_on == "validation" and j.holdout == 8 and j.seed == 3 for j in jobs)
        assert [j.label for j in jobs] == [f"{label}@lr={j.method_config['lr']:g}" for j in jobs]
        assert all(j.output_dir.endswith("/tune") for j in jobs)


def trial(lr, score, higher=True, status="ok"):
    return {"lr": lr, "status": status, "score": score, "metric": "m", "higher_is_better": higher, "seconds": 1.0}


def test_the_chosen_rate_is_the_best_validation_trial():
    got = tune.choose([trial(1e-4, 70.0), trial(3e-4, 81.0), trial(1e-3, 80.0)])
    assert got["chosen"] == 3e-4 and not got["edge"] and got["seconds"] == 3.0
    low_loss = tune.choose([trial(1e-4, 0.9, False), trial(3e-4, 0.5, False), trial(1e-3, 0.7, False)])
    assert low_loss["chosen"] == 3e-4
    failed = tune.choose([trial(1e-4, 70.0), trial(3e-4, None, status="diverged"), trial(1e-3, 60.0)])
    assert failed["chosen"] == 1e-4 and failed["edge"]  # the smallest rate won: at the edge
    assert tune.choose([trial(1e-4, None, status="failed")])["chosen"] is None


def test_trials_resume_and_the_final_jobs_keep_the_search(tmp_path):
    jobs = finals(tmp_path, methods="lora", tasks="toy_cls")
    trials = tune.trial_jobs(jobs, 2, 8)
    flat = [t for group in trials.values() for t in group]
    first = executors.run("local", flat, progress=False)
    assert [s for _, s in first] == ["ok", "ok"]
    again = executors.run("local", flat, progress=False)
    assert [s for _, s in again] == ["skipped (ok)", "skipped (ok)"]
    final = tune.tuned(jobs, trials, 8)
    search = final[0].lr_search
    scores = {t["lr"]: t["score"] for t in search["trials"]}
    best = min(scores, key=scores.get)  # toy_cls trials are scored by validation loss
    assert search["criterion"] == "val_loss" and search["chosen"] == best
    assert all(j.method_config["lr"] == best and j.holdout == 8 for j in final)
    record = json.loads(flat[0].record_path.read_text())
    assert record["run"]["validation"] == {"rows": 8, "criterion": "loss"}
    assert record["result"]["higher_is_better"] == {"val_loss": False}


@pytest.mark.parametrize("n", [0])
def test_an_empty_grid_is_refused(n):
    from bench.errors import UsageError

    with pytest.raises(UsageError, match="--lr-grid"):
        tune.grid(1e-3, n)


def test_a_peft_preset_is_searched_around_its_own_rate(tmp_path):
    request = RunRequest(
        methods="shira", tasks="toy_sum", budget=budget_for("smoke"), output_dir=str(tmp_path), device="cpu"
    )
    trials = tune.trial_jobs(plan(request), 3, holdout=4)
    (jobs,) = trials.values()
    assert [j.method_config["lr"] for j in jobs] == tune.grid(3e-4, 3)  # the preset's rate, from its file
    assert {j.method for j in jobs} == {"peft_config"} and jobs[0].label.startswith("shira@lr=")
    assert {j.method_config["peft"]["peft_type"] for j in jobs} == {"SHIRA"}
