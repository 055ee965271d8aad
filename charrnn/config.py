"""The one training config: a frozen dataclass, its choices, and parsing at the edge.

Every key here is a YAML key in `ablations/*.yaml`, a `key=value` CLI argument of
`charrnn train`, and an MLflow param of the run it describes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_type_hints

from charrnn import registry


IDENTITY_SCHEMA = 1   # bump when the meaning of an existing key (or its default) changes


def _sha16(obj: Any) -> str:
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]



class ConfigError(ValueError):
    """Bad user input. Its message is one line naming the key, the bad value and the valid choices."""


@dataclass(frozen=True)
class TrainConfig:
    # --- task / data ---
    task: str = "tinyshakespeare"   # tinyshakespeare | nietzsche | names | arithmetic | bitflip | text
    path: str = ""                  # UTF-8 file for task=text
    dataset_fraction: float = 1.0   # leading share of the training split kept, in (0, 1]
    arith_digits: int = 2           # arithmetic: operands have 1..arith_digits digits
    arith_ops: str = "+"            # arithmetic: operators drawn from these characters (+-*)
    bitflip_bits: int = 8           # bitflip: width N of the integers
    # --- model ---
    cell: str = "gru"               # vanilla | gru | lstm | mingru | minlstm (registry.CELLS)
    backend: str = registry.DEFAULT  # fused (nn.RNN/GRU/LSTM, cuDNN on GPU) | loop (Python loop) | ... | scan
                                    # (min cells) | auto (the fastest equivalent one on this machine, chosen
                                    # at train time); every backend and the cells it runs: registry.BACKENDS
    input_combine: str = "concat"   # vanilla only: add (project x, add to h, one hidden matrix) | concat
    activation: str = "tanh"        # vanilla only: tanh | relu | identity
    input: str = "embedding"        # embedding | onehot
    embed_size: int = 0             # embedding width; 0 = hidden_size
    hidden_size: int = 128          # hidden units per layer
    layers: int = 1                 # 1..8 stacked recurrent layers
    residual: bool = False          # residual connections around each layer (projected if widths differ)
    hidden_init: str = "zero"       # zero | random (fresh every batch) | epoch_zero | epoch_random | learned
    # --- optimisation ---
    optimizer: str = "adam"         # adam | sgd | rmsprop
    lr: float = 2e-3                # learning rate
    lr_schedule: str = "constant"   # constant | cosine (from lr down to lr/10 at the last step)
    grad_clip: float = 5.0          # max global grad norm; 0 = off
    steps: int = 500                # optimiser steps
    max_time_s: float = 0.0         # wall-clock budget of the training loop (0 = off); steps is then an upper bound
    batch_size: int = 32            # sequences per batch
    seq_len: int = 64               # characters per sequence (corpora; sequence tasks use their own length)
    eval_interval: int = 100        # steps between evaluations (and checkpoints); the last step always evaluates
    eval_batches: int = 10          # fixed validation batches per evaluation
    dtype: str = "fp32"             # fp32 | bf16 (autocast)
    device: str = "auto"            # auto (cuda > mps > cpu) | cpu | cuda | mps
    seed: int = 0                   # seeds torch, Python, the data order and random initial states
    # --- samples ---
    sample_length: int = 200        # characters in the logged sample
    sample_temperature: float = 0.8  # softmax temperature of the logged sample
    # --- evaluation protocol ---
    test_split: bool = False        # also hold out a test split, scored once at the end (data.py: split rules)
    eval_mode: str = "windows"      # windows (eval_batches fixed windows, each from a fresh state) |
                                    # stateful (corpora: the whole split, state carried across windows)
    # --- model options added later (defaults keep every earlier run's identity) ---
    residual_mode: str = "every_layer"  # every_layer (around each layer, layer 0 projected) | between_layers
    forget_bias: float = 0.0        # lstm: initial forget-gate bias (b_ih; b_hh's part zeroed); 0 = PyTorch's
    # --- convergence budget (patience > 0): train until val_loss stops improving; steps is then the cap ---
    patience: int = 0               # evaluations in a row without improvement before stopping; 0 = off
    min_improvement: float = 0.0    # relative: an eval improves when val_loss < best * (1 - min_improvement)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def params(self) -> dict[str, Any]:
        """The keys a run logs as MLflow params: those that apply to its task (`registry.TASK_KEYS`)."""
        return {k: v for k, v in self.to_dict().items() if registry.key_applies(k, self.task)}

    def identity(self) -> dict[str, Any]:
        """The canonical config: the schema version, `task`, and only the keys whose values
        differ from the defaults. A key added later with a default leaves it unchanged."""
        changed = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                   if f.name == "task" or getattr(self, f.name) != f.default}
        return {"schema": IDENTITY_SCHEMA, "config": changed}

    def identity_hash(self) -> str:
        """Stable identity of this run: sha256 of `identity()` as canonical JSON, 16 hex chars."""
        return _sha16(self.identity())

    def run_name(self) -> str:
        """Readable MLflow run name, e.g. `gru-h256-l2-s0`."""
        parts = [self.cell, f"h{self.hidden_size}", f"l{self.layers}"]
        if self.cell == "vanilla":
            parts.insert(1, self.input_combine)
        if self.backend != registry.DEFAULT:
            parts.append(self.backend)
        return "-".join(parts + [f"s{self.seed}"])


CHOICES: dict[str, tuple[str, ...]] = {
    "task": tuple(registry.TASKS),
    "cell": tuple(registry.CELLS),
    "backend": registry.backend_names(),     # facts about each: registry.BACKENDS
    "input_combine": ("add", "concat"),
    "activation": ("tanh", "relu", "identity"),
    "input": ("embedding", "onehot"),
    "hidden_init": ("zero", "random", "epoch_zero", "epoch_random", "learned"),
    "optimizer": ("adam", "sgd", "rmsprop"),
    "lr_schedule": ("constant", "cosine"),
    "dtype": ("fp32", "bf16"),
    "device": ("auto", "cpu", "cuda", "mps"),
    "eval_mode": ("windows", "stateful"),
    "residual_mode": ("every_layer", "between_layers"),
}

CUDA_ONLY: dict[str, str] = registry.cuda_only()          # backend → why it needs CUDA
CPU_ONLY: dict[str, str] = registry.cpu_only()            # backend → why it runs only on the CPU

MAX_WIDTH = 16_384   # hidden and embedding units: a 16384-wide LSTM layer is already 2.1e9 weights
# Inclusive numeric ranges: (low, high, description of the valid range).
RANGES: dict[str, tuple[float, float, str]] = {
    "dataset_fraction": (0.0, 1.0, "a number in (0, 1]"),
    "arith_digits": (1, 6, "an integer in 1..6"),
    "bitflip_bits": (1, 64, "an integer in 1..64"),
    "embed_size": (0, MAX_WIDTH, f"an integer in 0..{MAX_WIDTH} (0 = hidden_size)"),
    "hidden_size": (1, MAX_WIDTH, f"an integer in 1..{MAX_WIDTH}"),
    "layers": (1, 8, "an integer in 1..8"),
    "lr": (0.0, math.inf, "a number > 0"),
    "grad_clip": (0.0, math.inf, "a number >= 0 (0 = off)"),
    "steps": (1, math.inf, "an integer >= 1"),
    "max_time_s": (0.0, math.inf, "a number >= 0 (0 = off)"),
    "batch_size": (1, math.inf, "an integer >= 1"),
    "seq_len": (1, math.inf, "an integer >= 1"),
    "eval_interval": (1, math.inf, "an integer >= 1"),
    "eval_batches": (1, math.inf, "an integer >= 1"),
    "seed": (0, 2**31 - 1, "an integer in 0..2**31-1"),
    "sample_length": (0, math.inf, "an integer >= 0"),
    "sample_temperature": (0.0, math.inf, "a number > 0"),
    "forget_bias": (-math.inf, math.inf, "a finite number (0 = PyTorch's default init)"),
    "patience": (0, math.inf, "an integer >= 0 (0 = off: train all steps)"),
    "min_improvement": (0.0, 1.0, "a number in [0, 1) (relative improvement of val_loss)"),
}
OPEN_LOW = {"dataset_fraction", "lr", "sample_temperature"}  # ranges excluding their lower bound
OPEN_HIGH = {"min_improvement"}                                # ranges excluding their upper bound

FIELD_TYPES: dict[str, type] = {
    name: hint for name, hint in get_type_hints(TrainConfig).items()
}
FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrainConfig))


def _coerce(key: str, value: Any) -> Any:
    """Convert a YAML value or a CLI string to the field's type, or raise ConfigError."""
    kind = FIELD_TYPES[key]
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key}={value!r}: expected true or false")
    if kind is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}={value!r}: expected an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}={value!r}: expected an integer")
    if kind is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}={value!r}: expected a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}={value!r}: expected a number") from None
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ConfigError(f"{key}={value!r}: expected a string")
    return str(value)


# Values a key accepts beyond its CHOICES: `auto` is a choice of backend, not a kernel.
ACCEPTED: dict[str, tuple[str, ...]] = {**CHOICES, "backend": (registry.AUTO, *CHOICES["backend"])}


def _check_value(key: str, value: Any) -> None:
    if key in ACCEPTED and value not in ACCEPTED[key]:
        raise ConfigError(f"{key}={value!r}: unknown value; valid choices: {', '.join(ACCEPTED[key])}")
    if isinstance(value, float) and not math.isfinite(value):
        valid = RANGES[key][2] if key in RANGES else "a finite number"
        raise ConfigError(f"{key}={value!r}: not a finite number; valid: {valid}")
    if key in RANGES:
        low, high, text = RANGES[key]
        too_low = value <= low if key in OPEN_LOW else value < low
        too_high = value >= high if key in OPEN_HIGH else value > high
        if too_low or too_high or (isinstance(value, float) and math.isnan(value)):
            raise ConfigError(f"{key}={value!r}: out of range; valid: {text}")


def _check_combination(cfg: TrainConfig) -> None:
    if cfg.task == "text":
        if not cfg.path:
            raise ConfigError("path='': task=text needs path=FILE (a UTF-8 text file)")
        if not Path(cfg.path).is_file():
            raise ConfigError(f"path={cfg.path!r}: file not found (task=text needs an existing UTF-8 file)")
    check_layer(cfg.backend, cfg.cell, cfg.input_combine, cfg.activation)
    if cfg.device != "auto":
        check_backend_device(cfg.backend, cfg.device)
    if cfg.arith_ops and set(cfg.arith_ops) - set("+-*"):
        raise ConfigError(f"arith_ops={cfg.arith_ops!r}: unknown operator; valid characters: + - *")
    if not cfg.arith_ops:
        raise ConfigError("arith_ops='': needs at least one operator; valid characters: + - *")
    if cfg.min_improvement > 0 and cfg.patience == 0:
        raise ConfigError(f"min_improvement={cfg.min_improvement!r}: applies only with a convergence budget; "
                          "valid: patience >= 1 (evaluations without improvement before stopping), or "
                          "min_improvement=0")
    if cfg.eval_mode == "stateful" and cfg.task not in registry.STREAM_TASKS:
        raise ConfigError(f"eval_mode='stateful': task={cfg.task} has independent examples, no stream to "
                          f"carry a state along; valid: eval_mode=windows, or a task among "
                          f"{', '.join(registry.STREAM_TASKS)}")


def is_finite_number(value: Any) -> bool:
    """An int or float (not a bool) that is neither NaN nor infinite, e.g. a claim's threshold."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_layer(backend: str, cell: str, input_combine: str = "concat", activation: str = "tanh") -> None:
    """The one check of a recurrent layer's names: each a known choice, and a combination the backend
    runs (`registry.Backend.refusal`); `auto` chooses among the backends that run the layer."""
    for key, value in (("backend", backend), ("cell", cell), ("input_combine", input_combine),
                       ("activation", activation)):
        _check_value(key, value)
    refusal = "" if backend == registry.AUTO else registry.BACKENDS[backend].refusal(cell, input_combine, activation)
    if refusal:
        raise ConfigError(refusal)


def check_backend_device(backend: str, device: str) -> None:
    """A backend on a device it cannot run on (`device` as resolved, e.g. `cpu`) is bad input."""
    reason = registry.BACKENDS[backend].device_restriction(device) if backend in registry.BACKENDS else ""
    if reason:
        usable = ", ".join(b.name for b in registry.BACKENDS.values() if not b.device_restriction(device))
        raise ConfigError(f"backend={backend!r}: {reason}; device is {device}; valid on {device}: {usable}")


def check_value(key: str, raw: Any) -> Any:
    """One key on its own: known, right type, valid choice, in range. Returns the coerced value.
    (Combinations of keys are checked by make_config; grid files check every key with this first.)"""
    if key not in FIELD_TYPES:
        raise ConfigError(f"unknown key {key!r}; valid keys: {', '.join(FIELDS)}")
    value = _coerce(key, raw)
    _check_value(key, value)
    return value


def make_config(overrides: dict[str, Any] | None = None, base: TrainConfig | None = None) -> TrainConfig:
    """Validated TrainConfig from `base` (default: defaults) with `overrides` applied."""
    values = {key: check_value(key, raw) for key, raw in (overrides or {}).items()}
    cfg = dataclasses.replace(base or TrainConfig(), **values)
    _check_combination(cfg)
    return cfg


def parse_key_values(args: list[str]) -> dict[str, str]:
    """`["cell=gru", "lr=1e-3"]` → `{"cell": "gru", "lr": "1e-3"}` (values stay strings)."""
    out: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise ConfigError(f"argument {arg!r}: expected key=value; valid keys: {', '.join(FIELDS)}")
        out[key.strip()] = value.strip()
    return out


def short_repr(value: Any, limit: int = 60) -> str:
    """A bad value as quoted in a one-line error: its repr, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def format_value(value: Any) -> str:
    """A config value as written in run names and claims: `true`, `0.002`, `concat`."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
