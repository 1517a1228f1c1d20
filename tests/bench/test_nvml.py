"""The pynvml sampler, with a fake pynvml: baseline, net samples, other processes, failures recorded;
and on a real GPU (``gpu``-marked, skipped without CUDA): an allocation shows in its samples."""

from __future__ import annotations

import sys
import threading
import time
import types

import pytest
import torch

from bench import nvml


def test_nvml_without_pynvml_records_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    with nvml.NvmlSampler() as sampler:
        pass
    assert "pynvml not installed" in sampler.reason
    assert sampler.summary() == {"nvml_reason": sampler.reason}


class NVMLError(Exception):
    pass


def fake_pynvml(*, init_error=None, used=(1000, 1100), processes_error=None, sample_error_after=None, pids=None):
    """A stand-in for ``pynvml``: memory ``used[0]`` MiB at baseline, then ``used[1]`` MiB."""
    mod = types.ModuleType("pynvml")
    mod.calls = []
    mod.sampled = threading.Event()
    reads = {"n": 0}

    def nvmlInit():
        mod.calls.append("init")
        if init_error:
            raise init_error

    def nvmlDeviceGetMemoryInfo(handle):
        reads["n"] += 1
        if sample_error_after is not None and reads["n"] > sample_error_after:
            mod.sampled.set()
            raise NVMLError("GPU is lost")
        if reads["n"] > 1:
            mod.sampled.set()
        return types.SimpleNamespace(used=(used[0] if reads["n"] == 1 else used[1]) * 2**20)

    def nvmlDeviceGetComputeRunningProcesses(handle):
        if processes_error:
            raise processes_error
        return [types.SimpleNamespace(pid=p) for p in (pids if pids is not None else [nvml.os.getpid()])]

    mod.nvmlInit = nvmlInit
    mod.nvmlShutdown = lambda: mod.calls.append("shutdown")
    mod.nvmlDeviceGetHandleByIndex = lambda i: f"gpu{i}"
    mod.nvmlDeviceGetName = lambda h: b"Fake GPU"
    mod.nvmlSystemGetDriverVersion = lambda: "999.1"
    mod.nvmlDeviceGetMemoryInfo = nvmlDeviceGetMemoryInfo
    mod.nvmlDeviceGetComputeRunningProcesses = nvmlDeviceGetComputeRunningProcesses
    return mod


def test_nvml_init_error_records_why(monkeypatch):
    fake = fake_pynvml(init_error=NVMLError("NVML Shared Library Not Found"))
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    with nvml.NvmlSampler() as sampler:
        pass
    assert sampler.reason == "pynvml unavailable: NVMLError: NVML Shared Library Not Found"
    assert sampler.summary()["nvml_reason"] == sampler.reason
    assert "shutdown" not in fake.calls  # init failed: nothing to shut down


def test_nvml_real_package_without_a_driver_records_why():
    pytest.importorskip("pynvml")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    sampler = nvml.NvmlSampler()
    with sampler:
        pass
    assert sampler.reason and "nvml_reason" in sampler.summary()


def test_nvml_samples_net_of_the_baseline(monkeypatch):
    fake = fake_pynvml(used=(1000, 1100))
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    sampler = nvml.NvmlSampler(interval_s=0.001)
    with sampler:
        assert fake.sampled.wait(10)
    out = sampler.summary()
    assert out["nvml_baseline_mb"] == 1000
    assert out["nvml_max_mb"] == out["nvml_p99_mb"] == 100
    assert out["nvml_samples"] >= 1
    assert (out["gpu_name"], out["driver"], out["other_processes"]) == ("Fake GPU", "999.1", False)
    assert out["nvml_matched_by"] == "index"
    assert fake.calls[-1] == "shutdown"


def test_nvml_other_processes_are_flagged(monkeypatch):
    fake = fake_pynvml(pids=[nvml.os.getpid(), 4242])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    with nvml.NvmlSampler(interval_s=0.001) as sampler:
        assert fake.sampled.wait(10)
    assert sampler.summary()["other_processes"] is True


def test_nvml_process_query_failure_keeps_memory_readings(monkeypatch):
    fake = fake_pynvml(processes_error=NVMLError("Not Supported"))
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    with nvml.NvmlSampler(interval_s=0.001) as sampler:
        assert fake.sampled.wait(10)
    out = sampler.summary()
    assert out["nvml_max_mb"] == 100 and out["other_processes"] is None
    assert any("Not Supported" in n for n in out["nvml_notes"])


def test_nvml_error_while_sampling_stops_quietly(monkeypatch):
    fake = fake_pynvml(sample_error_after=2)  # baseline, one sample, then the GPU is lost
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    with nvml.NvmlSampler(interval_s=0.001) as sampler:
        assert fake.sampled.wait(10)
        sampler._thread.join(10)  # the loop ends by itself after the error
    out = sampler.summary()
    assert out["nvml_max_mb"] == 100
    assert out["nvml_reason"].startswith("sampling stopped after 1 samples: NVMLError: GPU is lost")


def test_nvml_finds_the_torch_device_by_uuid(monkeypatch):
    # NVML numbers GPUs physically; with CUDA_VISIBLE_DEVICES=3, torch's cuda:0 is NVML's 3.
    fake = fake_pynvml()
    fake.nvmlDeviceGetHandleByUUID = lambda uuid: f"by-uuid:{uuid.decode()}"
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid="1234-abcd"))
    sampler = nvml.NvmlSampler(0)
    assert (sampler.matched_by, sampler._handle) == ("uuid", "by-uuid:GPU-1234-abcd")
    sampler.__exit__(None, None, None)


def test_nvml_falls_back_to_the_index_when_the_uuid_is_unknown(monkeypatch):
    fake = fake_pynvml()

    def unknown(uuid):
        raise NVMLError("Not Found")

    fake.nvmlDeviceGetHandleByUUID = unknown
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid="MIG-1"))
    sampler = nvml.NvmlSampler(2)
    assert (sampler.matched_by, sampler._handle) == ("index", "gpu2")
    assert any("uuid lookup failed" in n for n in sampler.notes)
    sampler.__exit__(None, None, None)


@pytest.mark.gpu
def test_real_nvml_sees_an_allocation_on_the_gpu():
    torch.zeros(1, device="cuda")  # the CUDA context first, as the runner's measure.environment() makes it
    sampler = nvml.NvmlSampler(torch.cuda.current_device(), interval_s=0.01)
    assert sampler.reason is None, sampler.reason
    with sampler:
        block = torch.empty(512 * 2**20, dtype=torch.uint8, device="cuda")
        torch.cuda.synchronize()
        wanted = len(sampler.samples) + 2  # one more than a sample that may have been read before the allocation
        deadline = time.monotonic() + 30  # a guard against a dead sampler, not a timing assertion
        while len(sampler.samples) < wanted and sampler.reason is None and time.monotonic() < deadline:
            time.sleep(0.01)
        del block
    out = sampler.summary()
    assert "nvml_reason" not in out, out
    assert out["nvml_max_mb"] >= 512  # NVML sees the allocator's cudaMalloc of at least 512 MiB
    assert out["gpu_name"] == sampler.gpu_name and out["nvml_matched_by"] in ("uuid", "index")
