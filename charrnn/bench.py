"""Kernel timing: benchmark cases and profiles, backend availability per device, the device timer,
the timed fwd / fwd_bwd / train-step workloads, equivalence checks, and the `charrnn bench` and
`charrnn bench-table` commands. The pytest-benchmark suite in tests/benchmarks/ is built on this.

Every case is one (cell, backend, hidden, batch, seq_len, layers, dtype, direction). The layer
input width equals the hidden size; `fused` and `fused_nocudnn` stack their layers inside one
nn.RNN/GRU/LSTM (num_layers=L, so cuDNN sees the whole stack), every other backend stacks L
single layers from `cells.make_layer`. bf16 runs under autocast with fp32 master weights, as
`TrainConfig.dtype=bf16` does.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import registry
from .cells import BACKENDS, CELLS, FUSED, FUSED_NOCUDNN, Hidden, has_cell_state, make_layer
from .config import CUDA_ONLY, ConfigError, TrainConfig
from .mincells import MIN_BACKENDS, MIN_CELLS, SCAN_TOLERANCE

REFERENCE = "fused"
COMPILING = ("loop_compiled", "loop_bptt_compiled", "loop_cudagraph")  # first call compiles/captures
DIRECTIONS = ("fwd", "fwd_bwd")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# Equivalence with `fused` on copied weights, per output / gradient tensor:
#     max |a - b| <= tol * max(1, max |b|)
# i.e. an absolute tolerance for O(1) tensors and a relative one for large weight gradients, which
# sum B*T products and carry fp32 rounding in proportion to their size. fp32 (TF32 off): 1e-5.
# bf16 (autocast) rounds every op to 8 mantissa bits: 5e-2.
TOLERANCE = {"fp32": 1e-5, "bf16": 5e-2}
TRAIN_VOCAB = 65  # tiny-shakespeare's vocabulary
SUITE = Path("tests") / "benchmarks"


# --------------------------------------------------------------------------- cases and profiles

@dataclass(frozen=True)
class Case:
    """One timed configuration; `train_step` cases time a whole CharRNN optimiser step."""

    cell: str
    backend: str
    hidden: int
    batch: int
    seq_len: int
    layers: int = 1
    dtype: str = "fp32"
    direction: str = "fwd_bwd"  # fwd | fwd_bwd | train_step

    @property
    def shape(self) -> str:
        """Everything but the backend: the rows one table block compares."""
        return (f"{self.cell}-h{self.hidden}-b{self.batch}-t{self.seq_len}-l{self.layers}"
                f"-{self.dtype}-{self.direction}")

    @property
    def id(self) -> str:
        return f"{self.shape}-{self.backend}"

    def params(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Profile:
    """Which cases run, and how long each is timed."""

    layer_shapes: tuple[tuple, ...]  # (cell, hidden, batch, seq_len, layers, dtype, direction)
    train_shapes: tuple[tuple, ...]  # (cell, hidden, batch, seq_len, layers, dtype)
    target_s: float                  # timed rounds ≈ target_s / one-call time, clamped to:
    min_rounds: int
    max_rounds: int
    warmup_rounds: int
    quiet_wait_s: float = 0.0        # per case: wait up to this long for other processes to go idle
    quiet_budget_s: float = 0.0      # ... and at most this long in one session
    extra_cases: tuple[Case, ...] = ()  # cases beyond shape x backend (the min-cell block below)

    def cases(self) -> list[Case]:
        cases = [Case(s[0], b, *s[1:]) for s in self.layer_shapes for b in BACKENDS
                 if s[0] in registry.BACKENDS[b].cells] + list(self.extra_cases)
        return list({c.id: c for c in cases}.values())  # an extra case may repeat a shape's case

    def train_cases(self) -> list[Case]:
        return [Case(s[0], b, *s[1:], direction="train_step") for s in self.train_shapes for b in BACKENDS
                if s[0] in registry.BACKENDS[b].cells]

    def rounds(self, one_call_s: float) -> int:
        return int(min(self.max_rounds, max(self.min_rounds, self.target_s / max(one_call_s, 1e-9))))


def _sweep(cells, base: dict[str, Any], axes: dict[str, tuple], dtypes, directions) -> tuple[tuple, ...]:
    """fastrnns-style grid: the base shape, then one axis at a time through its values."""
    shapes = [base] + [{**base, axis: v} for axis, values in axes.items() for v in values if v != base[axis]]
    keys = ("hidden", "batch", "seq_len", "layers")
    return tuple((cell, *(s[k] for k in keys), dtype, direction)
                 for cell, s, dtype, direction in itertools.product(cells, shapes, dtypes, directions))


CELL_NAMES = tuple(CELLS)


# --- min cells (charrnn/mincells.py): scan vs loop vs nn.GRU fused at one shape, time vs T --------
def scan_cases(hidden: int, batch: int, seq_lens: tuple[int, ...], dtypes=("fp32",),
               direction: str = "fwd_bwd") -> tuple[Case, ...]:
    """Every min cell on each of its backends, and nn.GRU (`gru`, `fused`) at the same shape: the
    comparison the kernels page plots against T (charrnn/report_scan.py)."""
    arms = [(c, b) for c in MIN_CELLS for b in MIN_BACKENDS] + [("gru", "fused")]
    return tuple(Case(c, b, hidden, batch, t, 1, dt, direction)
                 for t in seq_lens for dt in dtypes for c, b in arms)


SCAN_SEQ_LENS = (64, 256, 1024)
# --- end of the min-cell block


PROFILES: dict[str, Profile] = {
    # make test: correctness only (benchmarks disabled), tiny shapes.
    "test": Profile(
        layer_shapes=tuple((c, 16, 4, 8, layers, "fp32", d) for c in CELL_NAMES
                           for layers, d in ((1, "fwd"), (1, "fwd_bwd"), (2, "fwd_bwd"))),
        train_shapes=tuple((c, 16, 4, 8, 1, "fp32") for c in CELL_NAMES),
        target_s=0.0, min_rounds=1, max_rounds=1, warmup_rounds=0,
        extra_cases=scan_cases(16, 4, (8, 100)) + scan_cases(16, 4, (8,), direction="fwd")),
    # make bench: CPU, a few shapes per cell, ≤ 10 min on 2 cores.
    "quick": Profile(
        layer_shapes=tuple((c, h, 32, 64, 1, "fp32", d) for c in CELL_NAMES
                           for h, d in ((256, "fwd_bwd"), (256, "fwd"), (128, "fwd_bwd"))),
        train_shapes=tuple((c, 128, 32, 64, 1, "fp32") for c in CELL_NAMES),
        target_s=0.6, min_rounds=15, max_rounds=150, warmup_rounds=3,
        quiet_wait_s=15.0, quiet_budget_s=150.0, extra_cases=scan_cases(256, 32, SCAN_SEQ_LENS)),
    # make bench PROFILE=full: the GPU grid around fastrnns' shape (H512 B64 T100 L1).
    "full": Profile(
        layer_shapes=_sweep(CELL_NAMES, {"hidden": 512, "batch": 64, "seq_len": 100, "layers": 1},
                            {"hidden": (64, 128, 256, 512, 1024, 2048), "batch": (1, 8, 32, 64, 128),
                             "seq_len": (16, 64, 256, 1024), "layers": (1, 2, 4)},
                            ("fp32", "bf16"), DIRECTIONS),
        train_shapes=tuple((c, h, 64, 100, 1, dt) for c in CELL_NAMES for h in (256, 1024)
                           for dt in ("fp32", "bf16")),
        target_s=1.0, min_rounds=10, max_rounds=100, warmup_rounds=10,
        extra_cases=scan_cases(512, 64, SCAN_SEQ_LENS, ("fp32", "bf16"))),
}


# --------------------------------------------------------------------------- device and availability

def bench_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name(device: torch.device) -> str:
    """GPU name, or the CPU model from /proc/cpuinfo where there is one."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    models = re.findall(r"model name\s*:\s*(.+)", cpuinfo.read_text()) if cpuinfo.exists() else []
    return models[0].strip() if models else (platform.processor() or "cpu")


def skip_reason(backend: str, device: torch.device) -> str | None:
    """Why `backend` cannot run on `device`, or None when it can."""
    if backend in CUDA_ONLY and device.type != "cuda":
        return f"{backend}: {CUDA_ONLY[backend]}; device is {device.type}"
    if "compiled" in backend and device.type == "cpu" and not (shutil.which("c++") or shutil.which("g++")):
        return f"{backend}: torch.compile on CPU needs a C++ compiler; none on PATH"
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


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat; None off Linux."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def machine_busy(window_s: float = 1.0) -> float | None:
    """Fraction of all CPUs busy over the next `window_s` (this process idles meanwhile)."""
    before = _cpu_ticks()
    time.sleep(window_s)
    after = _cpu_ticks()
    if before is None or after is None or after[1] == before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


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
            stem, layer = re.fullmatch(r"(.+_l)(\d+)", name).groups()
            self.layers[int(layer)].state_dict()[stem + "0"].copy_(tensor)


def _layer_slice(hidden: Hidden, i: int) -> Hidden:
    if isinstance(hidden, tuple):
        return tuple(t[i:i + 1] for t in hidden)
    return hidden[i:i + 1]


def build_layer_model(case: Case, fused: nn.RNNBase | None = None) -> nn.Module:
    """The timed module for a layer case; with `fused` given, loaded with its weights."""
    if case.backend in ("fused", "fused_nocudnn"):
        cls = (FUSED if case.backend == "fused" else FUSED_NOCUDNN)[case.cell]
        model = cls(case.hidden, case.hidden, num_layers=case.layers, batch_first=True)
        if fused is not None:
            model.load_state_dict(fused.state_dict())
        return model
    model = LayerStack(case.backend, case.cell, case.hidden, case.layers)
    if isinstance(fused, LayerStack):    # a min cell's `loop` reference: same layout
        model.load_state_dict(fused.state_dict())
    elif fused is not None:
        model.load_fused(fused)
    return model


def train_config(case: Case) -> TrainConfig:
    """The CharRNN config of a train_step case. `backend` may be any `cells.BACKENDS` entry, so it
    is set on the dataclass directly (TrainConfig's own choices list only loop and fused)."""
    return dataclasses.replace(TrainConfig(cell=case.cell, hidden_size=case.hidden, layers=case.layers,
                                           batch_size=case.batch, seq_len=case.seq_len,
                                           dtype=case.dtype), backend=case.backend)


def build_train_model(case: Case, fused: nn.Module | None = None) -> nn.Module:
    from .models import CharRNN

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

    def run(self) -> None:
        with no_tf32(), autocast(self.case, self.device):
            if self.case.direction == "fwd":
                with torch.no_grad():
                    self.model(self.x, self.h0)
            elif self.case.direction == "fwd_bwd":
                for t in (self.x, *self.model.parameters()):
                    t.grad = None
                out, _ = self.model(self.x, self.h0)
                out.backward(self.target.to(out.dtype))
            else:
                self._train_step()

    def _train_step(self) -> None:
        logits, _ = self.model(self.x, self.h0)                                  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), self.target.flatten())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def timed_call(self) -> float:
        """Wall seconds of one synchronised call."""
        sync(self.device)
        start = time.perf_counter()
        self.run()
        sync(self.device)
        return time.perf_counter() - start


def _random_hidden(case: Case, device: torch.device, gen: torch.Generator) -> Hidden:
    n = 2 if has_cell_state(case.cell) else 1
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
    x = torch.randn(B, T, H, generator=gen).to(device).requires_grad_(case.direction == "fwd_bwd")
    target = torch.randn(B, T, H, generator=gen).to(device)
    return Workload(case, model, device, x, h0, target)


def reference_backend(cell: str) -> str:
    """What a case is checked against: `fused` (nn.*), or `loop` for a cell nn.* lacks (min cells)."""
    return REFERENCE if cell in registry.BACKENDS[REFERENCE].cells else "loop"


def reference_model(case: Case) -> nn.Module:
    """A freshly initialised reference model for the case (CPU); its weights are copied everywhere."""
    torch.manual_seed(0)
    ref = dataclasses.replace(case, backend=reference_backend(case.cell))
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
    with no_tf32(), autocast(case, device):
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


def tolerance(case: Case) -> float:
    """TOLERANCE, or the log-space scan's own (mincells.SCAN_TOLERANCE)."""
    return (SCAN_TOLERANCE if case.backend == "scan" else TOLERANCE)[case.dtype]


def assert_equivalent(case: Case, device: torch.device, fused: nn.Module) -> None:
    """Outputs and gradients of the case's backend equal `fused` on copied weights (see TOLERANCE);
    raises AssertionError naming the first tensor that differs."""
    ref_case = dataclasses.replace(case, backend=reference_backend(case.cell))
    ref = make_workload(ref_case, device, fused)
    got = make_workload(case, device, fused)
    expected = forward_backward(ref.model, ref.x, ref.h0, case, device)
    actual = forward_backward(got.model, got.x, got.h0, case, device)
    assert actual.keys() == expected.keys(), (sorted(actual), sorted(expected))
    tol = tolerance(case)
    for name, want in expected.items():
        have, want = actual[name].float(), want.float()
        assert have.shape == want.shape, f"{case.id}: {name}: shape {have.shape} != {want.shape}"
        err, scale = (have - want).abs().max().item(), max(1.0, want.abs().max().item())
        assert err <= tol * scale, (
            f"{case.id}: {name}: max |error| {err:.3g} > {tol:g} x max(1, max |ref|) = {tol * scale:.3g}")


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
        torch._dynamo.reset()  # each case pays, and reports, its own compilation
    fused = reference_model(case)
    work = make_workload(case, device, fused)
    first_call_s = work.timed_call()
    assert_equivalent(case, device, fused)
    paired_case = dataclasses.replace(case, backend=REFERENCE)
    if case.cell not in FUSED:                  # min cells: timed against nn.GRU at the same shape
        paired_case, fused = dataclasses.replace(paired_case, cell="gru"), None
    paired = None if case.backend == REFERENCE else make_workload(paired_case, device, fused)
    info = {**case.params(), "shape": case.shape, "device": str(device), "device_name": device_name(device),
            **versions(), "first_call_s": first_call_s,
            "compile_caches": os.environ.get("TORCHINDUCTOR_FORCE_DISABLE_CACHES") != "1",
            "compile_s": first_call_s if case.backend in COMPILING else 0.0,
            "tf32": False, "equivalence": f"max|err| <= {tolerance(case):g} max(1, max|ref|)",
            "paired_with": "gru-fused" if case.cell not in FUSED else REFERENCE,
            "loadavg_start": os.getloadavg()[0]}
    return Prepared(work, paired, info)


def paired_info(case_s: list[float], fused_s: list[float]) -> dict[str, Any]:
    """extra_info for rounds timed in alternation with `fused` (fused_s[i] just before case_s[i]):
    fused's median and the median of the per-round ratios case / fused. Neighbouring rounds see the
    same machine load, so the ratio holds where separate medians drift apart."""
    if not fused_s:
        return {}
    return {"paired_fused_median_ms": 1e3 * statistics.median(fused_s),
            "paired_ratio": statistics.median(c / f for c, f in zip(case_s, fused_s))}


# --------------------------------------------------------------------------- results: JSON → table

def _stats_row(bench: dict) -> dict[str, Any]:
    stats, info = bench["stats"], bench.get("extra_info", {})
    median, iqr = stats["median"] * 1e3, stats["iqr"] * 1e3
    return {"name": bench["name"], "shape": info.get("shape", bench.get("group") or bench["name"]),
            "backend": info.get("backend") or bench["name"], "median_ms": median, "iqr_ms": iqr,
            "iqr_pct": 100 * iqr / median if median else math.nan, "rounds": stats["rounds"],
            "first_call_s": info.get("first_call_s"), "compile_s": info.get("compile_s", 0.0),
            "paired": info.get("paired_ratio"), "ratio": info.get("ratio")}


def table_rows(data: dict) -> list[dict[str, Any]]:
    """One row per benchmark with median/IQR in ms, `speedup` vs `fused` of the same shape (fused
    median / this median, from separate runs; None without a fused row) and `paired` (this median /
    the median of `fused` timed in alternation with it; None where not paired)."""
    rows = [_stats_row(b) for b in data["benchmarks"]]
    fused = {r["shape"]: r["median_ms"] for r in rows if r["backend"] == REFERENCE}
    for r in rows:
        ref = fused.get(r["shape"])
        r["speedup"] = ref / r["median_ms"] if ref and r["median_ms"] else None
    return rows


def vs_fused(row: dict) -> float | None:
    """This backend's time over fused's: the paired ratio where there is one."""
    if row["paired"] is not None:
        return row["paired"]
    return 1 / row["speedup"] if row["speedup"] else None


def best_custom(rows: list[dict]) -> dict[str, tuple[str, float]]:
    """Per shape: the fastest non-fused backend and its time / fused's (`vs_fused`)."""
    best: dict[str, tuple[str, float]] = {}
    for r in rows:
        ratio = vs_fused(r)
        if r["backend"].startswith("fused") or ratio is None:
            continue
        if r["shape"] not in best or ratio < best[r["shape"]][1]:
            best[r["shape"]] = (r["backend"], ratio)
    return best


def _cell(value: float | None, fmt: str) -> str:
    return format(value, fmt) if value is not None else "-"


def format_table(data: dict) -> str:
    """Per shape: median, IQR, speedup vs fused, paired ratio, rounds, compile time; then the best
    custom backend per shape and the skipped backends with their reasons."""
    rows = table_rows(data)
    order = {b: i for i, b in enumerate(BACKENDS)}
    lines = ["speedup = fused median / median (separate runs); paired = median / median of fused "
             "timed in alternation (< 1: faster than fused)"]
    for shape, group in itertools.groupby(sorted(rows, key=lambda r: (r["shape"], order.get(r["backend"], 99))),
                                          key=lambda r: r["shape"]):
        lines.append(shape)
        lines.append(f"  {'backend':<20} {'median ms':>10} {'IQR ms':>8} {'IQR %':>6} "
                     f"{'speedup':>8} {'paired':>7} {'rounds':>6} {'compile s':>9}")
        for r in group:
            lines.append(f"  {r['backend']:<20} {r['median_ms']:>10.3f} {r['iqr_ms']:>8.3f} "
                         f"{r['iqr_pct']:>5.1f}% {_cell(r['speedup'], '.2f'):>7}x {_cell(r['paired'], '.3f'):>7} "
                         f"{r['rounds']:>6} {_cell(r['compile_s'] or None, '.1f'):>9}"
                         + (f"  harness/bare {r['ratio']:.3f}" if r["ratio"] is not None else ""))
    best = best_custom(rows)
    if best:
        lines.append("\nbest custom backend / fused (paired where timed so; < 1 = custom faster):")
        lines += [f"  {shape:<40} {b:<20} {ratio:.3f}" for shape, (b, ratio) in sorted(best.items())]
    skipped = data.get("skipped", [])
    if skipped:
        lines.append(f"\nskipped ({len(skipped)}):")
        reasons: dict[str, int] = {}
        for s in skipped:
            reasons[s["reason"]] = reasons.get(s["reason"], 0) + 1
        lines += [f"  {n:>4} x {reason}" for reason, n in sorted(reasons.items())]
    return "\n".join(lines)


def load_results(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"file={str(path)!r}: no such file") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"file={str(path)!r}: not JSON ({exc})") from None
    if not isinstance(data, dict) or "benchmarks" not in data:
        raise ConfigError(f"file={str(path)!r}: not a pytest-benchmark JSON (no 'benchmarks' key)")
    return data


# --------------------------------------------------------------------------- the bench command

def output_path(results: Path, device: torch.device, now: datetime | None = None) -> Path:
    """results/benchmarks/<host>-<device>-<timestamp>.json"""
    now = now or datetime.now(timezone.utc)
    name = device_name(device) if device.type == "cuda" else device.type
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    host = re.sub(r"[^A-Za-z0-9.-]+", "-", socket.gethostname())
    return results / "benchmarks" / f"{host}-{slug}-{now:%Y%m%dT%H%M%SZ}.json"


def pytest_command(profile: str, json_path: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", str(SUITE), "-q", "-p", "no:cacheprovider",
            "--benchmark-enable", "--benchmark-only", f"--bench-profile={profile}",
            f"--benchmark-json={json_path}", "--benchmark-columns=median,iqr,rounds",
            "--benchmark-sort=name", *extra]


def log_to_mlflow(json_path: Path, profile: str, wall_s: float, exit_code: int) -> str:
    """One run in experiment `kernels`: the JSON as artifact, the table as text, key ratios."""
    from .tracking import Tracker

    data = load_results(json_path)
    rows = table_rows(data)
    device = data["machine_info"].get("charrnn", {})
    run = Tracker().start_run(
        "kernels", f"bench-{profile}-{device.get('device', 'unknown')}",
        params={"profile": profile, "benchmarks": len(rows), "skipped": len(data.get("skipped", [])),
                **device}, tags={"charrnn.kind": "bench"}, system_metrics=False)
    run.log_artifact(json_path, "benchmarks")
    run.log_text(format_table(data), "summary.txt")
    run.log_json(rows, "summary.json")
    metrics = {"wall_s": wall_s, "pytest_exit_code": float(exit_code)}
    metrics |= {f"best_over_fused.{shape}": ratio for shape, (_, ratio) in best_custom(rows).items()}
    metrics |= {f"median_ms.{r['shape']}.{r['backend']}": r["median_ms"] for r in rows}
    metrics |= {f"ratio.{r['shape']}": r["ratio"] for r in rows if r["ratio"] is not None}
    run.log_metrics({re.sub(r"[^\w\-. :/]", "_", k): v for k, v in metrics.items()}, step=0)
    run.end("FINISHED" if exit_code == 0 else "FAILED",
            failure=None if exit_code == 0 else f"pytest exit code {exit_code}")
    return run.run_id


def run_bench(profile: str, extra: list[str], mlflow: bool = True) -> int:
    """`charrnn bench`: the suite under pytest-benchmark → JSON, table, MLflow run `kernels`."""
    from .tracking import results_dir

    if profile not in PROFILES or profile == "test":
        raise ConfigError(f"profile={profile!r}: unknown value; valid choices: quick, full")
    if not (Path.cwd() / SUITE).is_dir():
        raise ConfigError(f"{SUITE}: not found; run charrnn bench from the repository root")
    json_path = output_path(results_dir(), bench_device())
    json_path.parent.mkdir(parents=True, exist_ok=True)
    # Cold compiles: inductor's on-disk caches off, so compile_s is what a first run pays.
    env = {**os.environ, "TORCHINDUCTOR_FORCE_DISABLE_CACHES": "1"}
    start = time.perf_counter()
    code = subprocess.call(pytest_command(profile, json_path, extra), env=env)
    wall_s = time.perf_counter() - start
    if not json_path.exists():
        print(f"charrnn bench: pytest exited {code} and wrote no JSON", file=sys.stderr)
        return code or 1
    print(format_table(load_results(json_path)))
    print(f"\nJSON: {json_path}\nwall time: {wall_s:.0f} s")
    if mlflow:
        print(f"MLflow run (experiment kernels): {log_to_mlflow(json_path, profile, wall_s, code)}")
    return code
