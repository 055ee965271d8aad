"""The one registry of names → facts: cells, backends, tasks and metrics.

Every name here is a YAML key value in `ablations/*.yaml` and a `key=value` of `charrnn train`.
`config`, `rnn`, `grid`, `bench`, `results` and `report` derive their lists from these tables, so
adding a backend, a cell, a task or a metric is one entry here plus the code that computes it, which
an entry names as a string `"module:object"` (`load` imports it on first use). The module imports
nothing from torch or MLflow: the report and the results layer read it freely.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, TypeVar

Entry = TypeVar("Entry", "Cell", "Backend", "TaskEntry")


@dataclass(frozen=True)
class Cell:
    """A recurrent cell. `gates`: blocks G of its input projection (weight_ih_l0 has G*H rows);
    `has_cell_state`: its hidden state is (h, c); `recurrent`: it has hidden-to-hidden weights
    (False: a min cell, whose gates see the input alone, so a sequence can run as a scan);
    `math`: its step functions (`"module:object"`); `fused`: its vendor module (`"torch.nn:GRU"`),
    "" if it has none."""

    name: str
    summary: str
    gates: int
    math: str
    has_cell_state: bool = False
    recurrent: bool = True
    fused: str = ""


# Equivalence with the reference on copied weights, per output / gradient tensor:
#     max |got - ref| <= tol * max(1, max |ref|)
# an absolute tolerance for O(1) tensors, a relative one for large weight gradients (sums of B*T
# products). fp32 (TF32 off): 1e-5; bf16 (autocast) rounds every op to 8 mantissa bits: 5e-2.
TOLERANCE: tuple[tuple[str, float], ...] = (("fp32", 1e-5), ("bf16", 5e-2))


@dataclass(frozen=True)
class Backend:
    """How a recurrent layer is computed, and everything decided about it.

    `layer`: its layer factory (`"module:object"`, called as `factory(cell, input_size, hidden_size,
    input_combine, activation)`); `cells`: the cells it runs; `cuda_only`: why it needs CUDA ("" if
    it does not); `cpu_only`: why it runs only on the CPU; `compiles`: its first call compiles,
    builds or captures (benchmarks warm it apart); `fused`: a vendor module (nn.RNN/GRU/LSTM), the
    reference the custom paths are checked against; `cudnn`: a fused backend with cuDNN on (False:
    switched off). Vanilla options it cannot run: `concat_only` (no input_combine=add),
    `activations` (None: all). `scan`: a parallel scan over time (False: a sequential loop over
    steps). `tolerances`: (dtype, tol) of its equivalence with the reference (TOLERANCE). `support`:
    `"module:function"` returning a `capabilities.Support` — can this machine build it — checked
    before a run exists ("" when nothing needs building)."""

    name: str
    summary: str
    layer: str
    cells: tuple[str, ...] = ("vanilla", "gru", "lstm")
    cuda_only: str = ""
    cpu_only: str = ""
    compiles: bool = False
    fused: bool = False
    cudnn: bool = True
    concat_only: bool = False
    activations: tuple[str, ...] | None = None
    auto: bool = True   # `backend: auto` may pick it (False: its first call compiles for tens of seconds)
    scan: bool = False
    tolerances: tuple[tuple[str, float], ...] = TOLERANCE
    support: str = ""

    def factory(self) -> Any:
        """Its layer factory, imported on first use."""
        return load(self.layer)

    def tolerance(self, dtype: str) -> float:
        return dict(self.tolerances)[dtype]

    def runs(self, cell: str, input_combine: str = "concat", activation: str = "tanh") -> bool:
        return not self.refusal(cell, input_combine, activation)

    def refusal(self, cell: str, input_combine: str = "concat", activation: str = "tanh") -> str:
        """Why it cannot run this layer, as one line naming the key, value and valid choices ("" when it can).
        `input_combine` and `activation` shape the vanilla cell only."""
        if cell not in self.cells:
            return (f"backend={self.name!r}: does not run cell={cell}; valid backends for {cell}: "
                    f"{', '.join(backends_for(cell))}")
        if cell != "vanilla":
            return ""
        if self.concat_only and input_combine != "concat":
            usable = ", ".join(b.name for b in BACKENDS.values() if "vanilla" in b.cells and not b.concat_only)
            return (f"input_combine={input_combine!r}: backend={self.name} runs only concat; valid with "
                    f"backend={self.name}: concat (backends that run {input_combine}: {usable})")
        if self.activations is not None and activation not in self.activations:
            usable = ", ".join(b.name for b in BACKENDS.values()
                               if "vanilla" in b.cells and activation in (b.activations or (activation,)))
            return (f"activation={activation!r}: backend={self.name} supports only "
                    f"{', '.join(self.activations)}; valid with backend={self.name}: "
                    f"{', '.join(self.activations)} (backends that run {activation}: {usable})")
        return ""

    def device_restriction(self, device: str) -> str:
        """Why it cannot run on `device` (a device type, e.g. `cpu`), or "" when it can."""
        if self.cuda_only and device != "cuda":
            return self.cuda_only
        if self.cpu_only and device != "cpu":
            return self.cpu_only
        return ""


TRAINABLE_FRACTION = "trainable_fraction"


@dataclass(frozen=True)
class Metric:
    """A logged metric. `curve`: logged per step/eval (learning curves); `final`: also logged once as
    `final_<name>`; `claim`: a grid claim may judge it; `plot`: the report draws its learning curves.
    `higher_is_better` gives its direction. `margin`: the default half-width of a claim's region of
    practical equivalence, in the metric's units (0.01 nats/char for losses, 0.01 = one point for
    accuracies; 0 where no default makes sense, so an equivalence claim must state one).
    `bounds`: the metric's floor and ceiling when it has both (both arms there: nothing to compare).
    `speed`: it measures speed, so a grid judging it trains each run with nothing beside it.
    `unit`: what the report prints after a value; "%" marks a fraction (0-1) printed as a percentage,
    "log10 ..." a log10 value whose differences print as ratios (×)."""

    name: str
    higher_is_better: bool
    unit: str = ""
    curve: bool = True
    final: bool = True
    claim: bool = True
    plot: bool = False
    margin: float = 0.01
    bounds: tuple[float, float] | None = None
    speed: bool = False


def _by_name(*entries: Entry) -> dict[str, Entry]:
    return {e.name: e for e in entries}


CELLS = _by_name(
    Cell("vanilla", "Elman RNN: h = act(W x + U h + b), inputs added or concatenated", gates=1,
         math="charrnn.rnn.cell_math:VANILLA", fused="torch.nn:RNN"),
    Cell("gru", "gated recurrent unit (nn.GRU layout)", gates=3,
         math="charrnn.rnn.cell_math:GRU", fused="torch.nn:GRU"),
    Cell("lstm", "long short-term memory (nn.LSTM layout)", gates=4, has_cell_state=True,
         math="charrnn.rnn.cell_math:LSTM", fused="torch.nn:LSTM"),
    Cell("mingru", "minGRU (Feng et al. 2024): h = (1 - z) h + z g(h~), z and h~ from x alone", gates=2,
         recurrent=False, math="charrnn.rnn.mincells:MINGRU"),
    Cell("minlstm", "minLSTM (Feng et al. 2024): h = f' h + i' g(h~), f' + i' = 1, gates from x alone",
         gates=3, recurrent=False, math="charrnn.rnn.mincells:MINLSTM"),
)

_LAYERS = "charrnn.rnn.cells"   # the module of most layer factories
# concat_only on the BPTT family: its hand-written gate math assumes the state enters through W_hh h alone

BACKENDS = _by_name(
    Backend("fused", "nn.RNN/GRU/LSTM (cuDNN on GPU, native/oneDNN on CPU), the reference",
            f"{_LAYERS}:fused_layer", fused=True, concat_only=True, activations=("tanh", "relu")),
    Backend("fused_nocudnn", "nn.* with cuDNN switched off (PyTorch's own CUDA kernels)",
            f"{_LAYERS}:fused_nocudnn_layer", fused=True, cudnn=False, concat_only=True, activations=("tanh", "relu"),
            cuda_only="cuDNN can only be switched off on CUDA (off CUDA this is `fused`)"),
    Backend("loop", "an eager Python loop; each step projects its input and its state",
            f"{_LAYERS}:loop_layer", cells=tuple(CELLS)),
    Backend("loop_premul", "all input projections in one matmul, then the eager recurrence",
            f"{_LAYERS}:loop_premul_layer"),
    Backend("loop_compiled", "loop_premul with torch.compile of the step", f"{_LAYERS}:loop_compiled_layer",
            compiles=True, auto=False),
    Backend("loop_bptt", "loop_premul with hand-written backprop through time",
            "charrnn.rnn.loop_layers:BPTTRNNLayer", concat_only=True),
    Backend("loop_native", "loop_bptt's recurrence as C++ loops: per step one matmul and one fused gate kernel",
            "charrnn.rnn.loop_layers:NativeRNNLayer", cells=("gru", "lstm"), compiles=True,
            cpu_only="its fused gate kernels are C++ for the CPU (on CUDA: loop_cudagraph)", concat_only=True,
            support="charrnn.capabilities:native_support"),
    Backend("loop_bptt_compiled", "loop_bptt with compiled gate math", f"{_LAYERS}:loop_bptt_compiled_layer",
            compiles=True, concat_only=True, auto=False),
    Backend("loop_cudagraph", "loop_bptt captured as CUDA graphs", "charrnn.rnn.loop_layers:CudaGraphRNNLayer",
            compiles=True, cuda_only="CUDA graphs need a CUDA device", concat_only=True),
    Backend("scan", "log-space parallel scan over time (Heinsen 2023), chunked", "charrnn.rnn.mincells:scan_layer",
            cells=("mingru", "minlstm"), scan=True,
            tolerances=(("fp32", 1e-4), ("bf16", 5e-2))),   # chunked log-space sums: fp32 ~3e-5 at T=1024
    Backend("min_native", "input projections in one matmul, then the elementwise recurrence as a C++ loop",
            "charrnn.rnn.native_min:native_min_layer", cells=("mingru", "minlstm"), compiles=True,
            cpu_only="its recurrence is a C++ loop for the CPU", support="charrnn.capabilities:native_support"),
)
# What the custom paths are checked against, and what `auto` falls back to: the first of these that
# runs the layer (nn.* where it can, else the sequential loop, e.g. for the min cells nn.* lacks).
REFERENCES = ("fused", "loop")
DEFAULT = REFERENCES[0]   # TrainConfig's default backend
# `backend: auto`: training picks the fastest backend that passed equivalence for the config's cell,
# device and dtype on this machine (capabilities.resolve_backend); not a kernel of its own.
AUTO = "auto"


@dataclass(frozen=True)
class TaskEntry:
    """A training task. `build`: its class (`"module:object"`, called as `build(cfg)`, a
    `tasks.base.Task`); `stream`: one contiguous text per split, so eval_mode=stateful can carry a
    state along it (False: independent examples)."""

    name: str
    summary: str
    build: str
    stream: bool = False


_STREAM = "charrnn.tasks.stream:StreamTask"
TASKS = _by_name(
    TaskEntry("tinyshakespeare", "character LM on the tiny-shakespeare corpus (shipped)", _STREAM, stream=True),
    TaskEntry("nietzsche", "character LM on the Nietzsche corpus (shipped)", _STREAM, stream=True),
    TaskEntry("names", "one name per sequence (shipped names list), generation", "charrnn.tasks.sequence:NamesTask"),
    TaskEntry("arithmetic", "grade-school arithmetic strings, answer digits scored",
              "charrnn.tasks.sequence:ArithmeticTask"),
    TaskEntry("bitflip", "flip every bit of an N-bit integer, sequence to sequence",
              "charrnn.tasks.sequence:BitflipTask"),
    TaskEntry("text", "character LM on any UTF-8 file (path=FILE)", _STREAM, stream=True),
)
STREAM_TASKS = tuple(t.name for t in TASKS.values() if t.stream)  # eval_mode=stateful runs on these
# Config keys that only some tasks read; every other key applies to every task. A run logs as
# params only the keys that apply to its task (no arith_* on a corpus).
TASK_KEYS: dict[str, tuple[str, ...]] = {
    "path": ("text",),
    "arith_digits": ("arithmetic",),
    "arith_ops": ("arithmetic",),
    "bitflip_bits": ("bitflip",),
}


def key_applies(key: str, task: str) -> bool:
    """Does config key `key` change anything for `task`?"""
    return task in TASK_KEYS.get(key, (task,))

_METRICS = (
    Metric("val_loss", higher_is_better=False, unit="nats/char", plot=True),
    Metric("train_loss", higher_is_better=False, unit="nats/char", plot=True),
    Metric("val_accuracy", higher_is_better=True, unit="%", plot=True, bounds=(0.0, 1.0)),
    Metric("val_exact_match", higher_is_better=True, unit="%", bounds=(0.0, 1.0)),
    # the same model scored on fixed train batches at each eval, as val is: the train-val gap like for like
    Metric("train_eval_loss", higher_is_better=False, unit="nats/char", plot=True),
    # test_split=true: scored once, after the last step; no curve, so nothing can select on it
    Metric("test_loss", higher_is_better=False, unit="nats/char", curve=False),
    Metric("test_accuracy", higher_is_better=True, unit="%", curve=False, bounds=(0.0, 1.0)),
    Metric("test_exact_match", higher_is_better=True, unit="%", curve=False, bounds=(0.0, 1.0)),
    Metric("tokens_per_s", higher_is_better=True, unit="tokens/s", margin=0.0, speed=True),
    Metric("grad_norm", higher_is_better=False, final=False, claim=False),
    Metric("clip_fraction", higher_is_better=False, unit="%", claim=False, bounds=(0.0, 1.0)),  # steps clipped
    Metric("step_time_ms", higher_is_better=False, unit="ms", final=False, claim=False),
    # val_loss − train_eval_loss at each eval: both scored alike, at the same point (memorisation)
    Metric("generalization_gap", higher_is_better=False, unit="nats/char"),
    # derived by a trainability claim from every tuned run (not logged): the share of the learning-rate
    # grid within δ of the arm's best; only the unit of its effect, in percentage points
    Metric(TRAINABLE_FRACTION, higher_is_better=True, unit="%", curve=False, final=False, claim=False, margin=0.0,
           bounds=(0.0, 1.0)),
    # log10 of final_tokens_per_s: a difference of 1 is a 10x speed ratio (margin 1 tests "10x")
    Metric("log10_tokens_per_s", higher_is_better=True, unit="log10 tokens/s", curve=False, margin=0.0,
           speed=True),
    # test split scored under the run's own hidden_init protocol (random / carried states), once
    Metric("test_own_loss", higher_is_better=False, unit="nats/char", curve=False),
    Metric("test_own_accuracy", higher_is_better=True, unit="%", curve=False, bounds=(0.0, 1.0)),
    Metric("test_own_exact_match", higher_is_better=True, unit="%", curve=False, bounds=(0.0, 1.0)),
)
# The learning check: every run logs once, on its own evaluation batches, what a trivial model of
# its train split scores (charrnn.tasks.baseline) as `baseline_<metric>`, beside `final_<metric>`.
BASELINED = ("val_loss", "train_eval_loss", "test_loss", "test_own_loss", "val_accuracy", "val_exact_match",
             "test_accuracy", "test_exact_match", "test_own_accuracy", "test_own_exact_match")
_BASELINES = tuple(Metric(f"baseline_{m.name}", m.higher_is_better, m.unit, curve=False, final=False,
                          claim=False, bounds=m.bounds) for m in _METRICS if m.name in BASELINED)
METRICS: dict[str, Metric] = {m.name: m for m in _METRICS + _BASELINES}

# Manipulation checks: axis -> the final metric that is > 0 in a run where its intervention
# engaged. A claim on such an axis whose arms never engaged is "not tested".
ENGAGEMENT: dict[str, str] = {"grad_clip": "final_clip_fraction"}


def load(ref: str) -> Any:
    """The object a `"module:object"` reference names, imported on first use."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def reference(cell: str, input_combine: str = "concat", activation: str = "tanh") -> str:
    """The backend a layer of `cell` is checked against (see REFERENCES)."""
    return next(name for name in REFERENCES if BACKENDS[name].runs(cell, input_combine, activation))


def layer_backend(backend: str, cell: str, input_combine: str = "concat", activation: str = "tanh") -> str:
    """The backend that builds a layer named `backend`: itself, or for `auto` (which training resolves
    by probing, `capabilities.resolve_backend`) the reference, whose weights every candidate shares."""
    return reference(cell, input_combine, activation) if backend == AUTO else backend


def backend_names() -> tuple[str, ...]:
    return tuple(BACKENDS)


def min_cells() -> tuple[str, ...]:
    """The cells without hidden-to-hidden weights (minGRU, minLSTM)."""
    return tuple(c.name for c in CELLS.values() if not c.recurrent)


def backends_for(cell: str) -> tuple[str, ...]:
    """The backends that run `cell`, in table order."""
    return tuple(b.name for b in BACKENDS.values() if cell in b.cells)


def auto_candidates(cell: str) -> tuple[str, ...]:
    """The backends `auto` may choose among for `cell` (device limits apart)."""
    return tuple(b.name for b in BACKENDS.values() if b.auto and cell in b.cells)


def cuda_only() -> dict[str, str]:
    """Backend → why it needs CUDA, for the backends that do."""
    return {b.name: b.cuda_only for b in BACKENDS.values() if b.cuda_only}


def cpu_only() -> dict[str, str]:
    """Backend → why it runs only on the CPU, for the backends that do."""
    return {b.name: b.cpu_only for b in BACKENDS.values() if b.cpu_only}


def fused_backends() -> tuple[str, ...]:
    return tuple(b.name for b in BACKENDS.values() if b.fused)


def compiling_backends() -> tuple[str, ...]:
    return tuple(b.name for b in BACKENDS.values() if b.compiles)


def curve_metrics() -> tuple[str, ...]:
    return tuple(m.name for m in _METRICS if m.curve)


def plotted_metrics() -> tuple[str, ...]:
    return tuple(m.name for m in _METRICS if m.plot)


def final_metrics() -> tuple[str, ...]:
    """The `final_*` metric names a finished run carries."""
    return tuple(f"final_{m.name}" for m in _METRICS if m.final)


def claim_metrics() -> tuple[str, ...]:
    return tuple(m.name for m in _METRICS if m.claim)


def baseline_of(metric: str) -> str | None:
    """The `baseline_*` metric a run logs for `metric` (`final_` prefix allowed), None if none."""
    name = metric.removeprefix("final_")
    return f"baseline_{name}" if name in BASELINED else None


def higher_is_better(metric: str) -> bool:
    """Direction of a metric, `final_` prefix allowed. Unknown names are a KeyError, not a guess."""
    return METRICS[metric.removeprefix("final_")].higher_is_better
