"""Every user-facing input, wrong: a one-line error naming the value and the fix, exit code 2,
no traceback, and nothing run. Extends tests/bench/test_cli.py (names, --set, sizes, --data-dir).

Checked at plan time, before any model loads: method targets and ``k`` on a weightless skeleton
of each model (``skeleton.model_skeleton``), every data file line by line, existing records.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

import bench.commands.run  # noqa: F401  (imported before a fork, see as_nobody)
from bench import config, executor_args, executors, plan, records, report, skeleton  # noqa: F401  (likewise)
from bench.cli import main

NOBODY = 65534


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    _, err = capsys.readouterr()
    return code, err


def assert_one_line_error(code: int, err: str, *expected: str) -> None:
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for text in expected:
        assert text in err, err


def bench_run(capsys, out: Path, *argv: str) -> tuple[int, str]:
    return run_cli(capsys, "run", "--output-dir", str(out), "--no-progress", *argv)


# ---------------------------------------------------------------------------------------------
# Lists, seeds, sizes (names and most sizes: test_cli.py)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--methods", "lora", "--tasks", "toy,"], ["--tasks 'toy,' is not a comma list"]),
        (["--methods", ",lora", "--tasks", "toy"], ["--methods ',lora' is not a comma list"]),
        (["--methods", "", "--tasks", "toy"], ["--methods '' is not a comma list"]),
        (["--methods", "lora", "--tasks", "toy", "--seeds", "0,,1"], ["--seeds '0,,1'", "e.g. --seeds 0,1,2"]),
        (["--methods", "lora", "--tasks", "toy", "--seeds", "-1"], ["--seeds '-1'", "non-negative integers"]),
        (["--methods", "lora", "--tasks", "toy", "--seeds", "1.5"], ["--seeds '1.5'"]),
        (["--methods", "lora", "--tasks", "toy", "--seeds", ""], ["--seeds ''"]),
        (
            ["--methods", "lora", "--tasks", "toy", "--max-length", "0"],
            ["--max-length '0' must be a positive integer"],
        ),
        (["--methods", "lora", "--tasks", "toy", "--eval-batch-size", "-2"], ["--eval-batch-size '-2'"]),
        (["--methods", "lora", "--tasks", "toy", "--micro-batch-size", "1e3"], ["--micro-batch-size '1e3'"]),
        (["--methods", "lora", "--tasks", "toy", "--device", "gpu0"], ["--device 'gpu0' is not a device name"]),
        (["--methods", "lora", "--tasks", "toy", "--evaluator", "lmeval"], ["--evaluator", "lmeval"]),
    ],
)
def test_lists_seeds_and_sizes(capsys, tmp_path, argv, expected):
    code, err = bench_run(capsys, tmp_path / "runs", *argv)
    assert_one_line_error(code, err, *expected)
    assert not list((tmp_path / "runs").glob("*.json"))


# ---------------------------------------------------------------------------------------------
# Method settings that only a model can refute: k and target modules, on a weightless skeleton
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--methods", "masked_sparse", "--set", "masked_sparse.k=-1"], ["masked_sparse.k=-1 must be a positive"]),
        (["--methods", "neuroada", "--set", "neuroada.k=0"], ["neuroada.k=0 must be a positive integer"]),
        (
            # tiny-llama's smallest target input is 64 (q/k/v/o/gate/up); down_proj's is 128
            ["--methods", "neuroada", "--tasks", "toy_sum", "--set", "neuroada.k=64"],
            ["neuroada.k=64 must be smaller than the input size 64", "in model 'tiny-llama'", "neuroada.k <= 63"],
        ),
        (
            ["--methods", "masked_sparse", "--tasks", "toy_cls", "--set", "masked_sparse.k=1000"],
            ["masked_sparse.k=1000 must be smaller than the input size 64", "'tiny-bert'", "masked_sparse.k <= 63"],
        ),
        (
            ["--methods", "lora", "--tasks", "toy_sum", "--set", "lora.target_modules=q_proj,qproj"],
            ["lora.target_modules", "target module 'qproj' matches no module of LlamaForCausalLM", "q_proj, k_proj"],
        ),
        (
            ["--methods", "dora", "--tasks", "toy_cls", "--set", "dora.target_modules=q_proj"],
            ["dora.target_modules on model 'tiny-bert'", "'q_proj' matches no module", "attention.self.query"],
        ),
        (
            ["--methods", "neuroada", "--tasks", "toy_sum", "--set", "neuroada.target_modules=lm_head"],
            ["neuroada.target_modules", "'lm_head' matches no module"],  # heads are never adapted
        ),
        (
            ["--methods", "neuroada", "--tasks", "toy_sum", "--set", "neuroada.compact_inputs=downproj"],
            ["neuroada.compact_inputs: target module 'downproj' matches no module", "(model 'tiny-llama')"],
        ),
        (
            [
                "--methods",
                "neuroada",
                "--tasks",
                "toy_sum",
                "--set",
                "neuroada.target_modules=q_proj",
                "--set",
                "neuroada.compact_inputs=down_proj",
            ],
            ["compact_inputs=('down_proj',) names no layer that NeuroAda adapts", "target_modules"],
        ),
        (
            ["--methods", "lora", "--tasks", "toy_cls", "--model", "tiny-llama"],
            ["model 'tiny-llama' is a causal LM; use 'tiny-bert'"],
        ),
    ],
)
def test_method_settings_checked_on_the_model_skeleton(capsys, tmp_path, argv, expected):
    if "--tasks" not in argv:
        argv = [*argv, "--tasks", "toy"]
    code, err = bench_run(capsys, tmp_path / "runs", *argv)
    assert_one_line_error(code, err, *expected)
    assert not list((tmp_path / "runs").glob("*.json"))


# ---------------------------------------------------------------------------------------------
# peft configs as methods: --methods NAME (a preset) and --methods peft:PATH
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("peft_json", "argv", "expected"),
    [
        (None, ["--methods", "peft:{dir}/missing.json"], ["missing.json: no such file", "adapter_config.json"]),
        (
            {"peft_type": "SHIRA", "task_type": "SEQ_CLS"},
            ["--methods", "peft:{dir}/mine.json", "--tasks", "toy_sum"],
            ["mine: the peft config's task_type is SEQ_CLS", "set task_type to CAUSAL_LM or null"],
        ),
        (
            {"peft_type": "ADALORA", "total_step": 10},
            ["--methods", "peft:{dir}/mine.json"],
            ["mine: peft method ADALORA is not supported", "update_and_allocate(step)", "does not call"],
        ),
        (
            {"peft_type": "PREFIX_TUNING", "num_virtual_tokens": 4},
            ["--methods", "peft:{dir}/mine.json"],
            ["PREFIX_TUNING is not supported: prompt learning"],
        ),
        (None, ["--methods", "neuroada,shria"], ["unknown method 'shria'; did you mean 'shira'?", "peft:PATH"]),
        (None, ["--methods", "ia3", "--set", "ia3.feedforward_module=x"], ["did you mean 'feedforward_modules'"]),
        (
            # tiny-llama's k/v projections are 64 x 32: r (64 + 32) entries fit for r <= 21
            None,
            ["--methods", "shira", "--tasks", "toy_sum", "--set", "shira.r=22"],
            ["shira.r=22 does not fit every target layer; use shira.r <= 21 in model 'tiny-llama'"],
        ),
        (
            None,
            ["--methods", "shira", "--tasks", "toy_sum", "--set", 'shira.target_modules=["qproj"]'],
            ["shira.target_modules on model 'tiny-llama'", "'qproj' matches no module"],
        ),
    ],
)
def test_peft_configs_are_checked_before_anything_runs(capsys, tmp_path, peft_json, argv, expected):
    if peft_json is not None:
        (tmp_path / "mine.json").write_text(json.dumps(peft_json))
    argv = [a.replace("{dir}", str(tmp_path)) for a in argv]
    if "--tasks" not in argv:
        argv = [*argv, "--tasks", "toy"]
    code, err = bench_run(capsys, tmp_path / "runs", *argv)
    assert_one_line_error(code, err, *expected)
    assert not list((tmp_path / "runs").glob("*.json"))


def test_skeleton_has_no_weights_and_valid_settings_pass():
    import methods

    model = skeleton.model_skeleton("minilm-l6", "sequence_classification", 3)
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert model.config.num_labels == 3
    for name in methods.names():
        cfg = methods.get(name).config_cls()
        assert skeleton.validate_on_skeleton(model, cfg, method=name, model="minilm-l6") == []


# ---------------------------------------------------------------------------------------------
# Data files: which file, which line
# ---------------------------------------------------------------------------------------------
GOOD_ROW = '{"sentence": "a fine film", "label": 1}\n'


def sst2_dir(tmp_path: Path, *, train: str, eval: str = GOOD_ROW * 3) -> Path:
    data = tmp_path / "data"
    (data / "glue_sst2").mkdir(parents=True)
    (data / "glue_sst2" / "train.jsonl").write_text(train)
    (data / "glue_sst2" / "eval.jsonl").write_text(eval)
    return data


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"train": GOOD_ROW * 2 + '{"sentence": "cut off", "lab\n' + GOOD_ROW},
            ["glue_sst2/train.jsonl:3: not valid JSON", "fix or remove the line"],
        ),
        (
            {"train": GOOD_ROW, "eval": GOOD_ROW + '{"sentence": "no label"}\n'},
            ["glue_sst2/eval.jsonl:2: missing field(s) label", "each row needs sentence, label"],
        ),
        ({"train": GOOD_ROW + "[1, 2]\n"}, ["glue_sst2/train.jsonl:2: expected a JSON object"]),
        ({"train": "\n"}, ["glue_sst2/train.jsonl' is empty"]),
    ],
)
def test_broken_jsonl_names_file_and_line(capsys, tmp_path, files, expected):
    data = sst2_dir(tmp_path, **files)
    code, err = bench_run(
        capsys, tmp_path / "runs", "--methods", "lora", "--tasks", "glue_sst2", "--data-dir", str(data)
    )
    assert_one_line_error(code, err, *expected)


# ---------------------------------------------------------------------------------------------
# Model folders
# ---------------------------------------------------------------------------------------------
def tiny_config_folder(tmp_path: Path) -> Path:
    from bench.models import tiny_llama

    folder = tmp_path / "model"
    tiny_llama().config.save_pretrained(folder)  # config.json only
    return folder


def test_model_folder_without_weights(capsys, tmp_path):
    folder = tiny_config_folder(tmp_path)
    code, err = bench_run(capsys, tmp_path / "runs", "--methods", "lora", "--tasks", "toy_sum", "--model", str(folder))
    assert_one_line_error(code, err, f"model folder '{folder}' has no weights", "save_pretrained")


def test_model_folder_without_config(capsys, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"")
    code, err = bench_run(capsys, tmp_path / "runs", "--methods", "lora", "--tasks", "toy_sum", "--model", str(folder))
    assert_one_line_error(code, err, f"model folder '{folder}' has no config.json")


def test_model_folder_with_a_broken_config(capsys, tmp_path):
    folder = tiny_config_folder(tmp_path)
    (folder / "config.json").write_text('{"model_type": "llama",')
    (folder / "model.safetensors").write_bytes(b"")
    code, err = bench_run(capsys, tmp_path / "runs", "--methods", "lora", "--tasks", "toy_sum", "--model", str(folder))
    assert_one_line_error(code, err, f"model folder '{folder}' has an unreadable config.json")


# ---------------------------------------------------------------------------------------------
# Output folder and existing records
# ---------------------------------------------------------------------------------------------
def test_output_dir_is_a_file(capsys, tmp_path):
    target = tmp_path / "runs"
    target.write_text("not a folder")
    code, err = bench_run(capsys, target, "--methods", "lora", "--tasks", "toy")
    assert_one_line_error(code, err, f"--output-dir '{target}'", "choose a")


def as_nobody(argv: list[str]) -> tuple[int, str]:
    """``main(argv)`` in a forked child running as user ``nobody`` (root is never denied access).

    The child runs already-imported code only (the modules ``bench.commands.run`` imports are imported at
    the top of this file), so that it needs to read nothing that root's files hide from it.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read)
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            sys.stdout, sys.stderr = io.StringIO(), io.StringIO()
            try:
                code = main(argv)
            except SystemExit as exc:
                code = exc.code
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                code, sys.stderr = 99, io.StringIO(repr(exc))
            os.write(write, json.dumps([code, sys.stderr.getvalue()]).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as fh:
        payload = fh.read()
    os.waitpid(pid, 0)
    code, err = json.loads(payload)
    return code, err


@pytest.mark.parametrize(
    ("mode", "expected"),
    [(0o555, "is not writable (Permission denied)"), (0o333, "is not readable (resuming reads its records)")],
    ids=["read-only", "unreadable"],
)
def test_output_dir_not_readable_or_writable(capsys, mode, expected):
    # A folder that user nobody can reach: pytest's tmp_path is private to root.
    base = Path(tempfile.mkdtemp(prefix="bench-bad-output-"))
    try:
        base.chmod(0o755)
        out = base / "runs"
        out.mkdir()
        out.chmod(mode)
        argv = ["run", "--methods", "lora", "--tasks", "toy", "--output-dir", str(out), "--no-progress"]
        if os.geteuid() == 0:
            code, err = as_nobody(argv)
        else:
            code, err = run_cli(capsys, *argv)
        assert_one_line_error(code, err, f"--output-dir '{out}' {expected}")
        out.chmod(0o755)
        assert not list(out.iterdir())
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_record_from_a_newer_schema_is_not_overwritten(capsys, tmp_path):
    out = tmp_path / "runs"
    out.mkdir()
    newer = out / "lora--toy_sum--seed0.json"
    text = json.dumps({"schema_version": records.SCHEMA_VERSION + 1, "run": {}, "result": {"status": "ok"}})
    newer.write_text(text)
    code, err = bench_run(capsys, out, "--methods", "lora", "--tasks", "toy_sum")
    assert_one_line_error(
        code, err, f"record '{newer}' has schema_version {records.SCHEMA_VERSION + 1}", "upgrade peft-bench"
    )
    assert newer.read_text() == text
    code, err = run_cli(capsys, "report", "--records", str(out), "--no-plots", "--out", str(tmp_path / "rep"))
    assert_one_line_error(code, err, "newer than this peft-bench", "upgrade peft-bench")


def test_report_on_a_missing_folder(capsys, tmp_path):
    code, err = run_cli(capsys, "report", "--records", str(tmp_path / "nope"), "--no-plots")
    assert_one_line_error(code, err, f"records folder '{tmp_path / 'nope'}' does not exist")
