"""``python -m bench doctor``: which checks must pass for what the flags ask, the printed lines and
verdict, and the exit code; the checks themselves are stubbed here (tests/bench/test_checks.py)."""

from __future__ import annotations

import pytest
import torch

from bench import checks, gpu_checks
from bench.checks import Check
from bench.cli import main

CPU_MACHINE = [
    Check("torch", "ok", "2.13.0+cpu (CPU-only build)"),
    Check("cuda", "missing", "CPU-only build", "install CUDA torch"),
    Check("gpu", "missing", "no GPU visible to torch", "see the cuda line"),
    Check("nvml", "missing", "no driver", "a driver"),
    Check("models", "ok", "smollm2-135m, minilm-l6"),
    Check("data", "ok", "../shared/data: 23 of 23 tasks laid out"),
    Check("ray", "missing", "not installed (for --executor ray)", "pip install ray"),
]
GPU_MACHINE = [Check(c.name, "ok", c.detail) for c in CPU_MACHINE]


def doctor(capsys, monkeypatch, machine, *argv, gpu=None) -> tuple[int, str, str]:
    monkeypatch.setattr(checks, "environment_checks", lambda data_dir: list(machine))
    monkeypatch.setattr(gpu_checks, "gpu_checks", lambda device: pytest.fail("GPU checks ran") if gpu is None else gpu)
    try:
        code = main(["doctor", *argv])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_cpu_machine_is_ready_for_cpu_runs(capsys, monkeypatch):
    code, out, _ = doctor(capsys, monkeypatch, CPU_MACHINE)
    assert code == 0
    assert out.splitlines() == [
        "peft-bench doctor: what a run needs on this machine (* = required for what you asked)",
        "* ok       torch          2.13.0+cpu (CPU-only build)",
        "  missing  cuda           CPU-only build; fix: install CUDA torch",
        "  missing  gpu            no GPU visible to torch; fix: see the cuda line",
        "  missing  nvml           no driver; fix: a driver",
        "* ok       models         smollm2-135m, minilm-l6",
        "* ok       data           ../shared/data: 23 of 23 tasks laid out",
        "  missing  ray            not installed (for --executor ray); fix: pip install ray",
        "ready for CPU or GPU runs (optional, not there: cuda, gpu, nvml, ray)",
    ]


@pytest.mark.parametrize(
    ("argv", "verdict"),
    [
        (["--device", "cuda"], "not ready for CUDA runs: cuda, gpu, nvml (see the fixes above)"),
        (["--executor", "ray"], "not ready for CPU or GPU runs with --executor ray: ray (see the fixes above)"),
        (["--gpu"], "not ready for GPU checks: cuda, gpu, nvml (see the fixes above)"),
    ],
)
def test_what_was_asked_makes_a_check_required(capsys, monkeypatch, argv, verdict):
    code, out, _ = doctor(capsys, monkeypatch, CPU_MACHINE, *argv)
    assert (code, out.splitlines()[-1]) == (1, verdict)
    if "--gpu" in argv:
        assert "GPU checks (--gpu): not run, since CUDA is missing (see above)" in out


def test_missing_data_fails_a_plain_doctor(capsys, monkeypatch):
    machine = [*CPU_MACHINE[:5], Check("data", "missing", "no --data-dir, the hub is unreachable", "--data-dir")]
    code, out, _ = doctor(capsys, monkeypatch, machine)
    assert (code, out.splitlines()[-1]) == (1, "not ready for CPU or GPU runs: data (see the fixes above)")


def test_gpu_checks_that_ran_must_pass_and_missing_ones_are_optional(capsys, monkeypatch):
    fine = [Check("neuroada fp32", "ok", "equal"), Check("ddp", "missing", "1 GPU(s)")]
    code, out, _ = doctor(capsys, monkeypatch, GPU_MACHINE, "--gpu", gpu=fine)
    assert code == 0
    assert out.splitlines()[-4:] == [
        "GPU checks (--gpu):",
        "* ok       neuroada fp32  equal",
        "  missing  ddp            1 GPU(s)",
        "ready for GPU checks (optional, not there: ddp)",
    ]
    broken = [Check("neuroada fp32", "failed", "value gradient differs", "report it")]
    code, out, _ = doctor(capsys, monkeypatch, GPU_MACHINE, "--gpu", gpu=broken)
    assert (code, out.splitlines()[-1]) == (1, "not ready for GPU checks: neuroada fp32 (see the fixes above)")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--device", "gpu0"], "error: --device 'gpu0' is not a device name; use auto, cpu, cuda or cuda:N"),
        (["--gpu", "--device", "cpu"], "error: --gpu checks CUDA; drop --device cpu"),
    ],
)
def test_bad_flags_are_usage_errors(capsys, monkeypatch, argv, message):
    code, out, err = doctor(capsys, monkeypatch, CPU_MACHINE, *argv)
    assert (code, out, err.strip()) == (2, "", message)


def test_doctor_runs_on_this_machine(capsys, tmp_path):
    code = main(["doctor", "--data-dir", str(tmp_path)])  # an empty data dir: data fails
    out = capsys.readouterr().out
    lines = {line[2:].split()[1]: line[2:].split()[0] for line in out.splitlines()[1:-1]}
    assert lines["torch"] == "ok" and lines["data"] == "failed"
    assert lines["cuda"] == ("ok" if torch.cuda.is_available() else "missing")
    assert (code, out.splitlines()[-1]) == (1, "not ready for CPU or GPU runs: data (see the fixes above)")


def test_gpu_alone_needs_no_data_but_a_planned_cuda_run_does(capsys, monkeypatch):
    machine = [*GPU_MACHINE[:5], Check("data", "missing", "no --data-dir, the hub is unreachable", "--data-dir")]
    fine = [Check("neuroada fp32", "ok", "equal")]
    code, out, _ = doctor(capsys, monkeypatch, machine, "--gpu", gpu=fine)
    assert (code, out.splitlines()[-1]) == (0, "ready for GPU checks (optional, not there: data)")
    code, out, _ = doctor(capsys, monkeypatch, machine, "--gpu", "--device", "cuda", gpu=fine)
    assert (code, out.splitlines()[-1]) == (1, "not ready for GPU checks: data (see the fixes above)")
