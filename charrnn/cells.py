"""Recurrent cells in PyTorch's weight layout, single-layer loop modules, and the backend registry.

Every cell is a pure step function `step(xp, hidden, w_hh, b_hh) -> hidden` on one time step, where
`xp = W_ih x + b_ih` is the input projection precomputed for all steps in one matmul. Weights use
the layout of `nn.RNN/GRU/LSTM` (gate blocks stacked along dim 0), so a `LoopRNNLayer` and the fused
module of the same cell share a state dict:

    loop.load_state_dict(fused.state_dict())   # and the other way round

Backends (`make_layer`):
- `loop`:  `LoopRNNLayer`, an eager Python loop over time calling the step function.
- `fused`: `nn.RNN/GRU/LSTM` (cuDNN on GPU, native kernels on CPU), the reference.

Hidden state follows the nn.* convention: a tensor (1, B, H), or a tuple (h, c) of (1, B, H) for lstm.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from charrnn.config import CHOICES, ConfigError

Hidden = Union[Tensor, tuple[Tensor, Tensor]]
StepFn = Callable[[Tensor, Hidden, Tensor, Tensor], Hidden]


def map_hidden(fn: Callable[[Tensor], Tensor], hidden: Hidden) -> Hidden:
    """Apply `fn` to a hidden tensor or to each tensor of an (h, c) tuple."""
    return tuple(fn(t) for t in hidden) if isinstance(hidden, tuple) else fn(hidden)


# --------------------------------------------------------------------------- activations

def _identity(t: Tensor) -> Tensor:
    return t


ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "identity": _identity,
}


# --------------------------------------------------------------------------- step functions

def vanilla_concat_step(xp: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor,
                        activation: str = "tanh") -> Tensor:
    """nn.RNN: h' = act(W_ih x + b_ih + W_hh h + b_hh). xp, h: (B, H) → (B, H)."""
    return ACTIVATIONS[activation](xp + F.linear(h, w_hh, b_hh))


def vanilla_add_step(xp: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor,
                     activation: str = "tanh") -> Tensor:
    """Add combine: h' = act(W_hh (W_ih x + b_ih + h) + b_hh), one shared hidden matrix.

    The input is projected to the hidden size and added to the hidden state before the single
    hidden matrix (seed write-ups 002/004). xp, h: (B, H) → (B, H).
    """
    return ACTIVATIONS[activation](F.linear(xp + h, w_hh, b_hh))


def gru_step(xp: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor) -> Tensor:
    """nn.GRU, gate order (r, z, n). xp: (B, 3H), h: (B, H) → (B, H).

    r = σ(x_r + h_r), z = σ(x_z + h_z), n = tanh(x_n + r * (W_hn h + b_hn)), h' = (1 - z) n + z h.
    """
    x_r, x_z, x_n = xp.chunk(3, dim=1)                      # (B, H) each
    h_r, h_z, h_n = F.linear(h, w_hh, b_hh).chunk(3, dim=1)  # (B, H) each
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return n + z * (h - n)


def lstm_step(xp: Tensor, hidden: tuple[Tensor, Tensor], w_hh: Tensor,
              b_hh: Tensor) -> tuple[Tensor, Tensor]:
    """nn.LSTM, gate order (i, f, g, o). xp: (B, 4H), hidden: (h, c) each (B, H) → (h', c')."""
    h, c = hidden
    gates = xp + F.linear(h, w_hh, b_hh)   # (B, 4H)
    i, f, g, o = gates.chunk(4, dim=1)     # (B, H) each
    c_next = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_next = torch.sigmoid(o) * torch.tanh(c_next)
    return h_next, c_next


# --------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class Cell:
    """A recurrent cell as the loop backend sees it."""

    gates: int                  # weight_ih_l0 has gates * hidden_size rows
    has_cell_state: bool        # True: hidden is (h, c)
    steps: dict[str, Callable]  # input_combine → step function; gru/lstm have only "concat"

    def step(self, input_combine: str = "concat", activation: str = "tanh") -> StepFn:
        """The pure step function for these options; gru and lstm ignore the vanilla-only options."""
        if len(self.steps) == 1:
            return next(iter(self.steps.values()))
        return functools.partial(self.steps[input_combine], activation=activation)


CELLS: dict[str, Cell] = {
    "vanilla": Cell(gates=1, has_cell_state=False,
                    steps={"concat": vanilla_concat_step, "add": vanilla_add_step}),
    "gru": Cell(gates=3, has_cell_state=False, steps={"concat": gru_step}),
    "lstm": Cell(gates=4, has_cell_state=True, steps={"concat": lstm_step}),
}

FUSED: dict[str, type[nn.RNNBase]] = {"vanilla": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


def _check_choice(key: str, value: str, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{key}={value!r}: unknown value; valid choices: {', '.join(choices)}")


# --------------------------------------------------------------------------- loop layer

class LoopRNNLayer(nn.Module):
    """One recurrent layer as a Python loop over time steps; parameters named like nn.RNN/GRU/LSTM.

    forward(x (B, T, I), hx) → (out (B, T, H), h_n), batch_first like the fused layers.
    `self.step` is the pure per-step function; a compiled backend may replace it in place.
    """

    num_layers = 1
    batch_first = True

    def __init__(self, cell: str, input_size: int, hidden_size: int,
                 input_combine: str = "concat", activation: str = "tanh") -> None:
        super().__init__()
        _check_choice("cell", cell, tuple(CELLS))
        _check_choice("input_combine", input_combine, CHOICES["input_combine"])
        _check_choice("activation", activation, CHOICES["activation"])
        spec = CELLS[cell]
        self.cell, self.input_size, self.hidden_size = cell, input_size, hidden_size
        self.input_combine, self.activation = input_combine, activation
        self.has_cell_state = spec.has_cell_state
        self.step: StepFn = spec.step(input_combine, activation)
        rows = spec.gates * hidden_size
        self.weight_ih_l0 = nn.Parameter(torch.empty(rows, input_size))   # (G*H, I)
        self.weight_hh_l0 = nn.Parameter(torch.empty(rows, hidden_size))  # (G*H, H)
        self.bias_ih_l0 = nn.Parameter(torch.empty(rows))                 # (G*H,)
        self.bias_hh_l0 = nn.Parameter(torch.empty(rows))                 # (G*H,)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's RNN init: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H))."""
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def extra_repr(self) -> str:
        opts = f", input_combine={self.input_combine}, activation={self.activation}"
        return (f"{self.cell}, {self.input_size}, {self.hidden_size}"
                + (opts if self.cell == "vanilla" else ""))

    def _zeros(self, batch_size: int, like: Tensor) -> Hidden:
        h = like.new_zeros(1, batch_size, self.hidden_size)  # (1, B, H)
        return (h, h.clone()) if self.has_cell_state else h

    def forward(self, x: Tensor, hx: Hidden | None = None) -> tuple[Tensor, Hidden]:
        """x: (B, T, I), hx: (1, B, H) or (h, c) → (out (B, T, H), h_n like hx)."""
        batch_size = x.shape[0]
        hidden = map_hidden(lambda t: t.squeeze(0), hx if hx is not None else self._zeros(batch_size, x))
        xp = F.linear(x.transpose(0, 1), self.weight_ih_l0, self.bias_ih_l0)  # (T, B, G*H)
        outputs = []
        for xp_t in xp.unbind(0):                                             # (B, G*H)
            hidden = self.step(xp_t, hidden, self.weight_hh_l0, self.bias_hh_l0)
            outputs.append(hidden[0] if self.has_cell_state else hidden)      # (B, H)
        out = torch.stack(outputs, dim=1) if outputs else x.new_zeros(batch_size, 0, self.hidden_size)
        return out, map_hidden(lambda t: t.unsqueeze(0), hidden)              # (B, T, H), (1, B, H)


# --------------------------------------------------------------------------- backends

def _make_loop(cell: str, input_size: int, hidden_size: int,
               input_combine: str, activation: str) -> nn.Module:
    return LoopRNNLayer(cell, input_size, hidden_size, input_combine, activation)


def _make_fused(cell: str, input_size: int, hidden_size: int,
                input_combine: str, activation: str) -> nn.Module:
    if cell != "vanilla":
        return FUSED[cell](input_size, hidden_size, num_layers=1, batch_first=True)
    if input_combine != "concat":
        raise ConfigError(f"input_combine={input_combine!r}: backend=fused has no fused kernel "
                          "for it; valid with backend=fused: concat (use backend=loop for add)")
    if activation not in ("tanh", "relu"):
        raise ConfigError(f"activation={activation!r}: backend=fused supports only tanh, relu "
                          f"(use backend=loop for {activation})")
    return nn.RNN(input_size, hidden_size, num_layers=1, nonlinearity=activation, batch_first=True)


BACKENDS: dict[str, Callable[..., nn.Module]] = {"loop": _make_loop, "fused": _make_fused}


def make_layer(backend: str, cell: str, input_size: int, hidden_size: int,
               input_combine: str = "concat", activation: str = "tanh") -> nn.Module:
    """One batch_first recurrent layer of `cell` on `backend`; weights named `*_l0` on every backend.

    `input_combine` and `activation` apply to vanilla only and are ignored for gru and lstm (as in
    TrainConfig), but must still be known values. Raises ConfigError for unknown names and for
    option combinations the backend cannot run.
    """
    _check_choice("backend", backend, tuple(BACKENDS))
    _check_choice("cell", cell, tuple(CELLS))
    _check_choice("input_combine", input_combine, CHOICES["input_combine"])
    _check_choice("activation", activation, CHOICES["activation"])
    return BACKENDS[backend](cell, input_size, hidden_size, input_combine, activation)
