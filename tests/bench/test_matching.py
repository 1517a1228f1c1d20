"""Matched parameter budgets: the matched counts equal the methods' parameter formulas on a tiny
model, in both directions; methods without a size knob run unmatched; a target below a method's
smallest size is reported; the record keeps the match."""

from __future__ import annotations

import copy
import json

import pytest

import methods
from bench import matching
from bench.config import budget_for, build_config
from bench.errors import UsageError
from bench.plan import RunRequest, plan
from bench.skeleton import model_skeleton

MODEL = model_skeleton("tiny-llama", "causal_lm", 0, device="cpu")
TARGETS = [m for m in MODEL.modules() if type(m).__name__ == "Linear" and m is not MODEL.lm_head]
ROWS = sum(m.out_features for m in TARGETS)  # NeuroAda/masked sparse: k per output row
SIDES = sum(m.in_features + m.out_features for m in TARGETS)  # LoRA: r * (d_in + d_out)


def build():
    return copy.deepcopy(MODEL)


def configs(**overrides):
    names = ["base", "neuroada", "lora", "dora", "masked_sparse", "full_ft"]
    return {n: build_config(methods.get(n).config_cls, n, overrides.get(n, {})) for n in names}


def test_the_formulas_hold_on_the_tiny_model():
    cfgs = configs()
    assert matching.count("neuroada", cfgs["neuroada"], build) == 1 * ROWS
    assert matching.count("lora", cfgs["lora"], build) == 8 * SIDES
    assert matching.count("dora", cfgs["dora"], build) == 8 * SIDES + ROWS  # + the magnitude vectors


def test_neuroada_k_matched_to_lora_r8():
    out, matches = matching.match_all(configs(), "lora", build)
    target = 8 * SIDES
    k = matches["neuroada"].value
    assert matches["neuroada"].target == target
    assert abs(k * ROWS - target) <= min(abs((k - 1) * ROWS - target), abs((k + 1) * ROWS - target))
    assert matches["neuroada"].achieved == k * ROWS == out["neuroada"].k * ROWS
    assert out["masked_sparse"].k == k


def test_lora_r_matched_to_neuroada_k16():
    out, matches = matching.match_all(configs(neuroada={"k": "16"}), "neuroada", build)
    target = 16 * ROWS
    r = matches["lora"].value
    assert abs(r * SIDES - target) <= min(abs((r - 1) * SIDES - target), abs((r + 1) * SIDES - target))
    assert matches["lora"].achieved == r * SIDES
    assert out["lora"].alpha == pytest.approx(2 * r)  # alpha/r kept at the default 16/8
    dora_r = matches["dora"].value
    assert matches["dora"].achieved == dora_r * SIDES + ROWS


def test_methods_without_a_knob_run_unmatched_with_a_note():
    out, matches = matching.match_all(configs(), "lora", build)
    for name in ("full_ft", "base"):
        assert matches[name].knob is None and matches[name].achieved is None
        assert "unmatched" in matches[name].note
        assert out[name] == configs()[name]


def test_a_target_below_the_smallest_size_is_reported_not_hidden():
    out, matches = matching.match_all(configs(), "neuroada", build)  # k=1: fewer than LoRA r=1
    assert matches["lora"].value == 1 and matches["lora"].achieved == SIDES > ROWS
    assert "below lora's smallest size" in matches["lora"].note


def test_the_record_keeps_the_match(tmp_path):
    request = RunRequest(
        methods="neuroada,lora",
        tasks="toy_sum",
        budget=budget_for("smoke"),
        smoke=True,
        output_dir=str(tmp_path),
        device="cpu",
        match_params="lora",
    )
    jobs = {j.method: j for j in plan(request)}
    assert jobs["neuroada"].match_params["target"] == 8 * SIDES
    assert jobs["neuroada"].method_config["k"] == jobs["neuroada"].match_params["value"]
    assert json.loads(jobs["neuroada"].to_json())["match_params"]["reference"] == "lora"


def test_the_reference_must_be_one_of_the_methods(tmp_path):
    request = RunRequest(
        methods="neuroada", tasks="toy_sum", budget=budget_for("smoke"), output_dir=str(tmp_path), match_params="lora"
    )
    with pytest.raises(UsageError, match="--match-params lora is not in --methods"):
        plan(request)


# ---------------------------------------------------------------------------------------------
# SHiRA with NeuroAda's budget: r (d_in + d_out) entries per layer against k d_out
# ---------------------------------------------------------------------------------------------
def shira_and_neuroada(k: int) -> dict:
    (shira,) = methods.choose("shira")
    return {
        "neuroada": build_config(methods.get("neuroada").config_cls, "neuroada", {"k": str(k)}),
        "shira": build_config(methods.get("peft_config").config_cls, "shira", {}, shira.config),
    }


@pytest.mark.parametrize(("k", "r"), [(2, 1), (16, 8)])
def test_shira_gets_exactly_neuroadas_entries_where_its_size_allows(k, r):
    assert SIDES == 2 * ROWS  # the tiny LLaMA's targets: sum(d_in) == sum(d_out)
    out, matches = matching.match_all(shira_and_neuroada(k), "neuroada", build)
    assert (matches["shira"].knob, matches["shira"].value) == ("r", r)
    assert matches["shira"].achieved == matches["shira"].target == k * ROWS
    assert out["shira"].peft["r"] == r and matches["shira"].note == ""
    assert matching.count("shira", out["shira"], build) == k * ROWS


def test_shira_below_neuroada_k1_is_reported():
    _, matches = matching.match_all(shira_and_neuroada(1), "neuroada", build)
    assert matches["shira"].value == 1 and matches["shira"].achieved == SIDES == 2 * ROWS
    assert "below shira's smallest size (r=1: 2,048)" in matches["shira"].note


def test_a_preset_is_matched_through_the_plan(tmp_path):
    request = RunRequest(
        methods="neuroada,shira,ia3",
        tasks="toy_sum",
        budget=budget_for("smoke"),
        smoke=True,
        output_dir=str(tmp_path),
        device="cpu",
        match_params="neuroada",
        overrides={"neuroada": {"k": "2"}},
    )
    jobs = {j.label.split("@")[0]: j for j in plan(request)}
    assert jobs["shira"].method == "peft_config"
    assert jobs["shira"].method_config["peft"]["r"] == jobs["shira"].match_params["value"] == 1
    assert jobs["shira"].match_params["achieved"] == 2 * ROWS
    assert jobs["ia3"].match_params["knob"] is None  # IA³ has no size: unmatched
