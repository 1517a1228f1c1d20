"""Any peft config as a method: ``--methods peft:PATH`` (a peft ``adapter_config.json``, or a folder
holding one) and the named presets of ``methods/peft_presets/*.json`` (``--methods ia3,vera,shira``).

A preset file is a peft adapter config plus one ``peft_bench`` block that peft never sees: the
learning rate and its source, a one-line description, the parameter-budget formula, and
``targets`` (see below). A user's file may carry the same block (all keys optional); without it the
learning rate is peft's method-comparison default, 1e-4. The label in tables is the preset's name,
else the block's ``name``, else the file's (or its folder's) name.

peft does the work, as for LoRA: ``get_peft_model`` injects and freezes, ``merge_and_unload`` folds
the update into the weights where the method can (evaluated merged, as every other method);
where it cannot (peft raises ``NotImplementedError``) the model is evaluated unmerged and the
record says so (``result.evaluated``). The trainable count is peft's own
(``PeftModel.get_nb_trainable_parameters``); a classification head the runner trains beside the
adapter is counted, saved and loaded as for LoRA. The record keeps the whole peft config
(``PeftConfig.to_dict()``, every default filled in) in ``run.method_config.peft``.

Targets: a config whose ``target_modules`` is null adapts the layers every built-in method adapts
(``methods._base.default_targets``: the attention and MLP linears, never heads or embeddings), so
that only the method differs; ``"targets": "peft"`` in the block keeps peft's per-architecture
default instead (IA³'s keys, values and feed-forward layers). The config's ``task_type`` must fit
the task's head (checked before anything runs) and is then left to the runner's head handling.

Refused, with the reason: methods whose training needs hooks the loop does not call (AdaLoRA's
rank allocation, X-LoRA, Poly's task ids) and prompt learning (virtual tokens shift the positions
the evaluators score, and nothing merges).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from bench.errors import UsageError
from bench.registry import METHODS, did_you_mean
from methods._base import adamw, count_parameters, find_targets, freeze, trainable_parameters

PRESET_DIR = Path(__file__).with_name("peft_presets")
META_KEY = "peft_bench"
"""The block of a config file that peft never sees (learning rate, description, formula, targets)."""
META_FIELDS = ("name", "description", "formula", "lr", "lr_source", "targets", "identity_at_init")
CONFIG_FILE = "adapter_config.json"
EXTRA_FILE = "trainable_extra.safetensors"
DEFAULT_LR = 1e-4
"""peft's method_comparison/MetaMathQA/default_training_params.json: the rate of a config without one."""
REFUSED = {
    "ADALORA": "its rank allocation needs model.base_model.update_and_allocate(step) after every optimizer "
    "step, which the training loop does not call",
    "XLORA": "it trains a gating classifier over LoRA adapters trained beforehand and loaded from their paths",
    "POLY": "it needs task ids with every batch, which the training loop does not pass",
}
SIZE_KNOBS = {
    "SHIRA": ("r", None),
    "LORA": ("r", "lora_alpha"),
    "LOHA": ("r", "alpha"),
    "LOKR": ("r", "alpha"),
    "VERA": ("r", None),
    "FOURIERFT": ("n_frequency", None),
}
"""peft field that sizes each method (``--match-params``), and the scale numerator that grows with it."""
HEAD_TASK_TYPES = {"causal_lm": "CAUSAL_LM", "sequence_classification": "SEQ_CLS"}


# ---------------------------------------------------------------------------------------------
# The config
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PeftMethodConfig:
    """One peft config as a method config; chosen with ``--methods NAME`` or ``--methods peft:PATH``.

    Parameter budget: peft's own count; each preset's formula is in its file and ``bench ls methods``.
    """

    name: str = "peft"
    """The label in tables: the preset's name, or the config file's."""

    peft: dict[str, Any] | None = None
    """The peft config as ``PeftConfig.to_dict()`` (JSON); None only in the unselected default."""

    lr: float = DEFAULT_LR
    """Learning rate: the preset's (see ``lr_source``), else peft's method-comparison default 1e-4."""

    lr_source: str = "peft method_comparison/MetaMathQA/default_training_params.json (lr 1e-4)"
    """Where the default learning rate comes from."""

    targets: Literal["bench", "peft"] = "bench"
    """Null ``target_modules``: ``bench`` adapts the built-in methods' layers, ``peft`` keeps peft's default."""

    source: str = ""
    """The preset or file the config was read from."""

    nested = "peft"
    """``--set NAME.FIELD=VALUE`` for a field of the peft config (``--set shira.r=16``) sets it here."""

    def __post_init__(self) -> None:
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"{self.name}.lr={self.lr!r} must be a finite number > 0 (e.g. {DEFAULT_LR})")
        if self.targets not in ("bench", "peft"):
            raise ValueError(f"{self.name}.targets={self.targets!r} must be 'bench' or 'peft'")
        if self.peft is not None:
            object.__setattr__(self, "peft", normalized(self.peft, self.name))

    @property
    def peft_type(self) -> str | None:
        return None if self.peft is None else self.peft["peft_type"]

    @property
    def target_modules(self) -> tuple[str, ...] | None:
        """The targets as ``find_targets`` reads them (None: the defaults, or a regex peft resolves)."""
        targets = (self.peft or {}).get("target_modules")
        return tuple(targets) if isinstance(targets, list) and self.targets == "bench" else None

    def build(self, model: nn.Module):
        """The peft config for ``model``: null targets resolved, the task head left to the runner."""
        from peft import PeftConfig

        if self.peft is None:
            raise UsageError("peft_config needs a peft config: --methods peft:PATH or a preset (bench ls methods)")
        values = dict(self.peft)
        values.update(task_type=None, inference_mode=False)
        if values.get("target_modules") is None and self.targets == "bench":
            values["target_modules"] = [name for name, _ in find_targets(model, None)]
        return PeftConfig.from_peft_type(**values)

    def head_problem(self, head: str) -> str | None:
        """Why this config does not fit a task whose model has ``head``, or None."""
        task_type = (self.peft or {}).get("task_type")
        if task_type is None or task_type == HEAD_TASK_TYPES.get(head):
            return None
        return (
            f"{self.name}: the peft config's task_type is {task_type}, but the task trains a "
            f"{head} model ({HEAD_TASK_TYPES.get(head)}); set task_type to {HEAD_TASK_TYPES.get(head)} or null"
        )

    # -- --match-params (bench.matching): the size knob, where the method has one -------------
    @property
    def size_knob(self) -> str | None:
        knob = SIZE_KNOBS.get(self.peft_type or "", (None, None))[0]
        return knob if knob and isinstance((self.peft or {}).get(knob), int) else None

    def resized(self, knob: str, value: int) -> PeftMethodConfig:
        """This config with ``knob=value``; a scale numerator (LoRA's lora_alpha) grows with it."""
        values = dict(self.peft or {})
        alpha = SIZE_KNOBS.get(self.peft_type or "", (None, None))[1]
        if alpha and isinstance(values.get(alpha), (int, float)) and values.get(knob):
            values[alpha] = values[alpha] * value / values[knob]
        values[knob] = value
        return dataclasses.replace(self, peft=values)

    def size_problem(self, targets: list[tuple[str, nn.Linear]]) -> str | None:
        """Why the size does not fit these target layers (SHiRA's r (m + n) entries, FourierFT's
        frequencies must fit in each m x n weight), or None."""
        knob = self.size_knob
        if self.peft_type not in ("SHIRA", "FOURIERFT") or knob is None or not targets:
            return None
        limit = self.knob_limit(targets)
        if self.peft[knob] <= limit:
            return None
        value = self.peft[knob]
        return f"{self.name}.{knob}={value} does not fit every target layer; use {self.name}.{knob} <= {limit}"

    def knob_limit(self, targets: list[tuple[str, nn.Linear]]) -> int:
        """The largest valid size on these target layers."""
        shapes = [(m.out_features, m.in_features) for _, m in targets]
        if self.peft_type == "SHIRA":  # r (m + n) entries must fit in the m x n weight
            return min(m * n // (m + n) for m, n in shapes)
        if self.size_knob == "n_frequency":
            return min(m * n for m, n in shapes)
        return min(min(m, n) for m, n in shapes)


def normalized(values: dict[str, Any], name: str) -> dict[str, Any]:
    """``values`` checked by peft and returned as ``to_dict()`` JSON with every default filled in.

    Raises ``ValueError`` naming the bad key or type, or the reason a method is refused.
    """
    from peft import PeftConfig, PeftType
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    if not isinstance(values, dict):
        raise ValueError(f"{name}.peft must be a peft config (a JSON object), not {type(values).__name__}")
    peft_type = str(values.get("peft_type") or "").upper()
    types = [t.value for t in PeftType]
    if peft_type not in PEFT_TYPE_TO_CONFIG_MAPPING:
        raise ValueError(
            f"{name}.peft_type={values.get('peft_type')!r} is not a method of this peft"
            f"{did_you_mean(peft_type, types)} available: {', '.join(types)}"
        )
    if peft_type in REFUSED:
        raise ValueError(f"{name}: peft method {peft_type} is not supported: {REFUSED[peft_type]}")
    config_cls = PEFT_TYPE_TO_CONFIG_MAPPING[peft_type]
    known = {f.name for f in dataclasses.fields(config_cls)}
    for key in values:
        if key not in known:
            raise ValueError(
                f"{name}: {config_cls.__name__} has no field '{key}'{did_you_mean(key, sorted(known))} "
                "fix or remove it"
            )
    try:
        config = PeftConfig.from_peft_type(**{**values, "peft_type": peft_type})
    except (TypeError, ValueError, KeyError) as err:
        raise ValueError(f"{name}: peft rejects the config: {' '.join(str(err).split())}") from None
    if config.is_prompt_learning or peft_type == "ADAPTION_PROMPT":
        raise ValueError(
            f"{name}: peft method {peft_type} is not supported: prompt learning prepends virtual tokens, which "
            "shifts the positions the evaluators score, and it has no merge"
        )
    init = getattr(config, "init_lora_weights", None)
    if isinstance(init, str) and init.lower() in ("eva", "corda"):
        raise ValueError(
            f"{name}: init_lora_weights={init!r} needs a data pass before training that the loop does not run; "
            "use 'pissa', 'olora' or true"
        )
    return json.loads(json.dumps(config.to_dict(), default=_jsonable))


def _jsonable(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if all(isinstance(v, str) for v in value) else list(value)
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


# ---------------------------------------------------------------------------------------------
# Presets and config files: --methods NAME, --methods peft:PATH
# ---------------------------------------------------------------------------------------------
def presets() -> list[str]:
    """The preset names, sorted (the files ``methods/peft_presets/<name>.json``)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def preset_info(name: str) -> dict[str, Any]:
    """A preset's ``peft_bench`` block (description, formula, lr, lr_source, ...)."""
    return dict(_read(PRESET_DIR / f"{name}.json").get(META_KEY, {}))


def from_preset(name: str) -> dict[str, Any]:
    """The config fields of preset ``name`` (a ``PeftMethodConfig`` keyword set)."""
    if name not in presets():
        hint = did_you_mean(name, presets())
        raise UsageError(f"unknown peft preset '{name}'{hint} available: {', '.join(presets())}")
    return _fields(_read(PRESET_DIR / f"{name}.json"), name, f"preset {name}")


def from_path(path: str, reserved: list[str]) -> tuple[str, dict[str, Any]]:
    """``(label, config fields)`` of the peft config at ``path`` (a JSON file, or a folder holding
    ``adapter_config.json``); the label may not be one of ``reserved`` (the built-in methods)."""
    file = Path(path).expanduser()
    if file.is_dir():
        file = file / CONFIG_FILE
    if not file.is_file():
        raise UsageError(
            f"--methods peft:{path}: no such file; pass a peft adapter_config.json or a folder holding one"
        )
    data = _read(file)
    stem = file.parent.name if file.name == CONFIG_FILE else file.stem
    name = str(data.get(META_KEY, {}).get("name") or stem)
    label = re.sub(r"[^a-z0-9_.-]+", "_", name.lower()).strip("_") or "peft"
    if label in reserved:
        raise UsageError(
            f"--methods peft:{path}: its name '{label}' is a built-in method's; set \"{META_KEY}\": "
            '{"name": "..."} in the file, or rename it'
        )
    return label, _fields(data, label, str(file.resolve()))


def _read(file: Path) -> dict[str, Any]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UsageError(f"'{file}' is not a readable JSON peft config ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict) or "peft_type" not in data:
        raise UsageError(f"'{file}' is not a peft config: it has no peft_type; pass an adapter_config.json")
    return data


def _fields(data: dict[str, Any], name: str, source: str) -> dict[str, Any]:
    meta = dict(data.get(META_KEY) or {})
    unknown = sorted(set(meta) - set(META_FIELDS))
    if unknown:
        raise UsageError(
            f"'{source}': unknown {META_KEY} key(s) {', '.join(unknown)}; known: {', '.join(META_FIELDS)}"
        )
    fields: dict[str, Any] = {"name": name, "source": source, "peft": {k: v for k, v in data.items() if k != META_KEY}}
    for key in ("lr", "lr_source", "targets"):
        if key in meta:
            fields[key] = meta[key]
    try:
        PeftMethodConfig(**fields)  # every problem now, as a one-line error, before any model loads
    except ValueError as err:
        raise UsageError(f"{err} ({source})") from None
    return fields


# ---------------------------------------------------------------------------------------------
# The method
# ---------------------------------------------------------------------------------------------
def _adapter_prefix(model: nn.Module) -> str:
    return getattr(getattr(model, "base_model", None), "prefix", "") or "\0"


@METHODS.register
class PeftConfigMethod:
    name = "peft_config"
    config_cls = PeftMethodConfig
    selectable = False
    """Chosen through a preset or ``peft:PATH``, never by this name: not in ``--methods all``."""

    def apply(self, model: nn.Module, cfg: PeftMethodConfig, calibration=None) -> nn.Module:
        from peft import get_peft_model

        freeze(model)  # peft freezes too; done here so the contract does not rest on peft's default
        return get_peft_model(model, cfg.build(model))

    def merge(self, model: nn.Module) -> nn.Module:
        """``merge_and_unload`` where peft can merge the method; else the model as it is (unmerged)."""
        from peft import PeftModel

        if not isinstance(model, PeftModel):
            return model
        try:
            return model.merge_and_unload()
        except NotImplementedError:  # raised by the first layer, before any weight changes
            return model

    def evaluated_as(self, model: nn.Module) -> str:
        """``merged``, or ``unmerged`` when the method has no merge (the record says which)."""
        from peft import PeftModel

        return "unmerged" if isinstance(model, PeftModel) else "merged"

    def count_trainable(self, model: nn.Module) -> int:
        """peft's own count (``get_nb_trainable_parameters``), head included when it trains."""
        counter = getattr(model, "get_nb_trainable_parameters", None)
        return counter()[0] if counter is not None else count_parameters(model, trainable_only=True)

    def optimizer(self, model: nn.Module, cfg: PeftMethodConfig, weight_decay: float) -> torch.optim.Optimizer:
        return adamw(trainable_parameters(model), cfg.lr, weight_decay)

    def save(self, model: nn.Module, path: str) -> None:
        from peft import PeftModel
        from safetensors.torch import save_file

        if not isinstance(model, PeftModel):
            raise UsageError(f"{self.name}.save needs the model returned by apply(), not a {type(model).__name__}")
        model.save_pretrained(path)  # adapter_config.json + adapter_model.safetensors
        prefix = _adapter_prefix(model)
        trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad and prefix not in n]
        extra = {n: p.detach().contiguous() for n, p in trained}
        if extra:  # a trained head (peft would drop it)
            save_file(extra, str(Path(path) / EXTRA_FILE))

    def load(self, model: nn.Module, path: str) -> nn.Module:
        """The adapter at ``path`` on ``model`` (a fresh base), for inference: nothing trainable."""
        from peft import PeftModel
        from safetensors.torch import load_file

        peft_model = PeftModel.from_pretrained(model, path)
        extra_file = Path(path) / EXTRA_FILE
        if extra_file.exists():
            result = peft_model.load_state_dict(load_file(str(extra_file)), strict=False)
            if result.unexpected_keys:
                raise UsageError(
                    f"'{extra_file}' has parameters that {type(model).__name__} lacks: "
                    f"{', '.join(result.unexpected_keys[:5])}; load it onto the base model it was trained on"
                )
        return peft_model
