"""CLI behaviour: the table of commands, flags every long-running command shares, and one-line
errors with exit code 2 before any model loads. Each command's own output is tested with it
(``tests/bench/commands/``, ``test_regress``, ``test_scale``, ``test_micro``)."""

from __future__ import annotations

import importlib

import pytest

from bench.cli import COMMANDS, build_parser, main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse exits on its own usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_every_command_module_has_add_arguments_and_main():
    assert list(COMMANDS) == [
        "run",
        "tune",
        "ls",
        "doctor",
        "report",
        "rerun",
        "regress",
        "scale",
        "evalspeed",
        "micro",
    ]
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        assert callable(getattr(module, "add_arguments", None)), name
        assert callable(getattr(module, "main", None)), name
        assert help_text and "\n" not in help_text
    parser = build_parser()
    required = {"rerun": ["r.json"]}  # its one positional argument
    for name, (module_name, _) in COMMANDS.items():
        assert parser.parse_args([name, *required.get(name, [])]).module == module_name


@pytest.mark.parametrize("command", ["run", "micro", "regress", "scale"])
def test_long_running_commands_accept_no_progress(command):
    parser = build_parser()
    assert parser.parse_args([command, "--no-progress"]).no_progress is True
    assert parser.parse_args([command]).no_progress is False


def test_an_unknown_command_is_exit_2(capsys):
    code, _, err = run_cli(capsys, "rn")
    assert code == 2 and "invalid choice: 'rn'" in err and "Traceback" not in err


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
