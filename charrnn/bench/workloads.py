"""Kernel timing workloads: backend availability per device, the device timer, waiting for a quiet
machine, the timed fwd / bwd / fwd_bwd / train-step workloads, equivalence with `fused`, and the
device's matmul rate at a case's shapes (the limit each backend is reported against).
"""
from __future__ import annotations

import dataclasses
import os
import platform
import re
import statistics
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import psutil
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from charrnn.capabilities import cxx_compiler
from charrnn.bench.cases import COMPILING, Case, paired_case, tolerance
from charrnn import registry
from charrnn.rnn.cell_math import Hidden
from charrnn.rnn.cells import fused_module, make_layer
from charrnn.config import TrainConfig

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
TRAIN_VOCAB = 65  # tiny-shakespeare's vocabulary


class EquivalenceError(AssertionError):
    """A backend's output or gradient differs from `fused` beyond the stated tolerance."""


# --------------------------------------------------------------------------- device and availability

def bench_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name(device: torch.device) -> str:
    """GPU name, or the CPU model (psutil has no model name: /proc/cpuinfo's, where there is one)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    models = re.findall(r"model name\s*:\s*(.+)", cpuinfo.read_text()) if cpuinfo.exists() else []
    return models[0].strip() if models else (platform.processor() or platform.machine() or "cpu")


def cpu_capability() -> str:
    """The CPU vector ISA torch dispatches to here (e.g. AVX512, AVX2), probed by torch."""
    return torch.backends.cpu.get_cpu_capability()


def skip_reason(backend: str, device: torch.device) -> str | None:
    """Why `backend` cannot run on `device`, or None when it can."""
    if reason := registry.BACKENDS[backend].device_restriction(device.type):
        return f"{backend}: {reason}; device is {device.type}"
    if backend in COMPILING and device.type == "cpu" and not cxx_compiler():
        return f"{backend}: building its CPU kernels needs a C++ compiler; none on PATH"
    return None


def versions() -> dict[str, Any]:
    """torch / CUDA / cuDNN versions and the thread count, for extra_info and the MLflow run."""
    return {"torch": torch.__version__, "cuda": torch.version.cuda or "none",
            "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "none",
            "threads": torch.get_num_threads()}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class DeviceTimer:
    """pytest-benchmark timer. On CUDA: seconds since a reference CUDA event, read by recording an
    event and waiting for it, so the difference of two readings is device time with the device
    synchronised. Elsewhere: time.perf_counter (CPU kernels are synchronous)."""

    def __init__(self) -> None:
        self._ref: torch.cuda.Event | None = None

    def __call__(self) -> float:
        if not torch.cuda.is_available():
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        event.synchronize()
        if self._ref is None:
            self._ref = event
        return self._ref.elapsed_time(event) / 1e3


device_timer = DeviceTimer()


def machine_busy(window_s: float = 1.0) -> float | None:
    """Fraction of all CPUs busy over the next `window_s` (this process idles meanwhile)."""
    try:
        return psutil.cpu_percent(interval=window_s) / 100
    except (OSError, NotImplementedError):  # no CPU counters on this platform
        return None


def wait_for_quiet(max_wait_s: float, threshold: float = 0.1, window_s: float = 1.0) -> tuple[float, float | None]:
    """On a shared machine, wait (at most `max_wait_s`) until other processes leave the CPUs
    idle: one busy core halves what a 2-thread CPU benchmark measures. Returns (seconds waited,
    busy fraction of the last window)."""
    start = time.perf_counter()
    busy = None
    while max_wait_s > 0:
        busy = machine_busy(window_s)
        if busy is None or busy < threshold or time.perf_counter() - start >= max_wait_s:
            break
    return time.perf_counter() - start, busy


@contextmanager
def no_tf32() -> Iterator[None]:
    """fp32 matmuls and cuDNN RNNs in full fp32 (no TF32), for equivalence and fair timing."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def autocast(case: Case, device: torch.device):
    """bf16 autocast (cache off: CUDA graph capture needs that), or nothing for fp32."""
    if case.dtype == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[case.dtype], cache_enabled=False)


# --------------------------------------------------------------------------- models and inputs

class LayerStack(nn.Module):
    """L single-layer recurrent layers of one backend, each feeding the next; forward like nn.GRU:
    x (B, T, H), hidden (L, B, H) or (h, c) → (out (B, T, H), h_n like hidden)."""

    def __init__(self, backend: str, cell: str, hidden: int, layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(make_layer(backend, cell, hidden, hidden) for _ in range(layers))

    def forward(self, x: Tensor, hidden: Hidden) -> tuple[Tensor, Hidden]:
        finals = []
        for i, layer in enumerate(self.layers):
            x, h_i = layer(x, _layer_slice(hidden, i))  # (B, T, H), (1, B, H)
            finals.append(h_i)
        if isinstance(hidden, tuple):
            return x, tuple(torch.cat(parts) for parts in zip(*finals))
        return x, torch.cat(finals)                     # (L, B, H)

    def load_fused(self, fused: nn.RNNBase) -> None:
        """Copy nn.* weights (`weight_ih_l{i}`) into layer i (`weight_ih_l0`)."""
        for name, tensor in fused.state_dict().items():
            match = re.fullmatch(r"(.+_l)(\d+)", name)
            if match is None:
                raise ValueError(f"{name!r}: not an nn.RNNBase parameter name (expected NAME_l<layer>)")
            stem, layer = match.groups()
            self.layers[int(layer)].state_dict()[stem + "0"].copy_(tensor)


def _layer_slice(hidden: Hidden, i: int) -> Hidden:
    if isinstance(hidden, tuple):
        return tuple(t[i:i + 1] for t in hidden)
    return hidden[i:i + 1]


def build_layer_model(case: Case, fused: nn.RNNBase | None = None) -> nn.Module:
    """The timed module for a layer case; with `fused` given, loaded with its weights."""
    backend = registry.BACKENDS[case.backend]
    if backend.fused:
        cls = fused_module(case.cell, cudnn=backend.cudnn)
        model = cls(case.hidden, case.hidden, num_layers=case.layers, batch_first=True)
        if fused is not None:
            model.load_state_dict(fused.state_dict())
        return model
    model = LayerStack(case.backend, case.cell, case.hidden, case.layers)
    if isinstance(fused, LayerStack):    # a min cell's `loop` reference: the same layout
        model.load_state_dict(fused.state_dict())
    elif fused is not None:
        model.load_fused(fused)
    return model


def train_config(case: Case) -> TrainConfig:
    """The CharRNN config of a train_step case. `backend` may be any `registry.BACKENDS` entry, so it
    is set on the dataclass directly (TrainConfig's own choices list only loop and fused)."""
    return dataclasses.replace(TrainConfig(cell=case.cell, hidden_size=case.hidden, layers=case.layers,
                                           batch_size=case.batch, seq_len=case.seq_len,
                                           dtype=case.dtype), backend=case.backend)


def build_train_model(case: Case, fused: nn.Module | None = None) -> nn.Module:
    from charrnn.rnn.models import CharRNN

    model = CharRNN(train_config(case), TRAIN_VOCAB)
    if fused is not None:
        model.load_state_dict(fused.state_dict())
    return model


@dataclass
class Workload:
    """A model on a device with fixed inputs; `run()` is the timed call of one direction."""

    case: Case
    model: nn.Module
    device: torch.device
    x: Tensor                 # (B, T, H) float, or (B, T) token ids for train_step
    h0: Hidden                # (L, B, H) or (h, c)
    target: Tensor            # d out for fwd_bwd (B, T, H); next tokens (B, T) for train_step
    optimizer: torch.optim.Optimizer | None = None
    pending: Tensor | None = None  # bwd: the output of the untimed forward, awaiting its backward

    def run(self) -> None:
        """One call of the case's direction (bwd: the backward of `forward_for_backward`, which it
        runs first when nothing is pending)."""
        direction = self.case.direction
        if direction == "bwd":
            if self.pending is None:
                self.forward_for_backward()
            out, self.pending = self.pending, None
            with no_tf32():
                out.backward(self.target.to(out.dtype))
            return
        with no_tf32(), autocast(self.case, self.device):
            if direction == "fwd":
                with torch.no_grad():
                    self.model(self.x, self.h0)
            elif direction == "fwd_bwd":
                out = self._forward()
                out.backward(self.target.to(out.dtype))
            else:
                self._train_step()

    def _forward(self) -> Tensor:
        for t in (self.x, *self.model.parameters()):
            t.grad = None
        return self.model(self.x, self.h0)[0]  # (B, T, H)

    def forward_for_backward(self) -> None:
        """bwd: the forward pass (untimed), kept for the next `run()` to backpropagate."""
        with no_tf32(), autocast(self.case, self.device):
            self.pending = self._forward()

    def _train_step(self) -> None:
        logits, _ = self.model(self.x, self.h0)                                  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), self.target.flatten())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def timed_call(self) -> float:
        """Wall seconds of one synchronised call (bwd: its forward runs untimed first)."""
        if self.case.direction == "bwd" and self.pending is None:
            self.forward_for_backward()
        sync(self.device)
        start = time.perf_counter()
        self.run()
        sync(self.device)
        return time.perf_counter() - start


def _random_hidden(case: Case, device: torch.device, gen: torch.Generator) -> Hidden:
    n = 2 if registry.CELLS[case.cell].has_cell_state else 1
    states = tuple(torch.randn(case.layers, case.batch, case.hidden, generator=gen).to(device)
                   for _ in range(n))
    return states if n == 2 else states[0]


def make_workload(case: Case, device: torch.device, fused: nn.Module | None = None,
                  seed: int = 0) -> Workload:
    """The case's model (weights from `fused` when given) and fixed random inputs on `device`."""
    gen = torch.Generator().manual_seed(seed)
    B, T, H = case.batch, case.seq_len, case.hidden
    h0 = _random_hidden(case, device, gen)
    if case.direction == "train_step":
        model = build_train_model(case, fused).to(device)
        x = torch.randint(0, TRAIN_VOCAB, (B, T), generator=gen).to(device)
        target = torch.randint(0, TRAIN_VOCAB, (B, T), generator=gen).to(device)
        return Workload(case, model, device, x, h0, target, torch.optim.Adam(model.parameters()))
    model = build_layer_model(case, fused).to(device)
    x = torch.randn(B, T, H, generator=gen).to(device).requires_grad_(case.direction != "fwd")
    target = torch.randn(B, T, H, generator=gen).to(device)
    return Workload(case, model, device, x, h0, target)


def reference_model(case: Case) -> nn.Module:
    """A freshly initialised reference model for the case (CPU; `registry.reference`); its weights
    are copied everywhere."""
    torch.manual_seed(0)
    ref = dataclasses.replace(case, backend=registry.reference(case.cell))
    if case.direction == "train_step":
        return build_train_model(ref)
    return build_layer_model(ref)


# --------------------------------------------------------------------------- equivalence

def forward_backward(model: nn.Module, x: Tensor, h0: Hidden, case: Case,
                     device: torch.device) -> dict[str, Tensor]:
    """Outputs, final states, and gradients of the input, h0 and every parameter under a fixed
    random projection of (out, h_n); keyed by name."""
    x = x.detach().clone().requires_grad_(x.is_floating_point())
    h0s = tuple(h.detach().clone().requires_grad_() for h in (h0 if isinstance(h0, tuple) else (h0,)))
    model.zero_grad(set_to_none=True)
    with no_tf32():  # the backward too: cuDNN's RNN backward otherwise runs in TF32 (~1e-3 off on an H200)
        with autocast(case, device):
            out, h_n = model(x, h0s if len(h0s) == 2 else h0s[0])
            finals = h_n if isinstance(h_n, tuple) else (h_n,)
            gen = torch.Generator().manual_seed(123)
            loss = sum((t.float() * torch.randn(t.shape, generator=gen).to(device)).sum()
                       for t in (out, *finals))
        loss.backward()
    result = {"out": out.detach(), **{f"h_n[{i}]": h.detach() for i, h in enumerate(finals)}}
    result |= {f"grad h0[{i}]": h.grad for i, h in enumerate(h0s)}
    if x.requires_grad:
        result["grad x"] = x.grad
    result |= {f"grad {_canonical(name)}": p.grad for name, p in model.named_parameters()}
    return result


def _canonical(name: str) -> str:
    """A parameter's name as nn.GRU(num_layers=L) spells it: `layers.1.weight_ih_l0` → `weight_ih_l1`
    (LayerStack and CharRNN layers); other names unchanged."""
    m = re.fullmatch(r"layers\.(\d+)\.(.+_l)0", name)
    return f"{m.group(2)}{m.group(1)}" if m else name


def assert_equivalent(case: Case, device: torch.device, fused: nn.Module) -> None:
    """Outputs and gradients of the case's backend equal its reference (`fused`, or `loop` for a min
    cell) on copied weights (see `tolerance`); raises EquivalenceError naming the first that differs."""
    ref_case = dataclasses.replace(case, backend=registry.reference(case.cell))
    ref = make_workload(ref_case, device, fused)
    got = make_workload(case, device, fused)
    expected = forward_backward(ref.model, ref.x, ref.h0, case, device)
    actual = forward_backward(got.model, got.x, got.h0, case, device)
    if actual.keys() != expected.keys():
        raise EquivalenceError(f"{case.id}: tensors {sorted(actual)} != the reference's {sorted(expected)}")
    tol = tolerance(case)
    for name, want in expected.items():
        have, want = actual[name].float(), want.float()
        if have.shape != want.shape:
            raise EquivalenceError(f"{case.id}: {name}: shape {tuple(have.shape)} != {tuple(want.shape)}")
        err, scale = (have - want).abs().max().item(), max(1.0, want.abs().max().item())
        if not err <= tol * scale:  # NaN fails too
            raise EquivalenceError(f"{case.id}: {name}: max |error| {err:.3g} > {tol:g} x max(1, max |ref|) "
                                   f"= {tol * scale:.3g}")


# --------------------------------------------------------------------------- one benchmark

@dataclass
class Prepared:
    """A case ready to time: its workload, the `fused` workload on the same weights and inputs
    (timed in alternation with it, None for `fused` itself), and the extra_info so far."""

    work: Workload
    paired: Workload | None
    info: dict[str, Any]


def prepare(case: Case, device: torch.device, reset_compiled: bool = True) -> Prepared:
    """Build the workload, time its first call (compilation / graph capture happen there), assert
    equivalence with `fused`, and build the paired `fused` workload."""
    if reset_compiled and case.backend in COMPILING:
        torch.compiler.reset()  # each case pays, and reports, its own compilation
    fused = reference_model(case)
    work = make_workload(case, device, fused)
    first_call_s = work.timed_call()
    assert_equivalent(case, device, fused)
    pair = paired_case(case)            # min cells: nn.GRU `fused` at the same shape, fresh weights
    paired = None if pair is None else make_workload(pair, device, fused if pair.cell == case.cell else None)
    info = {**case.params(), "shape": case.shape, "device": str(device), "device_name": device_name(device),
            "flops": case.flops(), "tokens": case.tokens, **matmul_peaks(case, device),
            **versions(), "first_call_s": first_call_s,
            "compile_caches": os.environ.get("TORCHINDUCTOR_FORCE_DISABLE_CACHES") != "1",
            "compile_s": first_call_s if case.backend in COMPILING else 0.0,
            "tf32": False, "equivalence": f"max|err| <= {tolerance(case):g} max(1, max|ref|)",
            "reference": registry.reference(case.cell), "paired_with": _paired_name(case, pair),
            "loadavg_start": os.getloadavg()[0]}
    return Prepared(work, paired, info)


def _paired_name(case: Case, pair: Case | None) -> str | None:
    """extra_info `paired_with`: `fused`, `gru-fused` for a min cell, None for `fused` itself."""
    if pair is None:
        return None
    return pair.backend if pair.cell == case.cell else f"{pair.cell}-{pair.backend}"


_PEAKS: dict[tuple, float] = {}  # (device, dtype, m, k, n) → GFLOP/s, measured once per session


def matmul_gflops(m: int, k: int, n: int, dtype: str, device: torch.device, min_s: float = 0.05) -> float:
    """The device's rate for one plain (m, k) x (k, n) torch.mm in `dtype` (TF32 off): the fastest
    of several timed batches of calls, measured once per session and size."""
    key = (str(device), dtype, m, k, n)
    if key not in _PEAKS:
        a = torch.randn(m, k, device=device, dtype=DTYPES[dtype])
        b = torch.randn(k, n, device=device, dtype=DTYPES[dtype])
        with no_tf32():
            for _ in range(3):
                torch.mm(a, b)
            sync(device)
            best, calls = float("inf"), 1
            for _ in range(5):
                start = time.perf_counter()
                for _ in range(calls):
                    torch.mm(a, b)
                sync(device)
                elapsed = time.perf_counter() - start
                best = min(best, elapsed / calls)
                if elapsed < min_s:
                    calls *= 2
        _PEAKS[key] = 2 * m * k * n / best / 1e9
    return _PEAKS[key]


def matmul_peaks(case: Case, device: torch.device) -> dict[str, float]:
    """extra_info: the matmul rate at the case's two matmul shapes (`Case.matmul_shapes`). The
    larger, `peak_gflops`, is the limit a backend's GFLOP/s is reported against."""
    rates = {f"mm_{name}_gflops": matmul_gflops(*mkn, case.dtype, device)
             for name, mkn in case.matmul_shapes().items()}
    return {**rates, "peak_gflops": max(rates.values())}


def paired_info(case_s: list[float], fused_s: list[float]) -> dict[str, Any]:
    """extra_info for rounds timed in alternation with `fused` (fused_s[i] just before case_s[i]):
    fused's median and the median of the per-round ratios case / fused. Neighbouring rounds see the
    same machine load, so the ratio holds where separate medians drift apart."""
    if not fused_s:
        return {}
    ratios = [c / f for c, f in zip(case_s, fused_s)]
    q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
    return {"paired_fused_median_ms": 1e3 * statistics.median(fused_s),
            "paired_ratio": statistics.median(ratios), "paired_ratio_q1": q1, "paired_ratio_q3": q3}


