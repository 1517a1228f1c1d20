"""Safety: no pickle loading (``torch.load`` only with ``weights_only=True``), no remote code
unless the user passes ``--trust-remote-code``, and adapters written and read as safetensors.

The source checks parse the code (``ast``), so comments and strings do not count and a call
split over lines does.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
import torch

import methods
from bench import models, plan, skeleton
from bench.cli import build_parser
from bench.config import budget_for
from bench.models import tiny_llama
from bench.spec import JobSpec

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for pkg in ("bench", "methods", "tasks") for p in (ROOT / pkg).rglob("*.py"))
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Call):
            yield node


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else "?"


def keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def test_sources_found():
    assert len(SOURCES) > 20 and ROOT / "bench" / "runner.py" in SOURCES


def test_torch_load_only_with_weights_only():
    bad = []
    for path in SOURCES:
        for call in calls(path):
            name = dotted(call.func)
            if name in ("torch.load", "torch.serialization.load") and not is_true(keyword(call, "weights_only")):
                bad.append(f"{path.relative_to(ROOT)}:{call.lineno}: {name} without weights_only=True")
            if name in ("pickle.load", "pickle.loads", "dill.load", "cloudpickle.load", "joblib.load"):
                bad.append(f"{path.relative_to(ROOT)}:{call.lineno}: {name}")
            if name in ("np.load", "numpy.load") and is_true(keyword(call, "allow_pickle")):
                bad.append(f"{path.relative_to(ROOT)}:{call.lineno}: {name}(allow_pickle=True)")
    assert not bad, "\n".join(bad)


def test_remote_code_is_never_trusted_by_the_code_itself():
    bad = [
        f"{path.relative_to(ROOT)}:{call.lineno}"
        for path in SOURCES
        for call in calls(path)
        if isinstance(keyword(call, "trust_remote_code"), ast.Constant) and keyword(call, "trust_remote_code").value
    ]
    assert not bad, f"trust_remote_code set to a true constant at {', '.join(bad)}"


def test_remote_code_is_off_unless_the_user_passes_it():
    parser = build_parser()
    assert parser.parse_args(["run"]).trust_remote_code is False
    assert parser.parse_args(["run", "--trust-remote-code"]).trust_remote_code is True
    assert JobSpec.__dataclass_fields__["trust_remote_code"].default is False
    for fn in (models.load, plan.RunRequest, skeleton.model_skeleton):
        assert inspect.signature(fn).parameters["trust_remote_code"].default is False, fn.__name__


@pytest.mark.parametrize("trust", [False, True])
def test_the_flag_reaches_every_job(trust, tmp_path):
    request = plan.RunRequest(
        methods="lora",
        tasks="toy",
        budget=budget_for("smoke"),
        preset="smoke",
        smoke=True,
        output_dir=str(tmp_path),
        threads=1,
        device="cpu",
        trust_remote_code=trust,
    )
    jobs = plan.plan(request)
    assert jobs and all(job.trust_remote_code is trust for job in jobs)


@pytest.mark.parametrize("name", methods.adapters())
def test_adapters_are_safetensors_and_load_without_pickle(name, tmp_path, monkeypatch):
    from safetensors import safe_open

    method = methods.get(name)
    cfg = method.config_cls()
    model = method.apply(tiny_llama(0), cfg)
    ids = torch.randint(5, 100, (2, 12))
    model(input_ids=ids, labels=ids).loss.backward()  # one step: a trained adapter, not zeros
    method.optimizer(model, cfg, 0.0).step()
    method.save(model, str(tmp_path))
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    tensors = [p for p in files if p.suffix == ".safetensors"]
    assert tensors, f"{name} saved no .safetensors file: {files}"
    assert not [p for p in files if p.suffix in PICKLE_SUFFIXES], files
    for path in tensors:
        with safe_open(str(path), framework="pt") as fh:
            assert list(fh.keys())

    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load called while loading an adapter")

    monkeypatch.setattr(torch, "load", no_pickle)
    loaded = method.load(tiny_llama(0), str(tmp_path))
    merged = method.merge(loaded)
    reference = method.merge(model)
    for (n, a), (_, b) in zip(merged.state_dict().items(), reference.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=n)
    base = tiny_llama(0).state_dict()
    assert any(not torch.equal(merged.state_dict()[n], base[n]) for n in base)  # the adapter did something
