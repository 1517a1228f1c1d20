"""``python -m bench run``: the flags and their defaults, the rerun command kept in records
($BENCH_DATA_DIR and the CI thread default spelled out), the output folder check, and the exit
code from the jobs' statuses. Whole sweeps run in ``test_e2e``; bad input in ``test_cli``."""

from __future__ import annotations

import signal
import sys
from types import SimpleNamespace

import pytest

from bench import executors, report
from bench.cli import build_parser
from bench.commands import run
from bench.errors import UsageError

ARGV = ["run", "--methods", "lora", "--tasks", "toy_sum"]


class Planned(Exception):
    """Raised instead of planning: carries the request ``run.main`` built."""


@pytest.fixture(autouse=True)
def _keep_sigterm():
    handler = signal.getsignal(signal.SIGTERM)  # run.main installs its own
    yield
    signal.signal(signal.SIGTERM, handler)


@pytest.fixture
def request_of(monkeypatch):
    """``request_of(argv, env)``: the RunRequest ``run.main`` plans for ``python -m bench <argv>``."""

    def plan(request):
        raise Planned(request)

    def capture(argv: list[str], **env: str):
        for name in ("CI", "BENCH_DATA_DIR"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr("bench.plan.plan", plan)
        monkeypatch.setattr(sys, "argv", ["/site/bench/__main__.py", *argv])
        args = build_parser().parse_args(argv)  # after the env: defaults are read when flags are added
        with pytest.raises(Planned) as planned:
            run.main(args)
        return planned.value.args[0]

    return capture


def test_defaults():
    args = build_parser().parse_args(["run"])
    assert (args.methods, args.tasks, args.seeds, args.preset) == (
        "base,neuroada,lora",
        "glue_sst2",
        "0",
        "demo",
    )
    assert (args.output_dir, args.device, args.threads, args.executor) == ("results/runs", "auto", None, "local")
    assert (args.evaluator, args.set, args.model, args.match_params) == ("native", [], None, None)
    assert (args.tune_lr, args.lr_grid, args.val_size) == (False, 5, 200)
    assert not (args.force or args.rerun_failed or args.trust_remote_code or args.train_per_task or args.no_progress)


def test_the_ci_thread_default_and_data_dir_are_spelled_out(request_of, tmp_path):
    out = tmp_path / "runs"
    argv = [*ARGV, "--output-dir", str(out)]
    req = request_of(argv, CI="1", BENCH_DATA_DIR=str(tmp_path))
    assert req.threads == 1 and req.data_dir == str(tmp_path)
    assert req.command == f"python -m bench run --methods lora --tasks toy_sum --output-dir {out} " + (
        f"--data-dir {tmp_path.resolve()} --threads 1"
    )


def test_without_ci_threads_are_left_to_torch(request_of, tmp_path):
    req = request_of([*ARGV, "--output-dir", str(tmp_path)])
    assert req.threads is None and req.data_dir is None
    assert req.command == f"python -m bench run --methods lora --tasks toy_sum --output-dir {tmp_path}"


def test_flags_given_are_not_repeated(request_of, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.chdir(tmp_path)
    argv = [*ARGV, "--threads", "3", "--data-dir=data", "--output-dir", "o"]
    req = request_of(argv, CI="1", BENCH_DATA_DIR="/elsewhere")
    assert req.threads == 3 and req.data_dir == "data"
    assert (
        req.command == "python -m bench run --methods lora --tasks toy_sum --threads 3 --data-dir=data --output-dir o"
    )


def test_the_request_carries_the_flags(request_of, tmp_path):
    argv = [*ARGV, "--seeds", "0,2", "--preset", "smoke", "--max-steps", "3", "--set", "lora.r=4"]
    req = request_of([*argv, "--output-dir", str(tmp_path), "--no-progress", "--train-per-task"])
    assert (req.methods, req.tasks, req.seeds, req.preset) == ("lora", "toy_sum", (0, 2), "smoke")
    assert req.overrides == {"lora": {"r": "4"}} and req.smoke is True
    assert req.progress is False and req.train_per_task is True and req.output_dir == str(tmp_path)
    import tasks

    budget = req.budget_of(tasks.get("toy_sum"))
    assert budget.max_steps == 3 and budget.batch_size == 2  # the preset's, with the override
    assert " --set lora.r=4 " in req.command


def test_a_limit_marks_the_run_smoke(request_of, tmp_path):
    assert request_of([*ARGV, "--output-dir", str(tmp_path), "--limit", "4"]).smoke is True
    assert request_of([*ARGV, "--output-dir", str(tmp_path)]).smoke is False  # demo preset, full eval


def test_rerun_command_quotes_arguments(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "argv", ["bench", "run", "--output-dir", str(tmp_path / "with space")])
    args = SimpleNamespace(data_dir=None)
    assert run.rerun_command(args, None) == f"python -m bench run --output-dir '{tmp_path}/with space'"
    assert run.rerun_command(args, 2).endswith(" --threads 2")


# ---------------------------------------------------------------------------------------------
# check_writable
# ---------------------------------------------------------------------------------------------
def test_check_writable_creates_the_folder(tmp_path):
    out = tmp_path / "a" / "b"
    run.check_writable(out)
    assert out.is_dir() and list(out.iterdir()) == []  # the probe file is gone


def test_an_output_dir_that_cannot_be_created_is_named(tmp_path):
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "runs"
    with pytest.raises(UsageError) as err:
        run.check_writable(out)
    assert str(err.value) == f"--output-dir '{out}' cannot be created (Not a directory); choose a writable folder"


def test_an_output_dir_that_is_a_file_is_named(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError) as err:
        run.check_writable(tmp_path / "file")
    assert str(err.value) == f"--output-dir '{tmp_path / 'file'}' is not a folder; choose a folder"


def test_an_unwritable_output_dir_is_named(tmp_path, monkeypatch):
    # a real write decides (os.access misses read-only mounts and root's view); simulated here
    def refuse(**kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(run.tempfile, "TemporaryFile", refuse)
    with pytest.raises(UsageError) as err:
        run.check_writable(tmp_path)
    assert str(err.value) == f"--output-dir '{tmp_path}' is not writable (Permission denied); choose a writable folder"


def test_an_unreadable_output_dir_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(run.os, "access", lambda path, mode: False)
    with pytest.raises(UsageError) as err:
        run.check_writable(tmp_path)
    assert str(err.value) == (
        f"--output-dir '{tmp_path}' is not readable (resuming reads its records); choose a readable folder"
    )


def test_main_checks_the_output_dir_before_planning(tmp_path, monkeypatch, capsys):
    from bench.cli import main

    def plan(request):
        raise AssertionError("planned")

    monkeypatch.setattr("bench.plan.plan", plan)
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "runs"
    assert main([*ARGV, "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --output-dir '{out}' cannot be created (Not a directory); choose a writable folder\n"


# ---------------------------------------------------------------------------------------------
# Exit code
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        (["ok", "ok"], 0),
        (["ok", "skipped (ok)"], 0),
        (["ok", "failed"], 1),
        (["diverged"], 1),
        (["skipped (failed)"], 1),  # a resumed sweep with failures still fails
        (["failed", "canceled"], 130),
    ],
)
def test_the_exit_code_follows_the_statuses(monkeypatch, tmp_path, capsys, statuses, code):
    monkeypatch.setattr("bench.plan.plan", lambda request: [SimpleNamespace(record_paths=[]) for _ in statuses])
    monkeypatch.setattr(executors, "run", lambda executor, jobs, **kw: list(zip(jobs, statuses, strict=True)))
    monkeypatch.setattr(report, "frame_of", lambda recs: recs)
    monkeypatch.setattr(report, "summary_table", lambda frame: "TABLE")
    args = build_parser().parse_args([*ARGV, "--output-dir", str(tmp_path)])
    assert run.main(args) == code
    out, err = capsys.readouterr()
    assert out == "TABLE\n" and f"{len(statuses)} job(s) -> {tmp_path}/ (job logs in {tmp_path}/logs/)" in err


def test_epochs_and_protocol_flags_reach_the_budget(request_of, tmp_path):
    req = request_of([*ARGV, "--output-dir", str(tmp_path), "--epochs", "2", "--protocol", "loreft"])
    import tasks

    budget = req.budget_of(tasks.get("boolq"))
    assert (budget.epochs, budget.protocol) == (2.0, "loreft")
    assert req.budget_overrides == {"epochs": 2.0, "protocol": "loreft"}  # a preset's recipe leaves them


def test_max_steps_under_the_paper_preset_counts_steps(request_of, tmp_path):
    req = request_of([*ARGV, "--output-dir", str(tmp_path), "--preset", "paper", "--max-steps", "5"])
    import tasks

    budget = req.budget_of(tasks.get("boolq"))
    assert (budget.max_steps, budget.epochs, budget.protocol) == (5, None, "loreft")
