"""``methods/peft_config.py``: any peft config as a method, and its presets.

The contract (identity, only adapter parameters train, merge, save/load, the count against each
preset's formula) is in ``test_contract.py``, over every preset; here: how presets and
``peft:PATH`` resolve, what is refused and why, ``--set`` into the peft config, the unmerged
path, the head counted beside the adapter, and the size knob that ``--match-params`` uses.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

import methods
from bench.config import build_config
from bench.errors import UsageError
from bench.models import tiny_bert, tiny_llama
from methods.lora import LoraMethodConfig
from methods.peft_config import PRESET_DIR, PeftMethodConfig, preset_info

IDS = torch.tensor([[1, 20, 30, 40, 50, 60], [1, 7, 8, 9, 10, 11]])


def write(tmp_path: Path, data: dict, name: str = "adapter_config.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def config_of(name: str) -> PeftMethodConfig:
    (choice,) = methods.choose(name)
    return PeftMethodConfig(**choice.config)


# ---------------------------------------------------------------------------------------------
# Presets and names
# ---------------------------------------------------------------------------------------------
def test_presets_are_the_json_files_and_do_not_collide_with_built_ins():
    assert methods.presets() == sorted(p.stem for p in PRESET_DIR.glob("*.json"))
    assert {"ia3", "vera", "pissa", "loha", "lokr", "oft", "fourierft", "shira"} <= set(methods.presets())
    assert not set(methods.presets()) & set(methods.names())


@pytest.mark.parametrize("name", methods.presets())
def test_every_preset_documents_its_rate_and_formula(name):
    info = preset_info(name)
    for key in ("description", "formula", "lr_source"):
        assert isinstance(info[key], str) and info[key], f"{name}: {key}"
    cfg = config_of(name)
    assert cfg.lr == info["lr"] > 0
    assert cfg.lr_source == info["lr_source"]
    assert cfg.name == name and cfg.source == f"preset {name}"
    assert cfg.peft["peft_type"] == json.loads((PRESET_DIR / f"{name}.json").read_text())["peft_type"]
    assert "peft_version" in cfg.peft  # to_dict(): every field of the peft config, defaults filled in


def test_all_means_the_built_ins_and_peft_means_every_preset():
    assert [c.name for c in methods.choose("all")] == methods.builtins()
    assert "peft_config" not in methods.builtins() and "peft_config" in methods.names()
    group = methods.choose("peft")
    assert [c.name for c in group] == methods.presets()
    assert {c.method for c in group} == {"peft_config"}
    assert methods.choose("lora") == [methods.Choice("lora", "lora")]


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("shria", "did you mean 'shira'"),
        ("ia4", "did you mean 'ia3'"),
        ("peft_config", "runs through a preset or peft:PATH"),
    ],
)
def test_unknown_names_say_did_you_mean(entry, expected):
    with pytest.raises(UsageError) as err:
        methods.choose(entry)
    assert expected in str(err.value) and "peft:PATH" in str(err.value)


# ---------------------------------------------------------------------------------------------
# peft:PATH
# ---------------------------------------------------------------------------------------------
def test_a_file_or_its_folder_is_read_and_named_after_it(tmp_path):
    folder = tmp_path / "My SHiRA"
    folder.mkdir()
    write(folder, {"peft_type": "SHIRA", "r": 2, "random_seed": 1})
    (from_folder,) = methods.choose(f"peft:{folder}")
    (from_file,) = methods.choose(f"peft:{folder / 'adapter_config.json'}")
    assert from_folder == from_file
    assert (from_folder.name, from_folder.method) == ("my_shira", "peft_config")
    cfg = PeftMethodConfig(**from_folder.config)
    assert (cfg.peft["r"], cfg.lr, cfg.source) == (2, 1e-4, str((folder / "adapter_config.json").resolve()))
    path = write(tmp_path, {"peft_type": "IA3", "peft_bench": {"name": "x", "lr": 0.5}}, "a.json")
    (named,) = methods.choose(f"peft:{path}")
    assert named.name == "x" and named.config["lr"] == 0.5


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        ("{not json", "is not a readable JSON peft config"),
        ({"r": 8}, "has no peft_type"),
        ({"peft_type": "SHIRRA"}, "did you mean 'SHIRA'"),
        ({"peft_type": "SHIRA", "rr": 4}, "ShiraConfig has no field 'rr'; did you mean 'r'"),
        ({"peft_type": "SHIRA", "mask_type": "random", "peft_bench": {"lr": -1}}, "lr=-1 must be"),
        ({"peft_type": "SHIRA", "peft_bench": {"epochs": 3}}, "unknown peft_bench key(s) epochs"),
        ({"peft_type": "ADALORA", "total_step": 10}, "update_and_allocate"),
        ({"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 4}, "prompt learning prepends virtual tokens"),
        ({"peft_type": "LORA", "init_lora_weights": "eva"}, "needs a data pass"),
        ({"peft_type": "LORA", "r": 8}, "is a built-in method's"),
    ],
)
def test_bad_configs_are_one_line_errors(tmp_path, content, expected):
    folder = tmp_path / ("lora" if "built-in" in expected else "mine")  # a built-in's name, or not
    folder.mkdir()
    if isinstance(content, dict):
        write(folder, content)
    elif isinstance(content, str):
        (folder / "adapter_config.json").write_text(content)
    with pytest.raises(UsageError) as err:
        methods.choose(f"peft:{folder}")
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_task_type_must_fit_the_head():
    cfg = dataclasses.replace(config_of("ia3"), peft={**config_of("ia3").peft, "task_type": "SEQ_CLS"})
    assert cfg.head_problem("sequence_classification") is None
    problem = cfg.head_problem("causal_lm")
    assert "task_type is SEQ_CLS" in problem and "set task_type to CAUSAL_LM or null" in problem
    assert config_of("ia3").head_problem("causal_lm") is None  # null fits any task


# ---------------------------------------------------------------------------------------------
# --set into the peft config
# ---------------------------------------------------------------------------------------------
def test_set_reaches_the_peft_config_and_checks_names():
    base = methods.choose("shira")[0].config
    cfg = build_config(PeftMethodConfig, "shira", {"r": "2", "lr": "1e-3", "target_modules": '["q_proj"]'}, base)
    assert (cfg.peft["r"], cfg.lr, cfg.peft["target_modules"]) == (2, 1e-3, ["q_proj"])
    assert cfg.target_modules == ("q_proj",)
    with pytest.raises(UsageError, match="shira has no setting 'random_seeds'; did you mean 'random_seed'"):
        build_config(PeftMethodConfig, "shira", {"random_seeds": "2"}, base)
    pissa = methods.choose("pissa")[0].config
    with pytest.raises(UsageError, match="pissa: peft rejects the config: .*loftq_config"):
        build_config(PeftMethodConfig, "pissa", {"init_lora_weights": "loftq"}, pissa)


# ---------------------------------------------------------------------------------------------
# Applying, counting, merging
# ---------------------------------------------------------------------------------------------
def test_null_targets_are_the_built_in_methods_layers():
    from peft.tuners.tuners_utils import BaseTunerLayer

    def adapted(model) -> set[str]:
        return {n.split("base_model.model.")[-1] for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)}

    shira = methods.get("peft_config").apply(tiny_llama(0), config_of("shira"))
    lora = methods.get("lora").apply(tiny_llama(0), LoraMethodConfig())
    assert adapted(shira) == adapted(lora) and len(adapted(lora)) == 14


def test_the_head_trained_beside_the_adapter_is_counted_saved_and_loaded_as_for_lora(tmp_path):
    method, cfg = methods.get("peft_config"), config_of("shira")
    model = method.apply(tiny_bert(0, num_labels=2), cfg)
    adapter_only = method.count_trainable(model)
    head = [p for n, p in model.named_parameters() if ".classifier." in n]
    for p in head:
        p.requires_grad_(True)  # as the runner does for every method
        with torch.no_grad():
            p.add_(0.5)
    assert method.count_trainable(model) == adapter_only + sum(p.numel() for p in head) == 14336 + 130
    method.save(model, str(tmp_path))
    assert (tmp_path / "trainable_extra.safetensors").is_file()
    loaded = method.load(tiny_bert(0, num_labels=2), str(tmp_path))
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=IDS).logits, model(input_ids=IDS).logits)


def test_a_method_without_merge_is_evaluated_unmerged():
    method = methods.get("peft_config")
    cfg = PeftMethodConfig(name="lily", peft={"peft_type": "LILY"})
    model = method.apply(tiny_llama(0), cfg)
    with torch.no_grad():
        before = model(input_ids=IDS).logits
        out = method.merge(model)
        assert out is model and method.evaluated_as(out) == "unmerged"
        assert torch.equal(out(input_ids=IDS).logits, before)
    merged = method.merge(method.apply(tiny_llama(0), config_of("shira")))
    assert method.evaluated_as(merged) == "merged"


def test_the_default_config_names_no_method_and_apply_says_how_to_choose_one():
    with pytest.raises(UsageError, match="--methods peft:PATH or a preset"):
        methods.get("peft_config").apply(tiny_llama(0), PeftMethodConfig())


# ---------------------------------------------------------------------------------------------
# The size knob (--match-params)
# ---------------------------------------------------------------------------------------------
def test_size_knob_resizes_inside_the_peft_config():
    shira, loha, ia3 = config_of("shira"), config_of("loha"), config_of("ia3")
    assert (shira.size_knob, loha.size_knob, ia3.size_knob) == ("r", "r", None)
    assert shira.resized("r", 3).peft["r"] == 3 and shira.peft["r"] == 8
    bigger = loha.resized("r", 16).peft
    assert (bigger["r"], bigger["alpha"]) == (16, 32)  # alpha / r stays the preset's
    model = tiny_llama(0)
    from methods._base import find_targets

    targets = find_targets(model, None)
    # SHiRA: r (m + n) entries fit in m x n; the 64 x 32 k/v projections allow r <= 21
    assert shira.knob_limit(targets) == 64 * 32 // (64 + 32)
