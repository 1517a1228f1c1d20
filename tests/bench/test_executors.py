"""Executors on real engines: a Ray local cluster, submitit's LocalExecutor and, where it can
start (root, Debian's slurmctld/slurmd/munge installed), a real single-node SLURM. Each runs a
toy sweep that must give the local executor's records; Ray must also fail fast when jobs ask
for a GPU it does not have (``--device auto`` jobs run on its CPUs instead), and record a job
that overruns ``--job-timeout`` as failed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import executors
from bench.config import budget_for
from bench.plan import RunRequest
from bench.plan import plan as plan_jobs
from bench.spec import JobSpec

ROOT = Path(__file__).resolve().parents[2]
HOOKS = Path(__file__).resolve().parent / "hooks"
TASKS = "toy_sum,toy_cls"  # a generation task (tiny LLaMA) and a classification task (tiny BERT)
SWEEP = ["--methods", "lora", "--tasks", TASKS, "--preset", "smoke", "--device", "cpu", "--threads", "1"]
RECORDS = {f"lora--{t}--seed0.json" for t in TASKS.split(",")}
# What may differ between two runs of the same job: clocks, memory, and the command line.
VOLATILE_RUN = {"started_at", "finished_at", "command"}


def bench(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench", *argv, "--no-progress"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def comparable(path: Path) -> dict:
    rec = json.loads(path.read_text())
    run = {k: v for k, v in rec["run"].items() if k not in VOLATILE_RUN}
    params = {k: rec["cost"].get(k) for k in ("trainable_params", "total_params", "tokens_seen", "head_params")}
    return {"run": run, "result": rec["result"], "params": params, "device": rec["env"]["device"]}


def assert_same_records(got: Path, expected: Path) -> None:
    assert {p.name for p in got.glob("*.json")} == RECORDS
    for name in sorted(RECORDS):
        a, b = comparable(got / name), comparable(expected / name)
        assert a["result"]["status"] == "ok", a["result"].get("error")
        assert a == b, name


@pytest.fixture(scope="module")
def local_records(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local")
    proc = bench("run", *SWEEP, "--output-dir", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


# ---------------------------------------------------------------------------------------------
# Ray: one local cluster (2 CPUs, no GPU) for the module; the CLI connects to it
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_address():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def test_ray_sweep_gives_the_local_records(ray_address, local_records, tmp_path):
    proc = bench("run", *SWEEP, "--output-dir", str(tmp_path), "--executor", "ray", "--ray-address", ray_address)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Ray task(s)" in proc.stderr
    assert_same_records(tmp_path, local_records)


def test_ray_resumes_like_the_local_executor(ray_address, local_records, tmp_path):
    for name in sorted(RECORDS)[:1]:
        shutil.copy(local_records / name, tmp_path / name)
    proc = bench("run", *SWEEP, "--output-dir", str(tmp_path), "--executor", "ray", "--ray-address", ray_address)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("record exists (ok)") == 1
    assert proc.stderr.count("1 Ray task(s)") == 1
    assert_same_records(tmp_path, local_records)


def test_ray_fails_fast_when_jobs_ask_for_a_gpu_it_lacks(ray_address, tmp_path):
    # An explicit --gpus-per-job 1: one GPU per job, which this cluster does not have.
    argv = ["--methods", "lora", "--tasks", "toy_sum", "--preset", "smoke", "--output-dir", str(tmp_path)]
    proc = bench("run", *argv, "--executor", "ray", "--ray-address", ray_address, "--gpus-per-job", "1")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "no node with 1 GPU(s)" in proc.stderr and "would wait forever" in proc.stderr
    assert "run on CPU" not in proc.stderr
    assert not list(tmp_path.glob("*.json"))


def test_ray_runs_device_auto_jobs_on_cpu_without_gpus(ray_address, tmp_path, capsys):
    # --device auto and no --gpus-per-job on a cluster without GPUs: the jobs run on CPU.
    outcomes = executors.run("ray", plan("toy_sum", tmp_path, device="auto"), progress=False)
    assert [status for _, status in outcomes] == ["ok"]
    assert "the Ray cluster (local) has no GPU: the jobs run on CPU (--device auto;" in capsys.readouterr().err
    rec = json.loads((tmp_path / "lora--toy_sum--seed0.json").read_text())
    assert (rec["result"]["status"], rec["env"]["device"], rec["run"]["device"]) == ("ok", "cpu", "auto")


def test_ray_job_timeout_records_failed(ray_address, tmp_path, monkeypatch):
    jobs = plan("toy_sum", tmp_path)
    launch = executors.ExecutorOptions.launch

    def hanging(self, job):  # the job process sleeps (tests/bench/hooks): the timeout must fire
        kwargs = launch(self, job)
        kwargs["env"] = {**kwargs["env"], "PYTHONPATH": str(HOOKS), "BENCH_TEST_HANG": "1"}
        return kwargs

    monkeypatch.setattr(executors.ExecutorOptions, "launch", hanging)
    options = executors.ExecutorOptions(gpus_per_job=0, job_timeout=2)
    outcomes = executors.run("ray", jobs, progress=False, options=options)
    assert [status for _, status in outcomes] == ["failed"]
    rec = json.loads((tmp_path / "lora--toy_sum--seed0.json").read_text())
    assert rec["result"]["status"] == "failed"
    assert rec["result"]["error"].startswith("timed out after 2s (--job-timeout)")


def plan(tasks: str, out: Path, device: str = "cpu") -> list[JobSpec]:
    return plan_jobs(
        RunRequest(
            methods="lora",
            tasks=tasks,
            seeds=(0,),
            budget=budget_for("smoke"),
            preset="smoke",
            smoke=True,
            output_dir=str(out),
            threads=1,
            device=device,
            progress=False,
        )
    )


# ---------------------------------------------------------------------------------------------
# submitit: its LocalExecutor (subprocesses of this machine), and a real single-node SLURM
# ---------------------------------------------------------------------------------------------
def test_submitit_local_sweep_gives_the_local_records(local_records, tmp_path):
    pytest.importorskip("submitit")
    proc = bench("run", *SWEEP, "--output-dir", str(tmp_path), "--executor", "slurm", "--slurm-mode", "local")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "submitit-local job(s)" in proc.stderr
    assert_same_records(tmp_path, local_records)
    assert list((tmp_path / ".submitit").iterdir()), "submitit keeps its logs under OUTPUT_DIR/.submitit"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def slurm_conf(tmp_path_factory):
    """A single-node SLURM (munged, slurmctld, slurmd) in a temp folder; skipped where it cannot start."""
    search = os.environ.get("PATH", "") + ":/usr/sbin:/usr/local/sbin"
    found = {b: shutil.which(b, path=search) for b in ("munged", "slurmctld", "slurmd", "sbatch", "sinfo")}
    missing = [b for b, path in found.items() if path is None]
    if missing:
        pytest.skip(f"SLURM not installed ({', '.join(missing)} missing; .ci/run installs Debian's slurm packages)")
    if os.geteuid() != 0:
        pytest.skip("a single-node SLURM needs root to start slurmd")
    pytest.importorskip("submitit")
    d = tmp_path_factory.mktemp("slurm")
    for sub in ("spool/ctld", "spool/d", "munge"):
        (d / sub).mkdir(parents=True)
    shutil.chown(d / "munge", "munge", "munge")
    host = socket.gethostname().split(".")[0]
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 - 1024
    conf = d / "slurm.conf"
    conf.write_text(
        f"""ClusterName=bench
SlurmctldHost={host}
AuthType=auth/munge
AuthInfo=socket={d}/munge/munge.socket
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmUser=root
SlurmdUser=root
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmdSpoolDir={d}/spool/d
StateSaveLocation={d}/spool/ctld
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
NodeName={host} CPUs={os.cpu_count()} RealMemory={mem} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""
    )
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started = []
    try:
        subprocess.run(
            [
                found["munged"],
                "--force",
                f"--socket={d}/munge/munge.socket",
                f"--pid-file={d}/munge/munged.pid",
                f"--log-file={d}/munged.log",
                f"--seed-file={d}/munge/seed",
            ],
            check=True,
            timeout=30,
        )
        started.append(d / "munge" / "munged.pid")
        subprocess.run([found["slurmctld"], "-f", str(conf)], check=True, env=env, timeout=30)
        started.append(d / "slurmctld.pid")
        subprocess.run([found["slurmd"], "-f", str(conf)], check=True, env=env, timeout=30)
        started.append(d / "slurmd.pid")
        for _ in range(60):  # the node registers within seconds; a minute at most
            out = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True).stdout
            if out.strip() in ("idle", "mix", "alloc"):
                break
            time.sleep(1)
        else:
            pytest.skip(f"the single-node SLURM did not come up within a minute (node state {out.strip()!r})")
        yield conf
    except (OSError, subprocess.SubprocessError) as err:
        pytest.skip(f"the single-node SLURM did not start: {err}")
    finally:
        subprocess.run(["scancel", "--full", "--user", "root"], env=env, capture_output=True)
        for pid_file in reversed(started):
            try:
                os.kill(int(pid_file.read_text().split()[0]), 15)
            except (OSError, ValueError):
                pass


def test_slurm_single_node_sweep_gives_the_local_records(slurm_conf, local_records, tmp_path):
    proc = bench(
        "run",
        *SWEEP,
        "--output-dir",
        str(tmp_path),
        "--executor",
        "slurm",
        "--slurm-partition",
        "debug",
        "--slurm-time",
        "10",
        env={"SLURM_CONF": str(slurm_conf)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SLURM job(s), array" in proc.stderr
    assert_same_records(tmp_path, local_records)


# ---------------------------------------------------------------------------------------------
# Flags: checked before anything runs, one line and exit code 2
# ---------------------------------------------------------------------------------------------
