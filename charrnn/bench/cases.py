"""Benchmark cases and profiles: what the kernel suite times, and its closed-form FLOP count.

Every case is one (cell, backend, hidden, batch, seq_len, layers, dtype, direction). The layer
input width equals the hidden size; `fused` and `fused_nocudnn` stack their layers inside one
nn.RNN/GRU/LSTM (num_layers=L, so cuDNN sees the whole stack), every other backend stacks L
single layers from `cells.make_layer`. bf16 runs under autocast with fp32 master weights, as
`TrainConfig.dtype=bf16` does.

Directions: `fwd` (no grad), `bwd` (the backward pass alone, its forward run untimed before each
round), `fwd_bwd` (both), `train_step` (a whole CharRNN optimiser step).

Which backends a profile times is data: `Profile.backends` (every registered backend by default);
adding a backend or a cell to a sweep is one entry in the tuples below; a profile times a backend
only with the cells `registry.BACKENDS[backend].cells` lists. The min cells (minGRU / minLSTM,
charrnn/rnn/mincells.py) come in as `Profile.extra_cases` (`scan_cases`): checked against their `loop`
(nn.* has no such cell) and timed in alternation with nn.GRU `fused` at the same shape.
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

from charrnn import registry

REFERENCE = registry.DEFAULT   # the vendor kernel every case is timed against
COMPILING = registry.compiling_backends()  # first call compiles/captures: warmed and timed apart
DIRECTIONS = ("fwd", "bwd", "fwd_bwd")
# Passes over the weights per direction: forward 1 matmul per gate block, backward 2 (d input and
# d weight), so fwd+bwd = 3x the forward (the usual 2/4/6 N FLOPs rule).
PASSES = {"fwd": 1, "bwd": 2, "fwd_bwd": 3, "train_step": 3}


def gates(cell: str) -> int:
    """Gate blocks G of a cell's input projection (G*H rows of weight_ih)."""
    return registry.CELLS[cell].gates


def recurrent_width(cell: str, hidden: int) -> int:
    """Columns of the hidden-to-hidden matmul: H, or 0 for a min cell (its gates see x alone)."""
    return hidden if registry.CELLS[cell].recurrent else 0


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
    direction: str = "fwd_bwd"  # fwd | bwd | fwd_bwd | train_step

    @property
    def shape(self) -> str:
        """Everything but the backend: the rows one table block compares."""
        return (f"{self.cell}-h{self.hidden}-b{self.batch}-t{self.seq_len}-l{self.layers}"
                f"-{self.dtype}-{self.direction}")

    @property
    def id(self) -> str:
        return f"{self.shape}-{self.backend}"

    @property
    def tokens(self) -> int:
        """Tokens one call processes: batch x seq_len."""
        return self.batch * self.seq_len

    def flops(self) -> int:
        """Closed-form matmul FLOPs of the recurrent layers: per layer, step and batch row
        gates x 2 (I + H) H (input and hidden projection; I = H here; a min cell has no hidden
        projection: gates x 2 I H), x 3 for fwd+bwd, x 2 for bwd. Elementwise gate math and the
        min cells' scan are left out (O(G H) per step against O(G H^2)); a train_step case counts
        its RNN layers only (embedding and head not included)."""
        width = self.hidden + recurrent_width(self.cell, self.hidden)
        per_row_step = gates(self.cell) * 2 * width * self.hidden
        return per_row_step * self.batch * self.seq_len * self.layers * PASSES[self.direction]

    def matmul_shapes(self) -> dict[str, tuple[int, int, int]]:
        """(m, k, n) of the case's two matmul kinds: `all_steps` projects every step's input at
        once (T*B, I) x (I, G*H), `one_step` is one step's (B, H) x (H, G*H) (none for a min cell)."""
        n = gates(self.cell) * self.hidden
        shapes = {"all_steps": (self.seq_len * self.batch, self.hidden, n)}
        if recurrent_width(self.cell, self.hidden):
            shapes["one_step"] = (self.batch, self.hidden, n)
        return shapes

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
    backends: tuple[str, ...] = registry.backend_names()  # the backends timed at every shape
    harness_rounds: int = 0          # rounds of the harness-vs-bare-loop benchmark (0: not run)
    extra_cases: tuple[Case, ...] = ()  # cases beyond shape x backend (the min cells: `scan_cases`)

    def cases(self) -> list[Case]:
        cases = [Case(s[0], b, *s[1:]) for s in self.layer_shapes for b in self.backends
                 if s[0] in registry.BACKENDS[b].cells] + list(self.extra_cases)
        return list({c.id: c for c in cases}.values())  # an extra case may repeat a shape's case

    def train_cases(self) -> list[Case]:
        return [Case(s[0], b, *s[1:], direction="train_step") for s in self.train_shapes for b in self.backends
                if s[0] in registry.BACKENDS[b].cells]

    def rounds(self, one_call_s: float) -> int:
        return int(min(self.max_rounds, max(self.min_rounds, self.target_s / max(one_call_s, 1e-9))))


def _sweep(cells, base: dict[str, Any], axes: dict[str, tuple], dtypes, directions) -> tuple[tuple, ...]:
    """fastrnns-style grid: the base shape, then one axis at a time through its values."""
    shapes = [base] + [{**base, axis: v} for axis, values in axes.items() for v in values if v != base[axis]]
    keys = ("hidden", "batch", "seq_len", "layers")
    return tuple((cell, *(s[k] for k in keys), dtype, direction)
                 for cell, s, dtype, direction in itertools.product(cells, shapes, dtypes, directions))


CELL_NAMES = tuple(c.name for c in registry.CELLS.values() if c.recurrent)


# --- min cells (charrnn/rnn/mincells.py): scan vs loop vs nn.GRU fused at one shape, time vs T --------
def scan_cases(hidden: int, batch: int, seq_lens: tuple[int, ...], dtypes=("fp32",),
               direction: str = "fwd_bwd") -> tuple[Case, ...]:
    """Every min cell on each of its backends, and nn.GRU (`gru`, `fused`) at the same shape: the
    comparison the kernels page plots against T (charrnn/report/kernels_scan.py)."""
    arms = [(c, b) for c in registry.min_cells() for b in registry.backends_for(c)] + [("gru", REFERENCE)]
    return tuple(Case(c, b, hidden, batch, t, 1, dt, direction)
                 for t in seq_lens for dt in dtypes for c, b in arms)


SCAN_SEQ_LENS = (64, 256, 1024)


def tolerance(case: Case) -> float:
    """The case's equivalence tolerance with its reference: its backend's (`registry.Backend.tolerance`)."""
    return registry.BACKENDS[case.backend].tolerance(case.dtype)


def paired_case(case: Case) -> Case | None:
    """The case timed in alternation with `case`: `fused` at the same shape, nn.GRU `fused` at the
    same shape for a min cell (nn.* has none), None for `fused` itself."""
    if case.backend == REFERENCE:
        return None
    cell = case.cell if registry.CELLS[case.cell].fused else "gru"
    return dataclasses.replace(case, cell=cell, backend=REFERENCE)
# The hidden-size sweep: fixed B and T, H from 32 to 1024 with fine steps at 64-256 (where seed 001
# reports a discontinuous jump), the reference and the best custom backend of each device (a
# backend the device cannot run is skipped with its reason).
SWEEP_HIDDEN = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 384, 512, 768, 1024)
SWEEP_CELLS = ("vanilla", "gru", "lstm")

PROFILES: dict[str, Profile] = {
    # make test: correctness only (benchmarks disabled), tiny shapes; `bwd` equals `fwd_bwd` there
    # (one untimed call), so it is left out to keep make test short.
    "test": Profile(
        layer_shapes=tuple((c, 16, 4, 8, layers, "fp32", d) for c in CELL_NAMES
                           for layers, d in ((1, "fwd"), (1, "fwd_bwd"), (2, "fwd_bwd"))),
        train_shapes=tuple((c, 16, 4, 8, 1, "fp32") for c in CELL_NAMES),
        target_s=0.0, min_rounds=1, max_rounds=1, warmup_rounds=0, harness_rounds=1,
        extra_cases=scan_cases(16, 4, (8, 100)) + scan_cases(16, 4, (8,), direction="fwd")),
    # make bench: CPU, a few shapes per cell (843 s on 2 cores, every backend paired with fused).
    "quick": Profile(
        layer_shapes=tuple((c, h, 32, 64, 1, "fp32", d) for c in CELL_NAMES
                           for h, d in ((256, "fwd_bwd"), (256, "fwd"), (256, "bwd"), (128, "fwd_bwd"))),
        train_shapes=tuple((c, 128, 32, 64, 1, "fp32") for c in CELL_NAMES),
        target_s=0.6, min_rounds=15, max_rounds=150, warmup_rounds=3,
        quiet_wait_s=15.0, quiet_budget_s=150.0, harness_rounds=8, extra_cases=scan_cases(256, 32, SCAN_SEQ_LENS)),
    # make bench PROFILE=sweep_hidden: tokens/s against H at B32 T64, fwd+bwd.
    "sweep_hidden": Profile(
        layer_shapes=tuple((c, h, 32, 64, 1, "fp32", "fwd_bwd") for c in SWEEP_CELLS for h in SWEEP_HIDDEN),
        train_shapes=(), target_s=0.25, min_rounds=5, max_rounds=40, warmup_rounds=1,
        quiet_wait_s=3.0, quiet_budget_s=45.0, backends=("fused", "loop_bptt", "loop_native", "loop_cudagraph")),
    # make gpu-check: fastrnns' shape (H512 B64 T100 L1), fp32 and bf16, fwd / bwd / fwd+bwd; no
    # torch.compile backends (their compile time alone would not fit the GPU budget; `full` times them).
    "gpu": Profile(
        layer_shapes=tuple((c, 512, 64, 100, 1, dt, d) for c in CELL_NAMES for dt in ("fp32", "bf16")
                           for d in DIRECTIONS),
        train_shapes=(), target_s=0.3, min_rounds=10, max_rounds=60, warmup_rounds=5,
        backends=("fused", "fused_nocudnn", "loop_bptt", "loop_cudagraph")),
    # make bench PROFILE=full: the GPU grid around fastrnns' shape (H512 B64 T100 L1).
    "full": Profile(
        layer_shapes=_sweep(CELL_NAMES, {"hidden": 512, "batch": 64, "seq_len": 100, "layers": 1},
                            {"hidden": (64, 128, 256, 512, 1024, 2048), "batch": (1, 8, 32, 64, 128),
                             "seq_len": (16, 64, 256, 1024), "layers": (1, 2, 4)},
                            ("fp32", "bf16"), ("fwd", "fwd_bwd")),
        train_shapes=tuple((c, h, 64, 100, 1, dt) for c in CELL_NAMES for h in (256, 1024)
                           for dt in ("fp32", "bf16")),
        target_s=1.0, min_rounds=10, max_rounds=100, warmup_rounds=10, harness_rounds=8,
        extra_cases=scan_cases(512, 64, SCAN_SEQ_LENS, ("fp32", "bf16"))),
}


def profile_named(name: str) -> Profile:
    """The profile `name`; ConfigError naming the valid ones otherwise."""
    from charrnn.config import ConfigError

    if name not in PROFILES:
        raise ConfigError(f"profile={name!r}: unknown value; valid choices: {', '.join(PROFILES)}")
    return PROFILES[name]
