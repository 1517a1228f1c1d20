"""CLI behaviour: listing, and one-line errors with exit code 2 before any model loads."""

from __future__ import annotations

import pytest

import methods
from bench.cli import main

FIVE_METHODS = {"neuroada", "lora", "dora", "masked_sparse", "full_ft"}


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse exits on its own usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_ls_lists_the_five_methods(capsys):
    code, out, _ = run_cli(capsys, "ls", "methods")
    assert code == 0
    listed = {line.split()[0] for line in out.splitlines()[1:] if line.strip()}
    assert FIVE_METHODS <= listed
    assert set(methods.names()) == listed


def test_ls_all_sections(capsys):
    code, out, _ = run_cli(capsys, "ls")
    assert code == 0
    for section in ("methods:", "tasks:", "suites:", "presets:", "models:"):
        assert section in out
    assert "toy_sum" in out and "smoke" in out and "smollm2-135m" in out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["--methods", "neuroadaa", "--tasks", "toy"],
            "unknown method 'neuroadaa'; did you mean 'neuroada'? available:",
        ),
        (["--methods", "lora", "--tasks", "toy_summ"], "unknown task 'toy_summ'; did you mean 'toy_sum'? available:"),
        (["--methods", "lora,,neuroada", "--tasks", "toy"], "--methods 'lora,,neuroada' is not a comma list"),
        (["--methods", "lora", "--tasks", "toy", "--seeds", "0,x"], "--seeds '0,x' must be a comma list"),
        (["--methods", "lora", "--tasks", "toy", "--seeds", "1,1"], "repeats a value"),
        (["--methods", "lora", "--tasks", "toy", "--preset", "smok"], "unknown preset 'smok'; did you mean 'smoke'?"),
        (["--methods", "lora", "--tasks", "toy", "--set", "lora.rank=4"], "lora has no setting 'rank'"),
        (["--methods", "lora", "--tasks", "toy", "--set", "lora.r=four"], "lora.r='four' must be of type int"),
        (
            ["--methods", "lora", "--tasks", "toy", "--set", "neuroada.k=2"],
            "--set names method(s) not in --methods: neuroada",
        ),
        (["--methods", "lora", "--tasks", "toy", "--set", "bad"], "--set 'bad' must look like METHOD.FIELD=VALUE"),
        (["--methods", "neuroada", "--tasks", "toy", "--set", "neuroada.k=0"], "k"),
        (["--methods", "lora", "--tasks", "toy", "--model", "no-such-model"], "unknown model 'no-such-model'"),
        (
            ["--methods", "lora", "--tasks", "toy", "--batch-size", "6", "--micro-batch-size", "4"],
            "must be a multiple of",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, tmp_path, argv, expected):
    code, _, err = run_cli(capsys, "run", "--output-dir", str(tmp_path / "runs"), *argv)
    assert code == 2
    assert expected in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not list((tmp_path / "runs").glob("*.json"))  # nothing ran


@pytest.mark.parametrize("flag", ["--max-steps", "--limit", "--batch-size", "--threads"])
@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_sizes_must_be_positive_integers(capsys, tmp_path, flag, value):
    code, _, err = run_cli(
        capsys, "run", "--methods", "lora", "--tasks", "toy", "--output-dir", str(tmp_path), flag, value
    )
    assert code == 2
    assert f"{flag} '{value}' must be a positive integer" in err


def test_missing_data_dir_files(capsys, tmp_path):
    code, _, err = run_cli(
        capsys,
        "run",
        "--methods",
        "lora",
        "--tasks",
        "glue_sst2",
        "--data-dir",
        str(tmp_path),
        "--output-dir",
        str(tmp_path / "o"),
    )
    assert code == 2
    assert "has no eval file for task 'glue_sst2'" in err


def test_data_dir_not_a_folder(capsys, tmp_path):
    code, _, err = run_cli(
        capsys,
        "run",
        "--methods",
        "lora",
        "--tasks",
        "toy",
        "--data-dir",
        str(tmp_path / "nope"),
        "--output-dir",
        str(tmp_path / "o"),
    )
    assert code == 2 and "is not a folder" in err


def test_debug_shows_traceback(tmp_path):
    with pytest.raises(ValueError, match="unknown method"):
        main(["--debug", "run", "--methods", "nope", "--tasks", "toy", "--output-dir", str(tmp_path)])
