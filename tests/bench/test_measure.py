"""Measurement: the exact byte breakdown of one training step (hand-computed bytes), that it
leaves the job untouched, and the NVML / CUDA paths without a GPU (reasons, never crashes)."""

from __future__ import annotations

import sys
import threading
import types

import pytest
import torch
from torch import nn

from bench import measure, models
from bench.train import collate

# The tiny MLP 10 -> 20 -> 2 (fp32, 4 bytes per entry) on a batch of 4.
BATCH = 4
W1, B1, W2, B2 = 20 * 10 * 4, 20 * 4, 2 * 20 * 4, 2 * 4  # 800, 80, 160, 8 bytes
PARAMS = W1 + B1 + W2 + B2  # 1048
STEP = 4  # AdamW keeps state["step"] as a 0-d float32 tensor per parameter
X = BATCH * 10 * 4  # the input batch, 160
H = BATCH * 20 * 4  # ReLU output, saved by ReLU and (the same storage) by the second linear: 320
Y = BATCH * 2 * 4  # the output, saved by pow(2) in the loss: 32


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 2))


def adamw(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)


def loss_fn(model: nn.Module, batch: tuple[torch.Tensor]) -> torch.Tensor:
    return model(batch[0]).pow(2).mean()


def test_breakdown_equals_hand_computed_bytes():
    x = torch.randn(BATCH, 10)
    out = measure.breakdown(mlp(), adamw, (x,), loss_fn)
    assert out["param_bytes"] == PARAMS
    assert out["trainable_param_bytes"] == PARAMS
    assert out["buffer_bytes"] == 0
    assert out["grad_bytes"] == PARAMS
    assert out["optimizer_state_bytes"] == 2 * PARAMS + 4 * STEP  # exp_avg, exp_avg_sq, step
    # linear 1 saves x (its weight needs x for the gradient); ReLU saves h; linear 2 saves h
    # (same storage, counted once) and W2 (h needs it for its gradient); pow(2) saves y.
    assert out["saved_input_bytes"] == X
    assert out["saved_param_bytes"] == W2
    assert out["saved_activation_bytes"] == H + Y
    assert out["saved_bytes"] == X + W2 + H + Y
    assert out["total_bytes"] == PARAMS + PARAMS + 2 * PARAMS + 4 * STEP + X + H + Y
    assert out["optimizer"] == "AdamW"
    assert out["batch_shape"] == [[BATCH, 10]]


def test_breakdown_frozen_weight_saved_by_linear_is_param_memory():
    model = mlp()
    model[2].requires_grad_(False)  # frozen, yet F.linear saves W2 to give h its gradient
    out = measure.breakdown(model, adamw, (torch.randn(BATCH, 10),), loss_fn)
    trainable = W1 + B1
    assert out["trainable_param_bytes"] == out["grad_bytes"] == trainable
    assert out["optimizer_state_bytes"] == 2 * trainable + 2 * STEP
    assert out["saved_param_bytes"] == W2
    assert out["saved_activation_bytes"] == H + Y


def test_breakdown_frozen_first_layer_saves_no_input():
    model = mlp()
    model[0].requires_grad_(False)  # nothing before linear 2 needs a gradient
    out = measure.breakdown(model, adamw, (torch.randn(BATCH, 10),), loss_fn)
    assert out["grad_bytes"] == W2 + B2
    assert (out["saved_input_bytes"], out["saved_param_bytes"], out["saved_activation_bytes"]) == (0, 0, H + Y)


def test_breakdown_leaves_model_rng_and_training_untouched():
    def model_with_dropout():
        torch.manual_seed(1)
        return nn.Sequential(nn.Linear(10, 20), nn.Dropout(0.5), nn.ReLU(), nn.Linear(20, 2)).train()

    x = torch.randn(BATCH, 10)

    def one_step(model):
        opt = adamw(model)
        loss_fn(model, (x,)).backward()
        opt.step()
        return [p.detach().clone() for p in model.parameters()]

    reference = model_with_dropout()
    torch.manual_seed(7)
    expected = one_step(reference)

    model = model_with_dropout()
    before = [p.detach().clone() for p in model.parameters()]
    torch.manual_seed(7)
    rng = torch.get_rng_state()
    measure.breakdown(model, adamw, (x,), loss_fn)
    assert torch.equal(torch.get_rng_state(), rng)  # dropout in the copy drew from a forked RNG
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    got = one_step(model)
    assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True))


def test_breakdown_of_a_transformers_model_with_a_dict_batch():
    model = models.tiny_llama(0)
    tok = models.tiny_tokenizer()
    ids = tok("2+2=4")["input_ids"]
    batch = collate([{"input_ids": ids, "labels": ids}] * 2, pad_id=0)
    out = measure.breakdown(model, adamw, batch)  # default loss: model(**batch).loss
    n_params = sum(p.numel() for p in model.parameters())
    n_tensors = len(list(model.parameters()))
    assert out["param_bytes"] == out["trainable_param_bytes"] == out["grad_bytes"] == 4 * n_params
    assert out["optimizer_state_bytes"] == 2 * 4 * n_params + STEP * n_tensors
    assert out["saved_activation_bytes"] > 0 and out["saved_param_bytes"] > 0
    assert out["batch_shape"] == {"input_ids": [2, len(ids)], "attention_mask": [2, len(ids)], "labels": [2, len(ids)]}


def test_breakdown_or_reason_records_a_failure():
    def broken(model, batch):
        raise RuntimeError("boom")

    out = measure.breakdown_or_reason(mlp(), adamw, (torch.randn(2, 10),), broken)
    assert out == {"reason": "breakdown failed: RuntimeError: boom"}


def test_tensor_bytes_counts_each_storage_once():
    base = torch.zeros(10, 10)  # 400 bytes
    assert measure.tensor_bytes([base, base[:2], base.t()]) == 400  # views share the storage
    assert measure.tensor_bytes([base[:1]]) == 400  # a view keeps its whole storage alive
    assert measure.tensor_bytes([base, torch.zeros(3, dtype=torch.float64)]) == 424


# ---------------------------------------------------------------------------------------------
# Process memory and CUDA without a GPU
# ---------------------------------------------------------------------------------------------
def test_peak_rss_is_positive_and_reset_never_raises():
    assert measure.peak_rss_mb() > 0
    assert isinstance(measure.reset_peak_rss(), bool)
    rss = measure.rss_mb()
    if rss is not None:
        assert measure.peak_rss_mb() >= rss  # the kernel keeps VmHWM >= VmRSS


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA path")
def test_cuda_figures_are_empty_without_cuda():
    measure.cuda_reset()
    assert measure.cuda_peaks() == {}


# ---------------------------------------------------------------------------------------------
# NVML: absent, broken, and a fake device
# ---------------------------------------------------------------------------------------------
def test_nvml_without_pynvml_records_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    with measure.NvmlSampler() as sampler:
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
        return [types.SimpleNamespace(pid=p) for p in (pids if pids is not None else [measure.os.getpid()])]

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
    with measure.NvmlSampler() as sampler:
        pass
    assert sampler.reason == "pynvml unavailable: NVMLError: NVML Shared Library Not Found"
    assert sampler.summary()["nvml_reason"] == sampler.reason
    assert "shutdown" not in fake.calls  # init failed: nothing to shut down


def test_nvml_real_package_without_a_driver_records_why():
    pytest.importorskip("pynvml")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    sampler = measure.NvmlSampler()
    with sampler:
        pass
    assert sampler.reason and "nvml_reason" in sampler.summary()


def test_nvml_samples_net_of_the_baseline(monkeypatch):
    fake = fake_pynvml(used=(1000, 1100))
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    sampler = measure.NvmlSampler(interval_s=0.001)
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
    fake = fake_pynvml(pids=[measure.os.getpid(), 4242])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    with measure.NvmlSampler(interval_s=0.001) as sampler:
        assert fake.sampled.wait(10)
    assert sampler.summary()["other_processes"] is True


def test_nvml_process_query_failure_keeps_memory_readings(monkeypatch):
    fake = fake_pynvml(processes_error=NVMLError("Not Supported"))
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    with measure.NvmlSampler(interval_s=0.001) as sampler:
        assert fake.sampled.wait(10)
    out = sampler.summary()
    assert out["nvml_max_mb"] == 100 and out["other_processes"] is None
    assert any("Not Supported" in n for n in out["nvml_notes"])


def test_nvml_error_while_sampling_stops_quietly(monkeypatch):
    fake = fake_pynvml(sample_error_after=2)  # baseline, one sample, then the GPU is lost
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    with measure.NvmlSampler(interval_s=0.001) as sampler:
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
    sampler = measure.NvmlSampler(0)
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
    sampler = measure.NvmlSampler(2)
    assert (sampler.matched_by, sampler._handle) == ("index", "gpu2")
    assert any("uuid lookup failed" in n for n in sampler.notes)
    sampler.__exit__(None, None, None)
