"""The one registry of names → facts: cells, backends, tasks and metrics.

Every name here is a YAML key value in `ablations/*.yaml` and a `key=value` of `charrnn train`.
`config`, `cells`, `grid`, `bench`, `results` and `report` derive their lists from these tables, so
adding a backend, a cell, a task or a metric is one entry here (plus its implementation). The module
imports nothing from torch or MLflow: the report and the results layer read it freely.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backend:
    """How a recurrent layer is computed. `cells`: the cells it runs; `cuda_only`: why it needs CUDA
    ("" if it does not); `cpu_only`: why it runs only on the CPU; `compiles`: its first call compiles,
    builds or captures (benchmarks warm it apart);
    `fused`: a vendor module (nn.RNN/GRU/LSTM), the reference the custom paths are checked against."""

    name: str
    summary: str
    cells: tuple[str, ...] = ("vanilla", "gru", "lstm")
    cuda_only: str = ""
    cpu_only: str = ""
    compiles: bool = False
    fused: bool = False


@dataclass(frozen=True)
class Metric:
    """A logged metric. `curve`: logged per step/eval (learning curves); `final`: also logged once as
    `final_<name>`; `claim`: a grid claim may judge it; `plot`: the report draws its learning curves.
    `higher_is_better` gives its direction. `margin`: the default half-width of a claim's region of
    practical equivalence, in the metric's units (0.01 nats/char for losses, 0.01 = one point for
    accuracies; 0 where no default makes sense, so an equivalence claim must state one).
    `bounds`: the metric's floor and ceiling when it has both (both arms there: nothing to compare).
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


CELLS: dict[str, str] = {
    "vanilla": "Elman RNN: h = act(W x + U h + b), inputs added or concatenated",
    "gru": "gated recurrent unit (nn.GRU layout)",
    "lstm": "long short-term memory (nn.LSTM layout)",
    "mingru": "minGRU (Feng et al. 2024): h = (1 - z) h + z g(h~), z and h~ from x alone",
    "minlstm": "minLSTM (Feng et al. 2024): h = f' h + i' g(h~), f' + i' = 1, gates from x alone",
}

_BACKENDS = (
    Backend("fused", "nn.RNN/GRU/LSTM (cuDNN on GPU, native/oneDNN on CPU), the reference", fused=True),
    Backend("fused_nocudnn", "nn.* with cuDNN switched off (PyTorch's own CUDA kernels)", fused=True,
            cuda_only="cuDNN can only be switched off on CUDA (off CUDA this is `fused`)"),
    Backend("loop", "an eager Python loop; each step projects its input and its state",
            cells=("vanilla", "gru", "lstm", "mingru", "minlstm")),
    Backend("loop_premul", "all input projections in one matmul, then the eager recurrence"),
    Backend("loop_compiled", "loop_premul with torch.compile of the step", compiles=True),
    Backend("loop_bptt", "loop_premul with hand-written backprop through time"),
    Backend("loop_native", "loop_bptt's recurrence as C++ loops: per step one matmul and one fused gate kernel",
            cells=("gru", "lstm"), compiles=True,
            cpu_only="its fused gate kernels are C++ for the CPU (on CUDA: loop_cudagraph)"),
    Backend("loop_bptt_compiled", "loop_bptt with compiled gate math", compiles=True),
    Backend("loop_cudagraph", "loop_bptt captured as CUDA graphs", compiles=True,
            cuda_only="CUDA graphs need a CUDA device"),
    Backend("scan", "log-space parallel scan over time (Heinsen 2023), chunked", cells=("mingru", "minlstm")),
)
BACKENDS: dict[str, Backend] = {b.name: b for b in _BACKENDS}

TASKS: dict[str, str] = {
    "tinyshakespeare": "character LM on the tiny-shakespeare corpus (shipped)",
    "nietzsche": "character LM on the Nietzsche corpus (shipped)",
    "names": "one name per sequence (shipped names list), generation",
    "arithmetic": "grade-school arithmetic strings, answer digits scored",
    "bitflip": "flip every bit of an N-bit integer, sequence to sequence",
    "text": "character LM on any UTF-8 file (path=FILE)",
}
STREAM_TASKS = ("tinyshakespeare", "nietzsche", "text")  # one contiguous text per split (eval_mode=stateful)

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
    Metric("tokens_per_s", higher_is_better=True, unit="tokens/s", margin=0.0),
    Metric("grad_norm", higher_is_better=False, final=False, claim=False),
    Metric("clip_fraction", higher_is_better=False, unit="%", claim=False, bounds=(0.0, 1.0)),  # steps clipped
    Metric("step_time_ms", higher_is_better=False, unit="ms", final=False, claim=False),
    # val_loss − train_eval_loss at each eval: both scored alike, at the same point (memorisation)
    Metric("generalization_gap", higher_is_better=False, unit="nats/char"),
    # log10 of final_tokens_per_s: a difference of 1 is a 10x speed ratio (margin 1 tests "10x")
    Metric("log10_tokens_per_s", higher_is_better=True, unit="log10 tokens/s", curve=False, margin=0.0),
    # test split scored under the run's own hidden_init protocol (random / carried states), once
    Metric("test_own_loss", higher_is_better=False, unit="nats/char", curve=False),
    Metric("test_own_accuracy", higher_is_better=True, unit="%", curve=False, bounds=(0.0, 1.0)),
    Metric("test_own_exact_match", higher_is_better=True, unit="%", curve=False, bounds=(0.0, 1.0)),
)
METRICS: dict[str, Metric] = {m.name: m for m in _METRICS}

# Manipulation checks: axis -> the final metric that is > 0 in a run where its intervention
# engaged. A claim on such an axis whose arms never engaged is "not tested".
ENGAGEMENT: dict[str, str] = {"grad_clip": "final_clip_fraction"}


def backend_names() -> tuple[str, ...]:
    return tuple(BACKENDS)


def cuda_only() -> dict[str, str]:
    """Backend → why it needs CUDA, for the backends that do."""
    return {b.name: b.cuda_only for b in _BACKENDS if b.cuda_only}


def cpu_only() -> dict[str, str]:
    """Backend → why it runs only on the CPU, for the backends that do."""
    return {b.name: b.cpu_only for b in _BACKENDS if b.cpu_only}


def fused_backends() -> tuple[str, ...]:
    return tuple(b.name for b in _BACKENDS if b.fused)


def compiling_backends() -> tuple[str, ...]:
    return tuple(b.name for b in _BACKENDS if b.compiles)


def curve_metrics() -> tuple[str, ...]:
    return tuple(m.name for m in _METRICS if m.curve)


def plotted_metrics() -> tuple[str, ...]:
    return tuple(m.name for m in _METRICS if m.plot)


def final_metrics() -> tuple[str, ...]:
    """The `final_*` metric names a finished run carries."""
    return tuple(f"final_{m.name}" for m in _METRICS if m.final)


def claim_metrics() -> tuple[str, ...]:
    return tuple(m.name for m in _METRICS if m.claim)


def higher_is_better(metric: str) -> bool:
    """Direction of a metric, `final_` prefix allowed. Unknown names are a KeyError, not a guess."""
    return METRICS[metric.removeprefix("final_")].higher_is_better
