"""One configuration of ``bench micro``, run in its own subprocess: build a random-init LLaMA, apply
the method, time training steps, measure memory (:mod:`bench.micro` drives it and prints the tables).

Two ways to time:

- :func:`run_one`: ``warmup`` untimed steps (the first counts the bytes saved for backward), then
  ``steps`` timed ones; the driver divides by frozen timings from other subprocesses.
- :func:`run_paired`: the same configuration and a frozen twin (same weights, same batch) in one
  process, their steps alternating frozen/config, config/frozen, ...: both sides are timed in the
  same minutes, so the machine's drift between processes (frozen alone varied by 20-40% between
  processes on this shared machine) does not enter the ratio. The ratio is fastest step over
  fastest step (see there why); the median of the pairs' ratios is kept beside it. Peak RSS and
  the CUDA allocator's peak then count both models, so they are left out (``None``).

``official`` is a reference written here after the official NeuroAda code: every forward builds a
dense ``W + scatter(values)`` and calls ``F.linear`` on it, so autograd saves a dense copy of every
adapted weight; values in the model dtype, int64 flat positions, magnitude selection.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


# ---------------------------------------------------------------------------------------------
# The official-style reference
# ---------------------------------------------------------------------------------------------
class DenseScatterLinear(nn.Module):
    """NeuroAda as the official code runs it: ``F.linear(x, W.flatten().scatter_add(pos, v).view_as(W), b)``."""

    def __init__(self, base: nn.Linear, k: int) -> None:
        super().__init__()
        weight = base.weight
        d_out, d_in = weight.shape
        cols = weight.detach().abs().topk(k, dim=1).indices.sort(dim=1).values  # = nonzero(mask) order
        self.base = base
        self.weight_new = nn.Parameter(torch.zeros(d_out * k, dtype=weight.dtype, device=weight.device))
        self.register_buffer("weight_position_new", (torch.arange(d_out)[:, None] * d_in + cols).reshape(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.base.weight
        w_eff = w.flatten().scatter_add(0, self.weight_position_new, self.weight_new).view_as(w)
        return F.linear(x, w_eff, self.base.bias)


def _wrap_targets(model: nn.Module, wrap: Callable[[nn.Linear], nn.Module], targets: tuple[str, ...]) -> None:
    from methods._base import find_targets, set_submodule

    for name, module in find_targets(model, targets):
        set_submodule(model, name, wrap(module))


def apply_dense_scatter(model: nn.Module, k: int, targets: tuple[str, ...] = LLAMA_TARGETS) -> list[nn.Parameter]:
    """Freeze ``model`` and wrap its target linears in :class:`DenseScatterLinear`; returns the values."""
    from methods._base import freeze

    freeze(model)
    _wrap_targets(model, lambda base: DenseScatterLinear(base, k), targets)
    return [p for p in model.parameters() if p.requires_grad]


# ---------------------------------------------------------------------------------------------
# The floor of any method that trains the targets: frozen, but each target keeps its input
# ---------------------------------------------------------------------------------------------
class _KeepInput(torch.autograd.Function):
    """``F.linear(x, w, b)`` that saves ``x`` for backward, as every method with a gradient for
    (part of) ``w`` must, though its backward computes only the input's gradient, as frozen's does."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        _, weight = ctx.saved_tensors
        return grad @ weight, None, None


class KeptInputLinear(nn.Module):
    """A frozen linear whose input lives until backward (:class:`_KeepInput`)."""

    def __init__(self, base: nn.Linear) -> None:
        super().__init__()
        self.base = base

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _KeepInput.apply(x, self.base.weight, self.base.bias)


# ---------------------------------------------------------------------------------------------
# One configuration (runs in the subprocess)
# ---------------------------------------------------------------------------------------------
def _build_model(spec: dict) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=spec["vocab"],
        hidden_size=spec["hidden"],
        intermediate_size=spec["intermediate"],
        num_hidden_layers=spec["layers"],
        num_attention_heads=spec["heads"],
        num_key_value_heads=spec["heads"],
        max_position_embeddings=max(2048, spec["seq"]),
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).train()


def _method_config(method, k: int | None):
    fields = {f.name for f in dataclasses.fields(method.config_cls)}
    kwargs = {}
    if "r" in fields:
        kwargs["r"] = 8
    if k is not None:
        kwargs["k"] = k
    return method.config_cls(**kwargs)


class _SavedBytes:
    """Bytes saved for backward while active, each storage once, parameters and buffers excluded."""

    def __init__(self, model: nn.Module) -> None:
        self.exclude = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
        self.storages: dict[int, int] = {}

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        for part in (t._indices(), t._values()) if t.is_sparse else (t,):  # SHiRA saves a sparse COO delta
            storage = part.untyped_storage()
            if storage.data_ptr() not in self.exclude:
                self.storages[storage.data_ptr()] = storage.nbytes()
        return t

    def total(self) -> int:
        return sum(self.storages.values())


def _trainable_state_bytes(model: nn.Module, opt: torch.optim.Optimizer | None) -> int:
    params = {id(p): p for p in model.parameters() if p.requires_grad}
    total = sum(p.nbytes + (p.grad.nbytes if p.grad is not None else 0) for p in params.values())
    if opt is not None:
        for state in opt.state.values():
            total += sum(v.nbytes for v in state.values() if isinstance(v, torch.Tensor))
    return total


@dataclasses.dataclass
class _Setup:
    """A built configuration: its model, optimizer (None when frozen) and one training step."""

    name: str
    model: nn.Module
    opt: torch.optim.Optimizer | None
    method: object | None
    base_params: int
    step: Callable[[], None]


OWN_CONFIGS = ("frozen", "kept_inputs", "official", "shira")
"""Configurations that :func:`_setup` builds itself; the others are registered methods."""


def _setup(spec: dict, name: str) -> _Setup:
    """Build the model of ``spec`` (on its device and dtype) and apply configuration ``name``."""
    import methods
    from methods._base import count_parameters, find_targets, freeze

    device = torch.device(spec.get("device", "cpu"))
    model = _build_model(spec).to(device=device, dtype=getattr(torch, spec.get("dtype", "float32")))
    base_params = count_parameters(model)
    k = spec.get("k")
    opt, method = None, None
    if name in ("frozen", "kept_inputs"):
        freeze(model)
        model.enable_input_require_grads()  # backward through every layer, no weight gradients
        if name == "kept_inputs":  # costs what keeping the targets' inputs alive costs, no more
            _wrap_targets(model, KeptInputLinear, LLAMA_TARGETS)
    elif name == "official":
        opt = torch.optim.AdamW(apply_dense_scatter(model, k), lr=8e-3, weight_decay=0.0)
    elif name == "shira":  # peft's SHiRA preset at NeuroAda k's budget: r (d_in + d_out) ~ k d_out, r >= 1
        method = methods.get("peft_config")
        shapes = [(m.in_features, m.out_features) for _, m in find_targets(model, LLAMA_TARGETS)]
        r = max(1, round(k * sum(o for _, o in shapes) / sum(i + o for i, o in shapes)))
        cfg = method.config_cls(**methods.choose("shira")[0].config).resized("r", r)
        model = method.apply(model, cfg)
        opt = method.optimizer(model, cfg, 0.0)
    else:
        method = methods.get(name)
        cfg = _method_config(method, k)
        model = method.apply(model, cfg)
        opt = method.optimizer(model, cfg, 0.0)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, spec["vocab"], (spec["batch"], spec["seq"]), generator=gen).to(device)
    cuda = device.type == "cuda"

    def step() -> None:
        if opt is not None:
            opt.zero_grad(set_to_none=True)
        model(input_ids=ids, labels=ids).loss.backward()
        if opt is not None:
            opt.step()
        if cuda:
            torch.cuda.synchronize()  # the step's kernels have run before the clock stops

    return _Setup(name, model, opt, method, base_params, step)


def _timed(setup: _Setup) -> tuple[float, float]:
    """(wall, process CPU) seconds of one step of ``setup``."""
    t0, c0 = time.perf_counter(), time.process_time()
    setup.step()
    return time.perf_counter() - t0, time.process_time() - c0


def _columns(timed: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """The wall and the CPU seconds of ``_timed`` results, as two lists."""
    return [t[0] for t in timed], [t[1] for t in timed]


def _first_step(setup: _Setup) -> int:
    """Run the first warm-up step, counting the bytes it saves for backward."""
    saved = _SavedBytes(setup.model)
    with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t):
        setup.step()
    return saved.total()


def _row(spec: dict, setup: _Setup, wall: list[float], cpu: list[float], saved: int) -> dict:
    from bench.measure import peak_rss_mb
    from methods._base import count_parameters, trainable_count

    name = spec["config"]
    cuda = spec.get("device", "cpu") == "cuda"
    if name == "frozen":
        trainable = 0
    elif setup.method is not None:  # the method's own count (masked sparse: the selected entries only)
        trainable = trainable_count(setup.method, setup.model)
    else:
        trainable = count_parameters(setup.model, trainable_only=True)
    return {
        "config": name,
        "k": spec.get("k"),
        "wall_s": statistics.median(wall),
        "cpu_s": statistics.median(cpu),
        "wall_times": wall,
        "cpu_times": cpu,
        "saved_bytes": saved,
        "state_bytes": _trainable_state_bytes(setup.model, setup.opt),
        "peak_rss_mb": peak_rss_mb(),
        "peak_alloc_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "trainable": trainable,
        "base_params": setup.base_params,
        "fraction": trainable / setup.base_params,
    }


def run_one(spec: dict) -> dict:
    """Build, apply, warm up, time; the measured row as a dict."""
    torch.set_num_threads(spec["threads"])
    setup = _setup(spec, spec["config"])
    saved = _first_step(setup)
    for _ in range(spec["warmup"] - 1):
        setup.step()
    if spec.get("device") == "cuda":
        torch.cuda.reset_peak_memory_stats()
    wall, cpu = _columns([_timed(setup) for _ in range(spec["steps"])])
    return _row(spec, setup, wall, cpu, saved)


def run_paired(spec: dict) -> dict:
    """The configuration and a frozen twin in this process, ``steps`` pairs of alternating steps
    (frozen first in even pairs, the configuration first in odd ones), on ``spec["clock"]``.

    ``ratio`` is the configuration's fastest step over the frozen twin's fastest step. On a shared
    machine interference only ever slows a step, so the minimum is the estimate least disturbed by
    it (Chen & Revels 2016, "Robust benchmarking in noisy environments", arXiv:1608.04295; also
    ``timeit``'s advice); both minima come from the same minutes, steps alternating. ``pair_ratios``
    and their median ``pairs_median`` are kept beside it: they are what the ratio would be if the
    slow-downs hit both sides of a pair alike."""
    torch.set_num_threads(spec["threads"])
    frozen = _setup(spec, "frozen")
    setup = _setup(spec, spec["config"])
    frozen.step()
    saved = _first_step(setup)
    for _ in range(spec["warmup"] - 1):
        frozen.step()
        setup.step()
    times: dict[str, list[tuple[float, float]]] = {"frozen": [], setup.name: []}
    for i in range(spec["steps"]):
        for s in (frozen, setup) if i % 2 == 0 else (setup, frozen):
            times[s.name].append(_timed(s))
    wall, cpu = _columns(times[setup.name])
    frozen_wall, frozen_cpu = _columns(times["frozen"])
    ours, twin = (wall, frozen_wall) if spec.get("clock") == "wall" else (cpu, frozen_cpu)
    pairs = [a / b for a, b in zip(ours, twin, strict=True)]
    return dict(
        _row(spec, setup, wall, cpu, saved),
        ratio=min(ours) / min(twin),
        pair_ratios=pairs,
        pairs_median=statistics.median(pairs),
        paired=True,
        peak_rss_mb=None,  # both models live in this process (and on its GPU)
        peak_alloc_mb=None,
        frozen_wall_times=frozen_wall,
        frozen_cpu_times=frozen_cpu,
        frozen_wall_s=statistics.median(frozen_wall),
        frozen_cpu_s=statistics.median(frozen_cpu),
    )
