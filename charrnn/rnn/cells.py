"""Recurrent layers by backend: `make_layer`, the layer factories `registry.BACKENDS` names, and the
vendor modules (`fused_module`) they and the capability probes share.

Every backend builds a single batch_first layer in the weight layout of `nn.RNN/GRU/LSTM` (gate
blocks stacked along dim 0, parameters named `*_l0`), so the layers of one cell share a state dict:

    loop.load_state_dict(fused.state_dict())   # and the other way round

What each backend is (`registry.BACKENDS[name].summary`) and which cells it runs live in the
registry; each entry names its factory here or in the module computing it (`loop_layers`,
`mincells`). A factory is called as `factory(cell, input_size, hidden_size, input_combine,
activation)`; the vanilla-only options are ignored by the other cells. The cells' math lives in
`cell_math` (vanilla, gru, lstm) and `mincells` (mingru, minlstm).

Hidden state follows the nn.* convention: a tensor (1, B, H), or a tuple (h, c) of (1, B, H) for lstm.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable

import torch
from torch import nn

from charrnn import registry
from charrnn.config import check_layer
from charrnn.rnn.cell_math import GateMath
from charrnn.rnn.loop_layers import BPTTRNNLayer, LoopRNNLayer
from charrnn.rnn.mincells import MinLayer


class NoCudnn:
    """Mixin: the fused module's forward with cuDNN disabled (PyTorch's own CUDA RNN kernels)."""

    def forward(self, *args, **kwargs):
        with torch.backends.cudnn.flags(enabled=False):
            return super().forward(*args, **kwargs)


@lru_cache(maxsize=None)
def fused_module(cell: str, cudnn: bool = True) -> type[nn.RNNBase]:
    """The vendor module of `cell` (`registry.CELLS[cell].fused`, e.g. nn.GRU); cudnn=False: a
    subclass whose forward runs with cuDNN switched off."""
    cls = registry.load(registry.CELLS[cell].fused)
    return cls if cudnn else type(f"{cls.__name__}NoCudnn", (NoCudnn, cls), {})


def compile_fn(fn: Callable) -> Callable:
    """torch.compile with static shapes: every shape gets its own specialised kernels."""
    return torch.compile(fn, dynamic=False, options={"cpp.threads": 1})


# --------------------------------------------------------------------------- layer factories

def _fused(cls: type[nn.RNNBase], cell: str, input_size: int, hidden_size: int, activation: str) -> nn.Module:
    options = {"nonlinearity": activation} if cell == "vanilla" else {}  # nn.RNN: concat, tanh or relu
    return cls(input_size, hidden_size, num_layers=1, batch_first=True, **options)


def fused_layer(cell: str, input_size: int, hidden_size: int,
                input_combine: str = "concat", activation: str = "tanh") -> nn.Module:
    return _fused(fused_module(cell), cell, input_size, hidden_size, activation)


def fused_nocudnn_layer(cell: str, input_size: int, hidden_size: int,
                        input_combine: str = "concat", activation: str = "tanh") -> nn.Module:
    return _fused(fused_module(cell, cudnn=False), cell, input_size, hidden_size, activation)


def loop_layer(cell: str, input_size: int, hidden_size: int,
               input_combine: str = "concat", activation: str = "tanh") -> nn.Module:
    """The sequential reference of every cell; a min cell's is its step function over t."""
    if not registry.CELLS[cell].recurrent:
        return MinLayer(cell, input_size, hidden_size, scan=False)
    return LoopRNNLayer(cell, input_size, hidden_size, input_combine, activation)


def loop_premul_layer(cell: str, input_size: int, hidden_size: int,
                      input_combine: str = "concat", activation: str = "tanh") -> nn.Module:
    return LoopRNNLayer(cell, input_size, hidden_size, input_combine, activation, premul=True)


def loop_compiled_layer(*args: str | int) -> nn.Module:
    layer = loop_premul_layer(*args)
    layer.step = compile_fn(layer.step)
    return layer


def loop_bptt_compiled_layer(*args: str | int) -> nn.Module:
    layer = BPTTRNNLayer(*args)
    layer.lstm_kernel = False
    layer.gate_math = GateMath(compile_fn(layer.gate_math.fwd), compile_fn(layer.gate_math.bwd))
    return layer


# --------------------------------------------------------------------------- every backend

def make_layer(backend: str, cell: str, input_size: int, hidden_size: int,
               input_combine: str = "concat", activation: str = "tanh") -> nn.Module:
    """One batch_first recurrent layer of `cell` on `backend`; weights named `*_l0` on every backend.

    `input_combine` and `activation` apply to vanilla only and are ignored for the other cells (as
    in TrainConfig), but must still be known values. Raises ConfigError (`config.check_layer`) for
    unknown names and for option combinations the backend cannot run: names from outside are checked
    here, once; a validated TrainConfig's layers are built by `registry.BACKENDS[name].factory()`.
    """
    check_layer(backend, cell, input_combine, activation)
    return registry.BACKENDS[backend].factory()(cell, input_size, hidden_size, input_combine, activation)

