"""The scale-out flags of run: one-line errors for bad combinations, missing extras, SLURM config
files and time formats, validated before anything runs."""

from __future__ import annotations

import pytest

from bench import cli, executor_args
from bench.config import budget_for
from bench.errors import UsageError


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ray-address", "auto"], "--ray-address only apply to --executor ray"),
        (["--executor", "ray", "--slurm-partition", "gpu"], "--slurm-partition only apply to --executor slurm"),
        (["--gpus-per-job", "0", "--device", "cuda"], "--gpus-per-job 0 contradicts --device cuda"),
        (["--gpus-per-job", "3", "--device", "cpu"], "micro-batch size 2 must be a multiple of it"),
        (["--gpus-per-job", "2"], "this machine has 0 GPU(s)"),
        (["--job-timeout", "soon"], "--job-timeout 'soon' must be a positive duration"),
        (["--executor", "slurm", "--slurm-mode", "local", "--slurm-time", "1:2:3:4"], "--slurm-time '1:2:3:4'"),
    ],
)
def test_bad_flags_are_one_line_errors(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.device_count", lambda: 0)
    code = cli.main(["run", "--methods", "lora", "--tasks", "toy_sum", "--preset", "smoke", *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert err.count("\n") == 1


def test_a_missing_extra_says_how_to_install_it(capsys, monkeypatch):
    real = executor_args.importlib.util.find_spec
    monkeypatch.setattr(executor_args.importlib.util, "find_spec", lambda n: None if n == "ray" else real(n))
    code = cli.main(["run", "--methods", "lora", "--tasks", "toy_sum", "--executor", "ray"])
    err = capsys.readouterr().err
    assert code == 2 and "pip install -e '.[ray]'" in err and err.count("\n") == 1


def test_slurm_config_file_and_flags(tmp_path):
    pytest.importorskip("submitit")
    conf = tmp_path / "slurm.toml"
    conf.write_text('slurm_partition = "a100"\ntimeout_min = 60\nslurm_setup = ["module load cuda"]\n')
    args = cli.build_parser().parse_args(
        ["run", "--executor", "slurm", "--slurm-mode", "local", "--slurm-config", str(conf), "--slurm-time", "2:00:00"]
        + ["--slurm-setup", "source .venv/bin/activate", "--output-dir", str(tmp_path)]
    )
    options = executor_args.options_from_args(args, budget_for("smoke"))
    assert options.slurm_parameters == {
        "slurm_partition": "a100",
        "timeout_min": 120,  # the flag wins over the file
        "slurm_setup": ["module load cuda", "source .venv/bin/activate"],
    }
    conf.write_text("slurm_partiton = 'a100'\n")
    with pytest.raises(UsageError, match="submitit rejected the SLURM settings"):
        executor_args.options_from_args(args, budget_for("smoke"))


@pytest.mark.parametrize(
    ("text", "minutes"), [("90", 90), ("30:00", 30), ("2:00:00", 120), ("1-00", 1440), ("1-2:30:01", 1591)]
)
def test_slurm_time_formats(text, minutes):
    assert executor_args.parse_slurm_time(text) == minutes


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400)])
def test_job_timeout_formats(text, seconds):
    assert executor_args.parse_duration(text, "--job-timeout") == seconds
