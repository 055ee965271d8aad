"""Recurrent cells in PyTorch's weight layout, single-layer loop modules, and the backend registry.

Every cell is a pure step function `step(xp, hidden, w_hh, b_hh) -> hidden` on one time step, where
`xp = W_ih x + b_ih` is the input projection of that step. The gate math of a step is split out as
`gates(xp, hp, state) -> (state', saved)` with `hp = W_hh h + b_hh`, and has a hand-written backward
`gates_bwd` for the BPTT backends. Weights use the layout of `nn.RNN/GRU/LSTM` (gate blocks stacked
along dim 0), so every backend's layer and the fused module of the same cell share a state dict:

    loop.load_state_dict(fused.state_dict())   # and the other way round

Backends (`make_layer`, registry `BACKENDS`):
- `fused`:              nn.RNN/GRU/LSTM (cuDNN on GPU, native/oneDNN kernels on CPU), the reference.
- `fused_nocudnn`:      the same modules with cuDNN disabled (PyTorch's own CUDA kernels; = fused on CPU).
- `loop`:               `LoopRNNLayer`, an eager Python loop; each step projects its input and its state.
- `loop_premul`:        the input projections of all steps in one matmul, then the eager recurrence.
- `loop_compiled`:      `loop_premul` with `torch.compile` of the step function (autograd through it).
- `loop_bptt`:          `loop_premul` whose recurrence is one autograd node with hand-written backprop
                        through time: gate math forward/backward per step, weight gradients in one
                        matmul over all steps after the loop.
- `loop_native`:        `loop_bptt`'s LSTM / GRU recurrence as C++ loops: per step one matmul and one
                        fused gate kernel, no Python between steps; CPU only (charrnn/rnn/native_rnn.py).
- `loop_bptt_compiled`: `loop_bptt` with the gate math forward and backward each `torch.compile`d
                        into one fused kernel per step.
- `loop_cudagraph`:     `loop_bptt` captured as CUDA graphs (forward and backward), CUDA only.
- `scan`:               minGRU / minLSTM only: a log-space parallel scan over time (charrnn/rnn/mincells.py,
                        which also holds their `loop` layer; `make_layer` routes min cells there).

Hidden state follows the nn.* convention: a tensor (1, B, H), or a tuple (h, c) of (1, B, H) for lstm.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from charrnn.rnn import mincells
from charrnn.rnn.cell_math import CELLS, GateMath, Hidden, _check_choice, map_hidden
from charrnn.config import CHOICES, check_cell_backend, check_fused_vanilla
from charrnn.rnn.loop_layers import BPTTRNNLayer, CudaGraphRNNLayer, LoopRNNLayer, NativeRNNLayer

__all__ = ["ALL_CELLS", "BACKENDS", "CELLS", "FUSED", "FUSED_NOCUDNN", "Hidden", "LoopRNNLayer", "compile_fn",
           "has_cell_state", "make_layer", "map_hidden"]

FUSED: dict[str, type[nn.RNNBase]] = {"vanilla": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}

class NoCudnn:
    """Mixin: the fused module's forward with cuDNN disabled (PyTorch's own CUDA RNN kernels)."""

    def forward(self, *args, **kwargs):
        with torch.backends.cudnn.flags(enabled=False):
            return super().forward(*args, **kwargs)


FUSED_NOCUDNN: dict[str, type[nn.RNNBase]] = {
    cell: type(f"{cls.__name__}NoCudnn", (NoCudnn, cls), {}) for cell, cls in FUSED.items()}


def compile_fn(fn: Callable) -> Callable:
    """torch.compile with static shapes: every shape gets its own specialised kernels."""
    return torch.compile(fn, dynamic=False, options={"cpp.threads": 1})


# --------------------------------------------------------------------------- backends

def _make_loop(cell: str, input_size: int, hidden_size: int,
               input_combine: str, activation: str) -> nn.Module:
    return LoopRNNLayer(cell, input_size, hidden_size, input_combine, activation)


def _make_loop_premul(cell: str, input_size: int, hidden_size: int,
                      input_combine: str, activation: str) -> nn.Module:
    return LoopRNNLayer(cell, input_size, hidden_size, input_combine, activation, premul=True)


def _make_loop_compiled(*args) -> nn.Module:
    layer = _make_loop_premul(*args)
    layer.step = compile_fn(layer.step)
    return layer


def _make_loop_bptt_compiled(*args) -> nn.Module:
    layer = BPTTRNNLayer(*args)
    layer.lstm_kernel = False
    layer.gate_math = GateMath(compile_fn(layer.gate_math.fwd), compile_fn(layer.gate_math.bwd))
    return layer


def _fused_factory(backend: str, classes: dict[str, type[nn.RNNBase]]) -> Callable[..., nn.Module]:
    def make(cell: str, input_size: int, hidden_size: int,
             input_combine: str, activation: str) -> nn.Module:
        if cell != "vanilla":
            return classes[cell](input_size, hidden_size, num_layers=1, batch_first=True)
        check_fused_vanilla(backend, input_combine, activation)
        return classes[cell](input_size, hidden_size, num_layers=1, nonlinearity=activation,
                             batch_first=True)
    return make


BACKENDS: dict[str, Callable[..., nn.Module]] = {
    "fused": _fused_factory("fused", FUSED),
    "fused_nocudnn": _fused_factory("fused_nocudnn", FUSED_NOCUDNN),
    "loop": _make_loop,
    "loop_premul": _make_loop_premul,
    "loop_compiled": _make_loop_compiled,
    "loop_bptt": BPTTRNNLayer,
    "loop_native": NativeRNNLayer,
    "loop_bptt_compiled": _make_loop_bptt_compiled,
    "loop_cudagraph": CudaGraphRNNLayer,
    "scan": lambda cell, input_size, hidden_size, *_: mincells.MinLayer(cell, input_size, hidden_size, "scan"),
}
assert tuple(BACKENDS) == CHOICES["backend"], "cells.BACKENDS and config.CHOICES['backend'] disagree"


def make_layer(backend: str, cell: str, input_size: int, hidden_size: int,
               input_combine: str = "concat", activation: str = "tanh") -> nn.Module:
    """One batch_first recurrent layer of `cell` on `backend`; weights named `*_l0` on every backend.

    `input_combine` and `activation` apply to vanilla only and are ignored for gru and lstm (as in
    TrainConfig), but must still be known values. Raises ConfigError for unknown names and for
    option combinations the backend cannot run.
    """
    _check_choice("backend", backend, tuple(BACKENDS))
    _check_choice("cell", cell, ALL_CELLS)
    _check_choice("input_combine", input_combine, CHOICES["input_combine"])
    _check_choice("activation", activation, CHOICES["activation"])
    check_cell_backend(cell, backend)
    if cell in mincells.MIN_CELLS:  # min cells: their own layer for each of their backends
        return mincells.MinLayer(cell, input_size, hidden_size, backend)
    return BACKENDS[backend](cell, input_size, hidden_size, input_combine, activation)


# --------------------------------------------------------------------------- every cell

ALL_CELLS: tuple[str, ...] = (*CELLS, *mincells.MIN_CELLS)  # the classic cells above, then the min cells
assert ALL_CELLS == CHOICES["cell"], "cells.ALL_CELLS and config.CHOICES['cell'] disagree"


def has_cell_state(cell: str) -> bool:
    """True where the hidden state is an (h, c) tuple (lstm); min cells carry h alone."""
    return cell in CELLS and CELLS[cell].has_cell_state
