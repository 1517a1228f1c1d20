"""Recipes: the official scripts' settings per suite and k (NeuroAda) and the peers' commonsense
recipes, chosen by config, applied by the plan under the user's --set and budget flags, and
recorded; the paper preset's step counts equal the official scripts'."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from bench import recipes
from bench.config import Budget, budget_for, epoch_steps
from bench.plan import RunRequest, plan

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
COMMONSENSE_170K = 170_420
"""Rows of LLM-Adapters' ft-training_set/commonsense_170k.json as commonly cited (the hub being
unreachable here, the job counts the rows it loads; this pins the arithmetic, not the file)."""


def paper_jobs(methods: str, tasks: str, overrides=None, **budget_flags):
    request = RunRequest(
        methods=methods,
        tasks=tasks,
        output_dir="/tmp/unused",
        budget=lambda task: budget_for("paper", task.suite, **budget_flags),
        preset="paper",
        overrides=overrides or {},
        data_dir=str(DATA),
        model="tiny-llama",
        device="cpu",
        budget_overrides={k: v for k, v in budget_flags.items() if v is not None},
    )
    return {(j.label, j.task): j for j in plan(request)}


@pytest.mark.parametrize(
    "suite,k,lr,batch,micro,wd,warmup",
    [
        ("commonsense", 1, 8e-3, 8, 8, 0.0, 0.1),
        ("commonsense", 20, 7e-4, 16, 16, 0.0, 0.06),
        ("arithmetic", 1, 9e-3, 16, 2, 0.0, 0.06),
        ("arithmetic", 20, 3e-3, 8, 2, 0.1, 0.0),
    ],
)
def test_neuroada_gets_the_official_row_of_its_suite_and_k(suite, k, lr, batch, micro, wd, warmup):
    task = "boolq" if suite == "commonsense" else "gsm8k"
    job = paper_jobs("neuroada", task, {"neuroada": {"k": str(k)}})[(f"neuroada@k={k}", task)]
    b = job.budget
    assert (b["batch_size"], b["micro_batch_size"], b["weight_decay"], b["warmup_ratio"]) == (batch, micro, wd, warmup)
    assert (b["epochs"], b["max_length"], b["dtype"], b["protocol"], b["eval_batch_size"]) == (
        3,
        512,
        "bfloat16",
        "loreft",
        16,
    )
    assert job.method_config["lr"] == lr and job.method_config["faithful"] is True
    assert job.method_config["target_modules"] == [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    ]
    assert job.recipe["source"].startswith("FightingFighting/NeuroAda@0ed987c4 scripts/percell/perCell_mag_add/top")
    assert job.run_section()["recipe"] == job.recipe


def test_the_users_rate_and_budget_flags_win():
    jobs = paper_jobs("neuroada", "boolq", {"neuroada": {"k": "20", "lr": "1e-3"}}, batch_size=32)
    job = jobs[("neuroada@k=20,lr=1e-3", "boolq")]
    assert job.method_config["lr"] == 1e-3  # --set wins over the recipe's 7e-4
    assert job.budget["batch_size"] == 32 and job.budget["micro_batch_size"] == 16  # the flag wins; the rest stays


def test_peers_get_their_commonsense_recipes_and_no_arithmetic_one():
    jobs = paper_jobs("lora,dora", "boolq,gsm8k", {"dora": {"r": "16"}})
    lora, dora = jobs[("lora", "boolq")], jobs[("dora@r=16", "boolq")]
    assert (lora.method_config["r"], lora.method_config["alpha"], lora.method_config["lr"]) == (32, 64.0, 3e-4)
    assert lora.method_config["target_modules"] == ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"]
    assert (dora.method_config["r"], dora.method_config["lr"]) == (16, 2e-4)
    for job in (lora, dora):
        b = job.budget
        assert (b["batch_size"], b["micro_batch_size"], b["max_length"], b["warmup_steps"]) == (16, 4, 256, 100)
        assert b["train_on_inputs"] is True and b["protocol"] == "harness" and b["epochs"] == 3
        assert "120 training rows" in job.recipe["differences"]
    assert jobs[("lora", "gsm8k")].recipe is None  # no published LoRA math_10k recipe: the preset's budget
    assert jobs[("lora", "gsm8k")].method_config["r"] == 8


def test_other_k_has_no_recipe_and_keeps_the_preset():
    job = paper_jobs("neuroada", "boolq", {"neuroada": {"k": "4"}})[("neuroada@k=4", "boolq")]
    assert job.recipe is None and job.budget == asdict(budget_for("paper", "commonsense"))


def test_recipe_for_first_match_and_helpers():
    assert recipes.recipe_for("paper", "commonsense", "dora", {"r": 16}).settings["lr"] == "2e-4"
    assert recipes.recipe_for("paper", "commonsense", "dora", {"r": 8}).settings["r"] == "32"
    assert recipes.recipe_for("demo", "commonsense", "lora", {"r": 32}) is None
    recipe = recipes.recipe_for("paper", "arithmetic", "neuroada", {"k": 20})
    budget = recipes.apply_budget(recipe, Budget(), {"weight_decay": 0.0})
    assert (budget.batch_size, budget.micro_batch_size, budget.weight_decay) == (8, 2, 0.0)
    assert recipes.apply_budget(None, Budget(), {}) == Budget()
    assert recipes.settings_with(recipe, {"lr": "1e-2"})["lr"] == "1e-2"


def test_every_recipe_builds_a_valid_budget():
    for recipe in recipes.RECIPES:
        assert isinstance(recipes.apply_budget(recipe, budget_for(recipe.preset, recipe.suite), {}), Budget)
        assert recipe.source


@pytest.mark.parametrize(
    "k,per_epoch,steps",
    [(20, 10_652, 31_956), (1, 21_303, 63_909)],  # ceil(170420 / 16) and ceil(170420 / 8), x 3
)
def test_paper_steps_on_commonsense_170k_equal_the_official_scripts(k, per_epoch, steps):
    job = paper_jobs("neuroada", "boolq", {"neuroada": {"k": str(k)}})[(f"neuroada@k={k}", "boolq")]
    assert epoch_steps(COMMONSENSE_170K, Budget(**job.budget)) == (per_epoch, steps)


def test_a_paper_job_runs_offline_on_the_shared_data(tmp_path):
    """The offline path end to end: the paper preset on the shared 1,000-row mixture (the hub's
    commonsense_170k is for users with network access), a tiny model, 2% of an epoch."""
    import json

    from bench.cli import main

    argv = ["run", "--methods", "neuroada", "--set", "neuroada.k=20", "--tasks", "boolq", "--preset", "paper"]
    argv += ["--epochs", "0.02", "--limit", "4", "--model", "tiny-llama", "--data-dir", str(DATA)]
    argv += ["--output-dir", str(tmp_path), "--no-progress", "--threads", "1"]
    assert main(argv) == 0
    run = json.loads((tmp_path / "neuroada@k=20--boolq--seed0.json").read_text())["run"]
    assert run["epoch_steps"] == {
        "epochs": 0.02,
        "n_train": 1000,
        "steps_per_epoch": 63,  # ceil(1000 / 16)
        "max_steps": 2,  # ceil(0.02 x 63)
        "rule": "HF Trainer 4.45: max(ceil(n / micro_batch) // grad_accum, 1) per epoch, ceil(epochs x that)",
    }
    assert run["budget"]["max_steps"] == 2 and run["budget"]["protocol"] == "loreft"
    assert run["protocol"].startswith("loreft:") and run["method_config"]["lr"] == 7e-4
    assert run["recipe"]["when"] == {"k": 20}
