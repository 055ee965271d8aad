"""Recurrent cells as pure functions in PyTorch's weight layout: gate math, step functions, the
cell table (`CELLS`) and the hidden-state helpers every layer of `charrnn/rnn/cells.py` builds on.

A step is `step(xp, hidden, w_hh, b_hh) -> hidden` with `xp = W_ih x + b_ih`; its gate math
`gates(xp, hp, state) -> (state', saved)` with `hp = W_hh h + b_hh` has a hand-written backward
`gates_bwd` for the BPTT backends (`charrnn/rnn/loop_layers.py`).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from charrnn.config import ConfigError

Hidden = Union[Tensor, tuple[Tensor, Tensor]]
StepFn = Callable[[Tensor, Hidden, Tensor, Tensor], Hidden]
State = tuple[Tensor, ...]  # (h,) or (h, c), each (B, H): the hidden state inside the gate math


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

# Derivative of each activation written in terms of its output y = act(u).
ACTIVATION_GRADS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": lambda y: 1 - y * y,
    "relu": lambda y: (y > 0).to(y.dtype),
    "identity": torch.ones_like,
}


# --------------------------------------------------------------------------- gate math
# fwd(xp, hp, state) -> (state', saved): xp = W_ih x + b_ih, hp = W_hh h + b_hh, both (B, G*H).
# bwd(grad', state, state', saved) -> (d_xp, d_hp, direct): grads of the pre-activations fed by xp
# and by hp (d_hp None: equal to d_xp), and the gradient reaching `state` other than through hp
# (direct[0], for h, may be None: zero).

def vanilla_gates(xp: Tensor, hp: Tensor, state: State,
                  activation: str = "tanh") -> tuple[State, tuple]:
    """h' = act(xp + hp). Nothing saved beyond h' itself."""
    return (ACTIVATIONS[activation](xp + hp),), ()


def vanilla_gates_bwd(grad: State, state: State, new_state: State, saved: tuple,
                      activation: str = "tanh") -> tuple[Tensor, None, tuple]:
    d_pre = grad[0] * ACTIVATION_GRADS[activation](new_state[0])  # (B, H)
    return d_pre, None, (None,)


def gru_gates(xp: Tensor, hp: Tensor, state: State) -> tuple[State, tuple]:
    """nn.GRU, gate order (r, z, n): r = σ(x_r + h_r), z = σ(x_z + h_z), n = tanh(x_n + r * h_n),
    h' = (1 - z) n + z h. Saves rz (B, 2H), n and h_n (B, H)."""
    (h,) = state
    H = h.shape[-1]
    rz = torch.sigmoid(xp[:, :2 * H] + hp[:, :2 * H])   # (B, 2H): r | z
    r, z = rz[:, :H], rz[:, H:]
    h_n = hp[:, 2 * H:]                                 # (B, H) = W_hn h + b_hn
    n = torch.tanh(torch.addcmul(xp[:, 2 * H:], r, h_n))
    return (torch.addcmul(n, z, h - n),), (rz, n, h_n)


def gru_gates_bwd(grad: State, state: State, new_state: State,
                  saved: tuple) -> tuple[Tensor, Tensor, State]:
    (g,), (h,) = grad, state
    rz, n, h_n = saved
    H = h.shape[-1]
    g_z = g * rz[:, H:]                                 # direct path: h' = n + z (h - n)
    d_n = (g - g_z) * (1 - n * n)                       # (B, H) at n's pre-activation
    d_rz = torch.cat([d_n * h_n, g * (h - n)], dim=1) * rz * (1 - rz)  # (B, 2H) at r, z
    d_xp = torch.cat([d_rz, d_n], dim=1)                # (B, 3H)
    d_hp = torch.cat([d_rz, d_n * rz[:, :H]], dim=1)    # (B, 3H): h_n is gated by r
    return d_xp, d_hp, (g_z,)


def lstm_gates(xp: Tensor, hp: Tensor, state: State) -> tuple[State, tuple]:
    """nn.LSTM, gate order (i, f, g, o): c' = σ(f) c + σ(i) tanh(g), h' = σ(o) tanh(c').
    Saves σ of all four blocks (B, 4H; the g block unused), tanh(g) and tanh(c') (B, H)."""
    _, c = state
    H = c.shape[-1]
    pre = xp + hp                                       # (B, 4H)
    act = torch.sigmoid(pre)                            # i, f, o read from here
    g = torch.tanh(pre[:, 2 * H:3 * H])
    c_next = torch.addcmul(act[:, H:2 * H] * c, act[:, :H], g)
    tanh_c = torch.tanh(c_next)
    return (act[:, 3 * H:] * tanh_c, c_next), (act, g, tanh_c)


def lstm_gates_bwd(grad: State, state: State, new_state: State,
                   saved: tuple) -> tuple[Tensor, None, State]:
    (g_h, g_c), (_, c) = grad, state
    act, g, tanh_c = saved
    H = c.shape[-1]
    i, f, o = act[:, :H], act[:, H:2 * H], act[:, 3 * H:]
    g_c = g_c + g_h * o * (1 - tanh_c * tanh_c)        # (B, H): total gradient at c'
    d_act = torch.cat([g_c * g, g_c * c, g_c * i, g_h * tanh_c], dim=1)  # at σ(i), σ(f), tanh g, σ(o)
    slope = act * (1 - act)                                                 # σ' ...
    slope = torch.cat([slope[:, :2 * H], 1 - g * g, slope[:, 3 * H:]], dim=1)  # ... and tanh' for g
    return d_act * slope, None, (None, g_c * f)


# --------------------------------------------------------------------------- step functions

def vanilla_concat_step(xp: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor,
                        activation: str = "tanh") -> Tensor:
    """nn.RNN: h' = act(W_ih x + b_ih + W_hh h + b_hh). xp, h: (B, H) → (B, H)."""
    return vanilla_gates(xp, F.linear(h, w_hh, b_hh), (h,), activation)[0][0]


def vanilla_add_step(xp: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor,
                     activation: str = "tanh") -> Tensor:
    """Add combine: h' = act(W_hh (W_ih x + b_ih + h) + b_hh), one shared hidden matrix.

    The input is projected to the hidden size and added to the hidden state before the single
    hidden matrix (write-ups 002/004, docs/references.md). xp, h: (B, H) → (B, H).
    """
    return ACTIVATIONS[activation](F.linear(xp + h, w_hh, b_hh))


def gru_step(xp: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor) -> Tensor:
    """nn.GRU (see `gru_gates`). xp: (B, 3H), h: (B, H) → (B, H)."""
    return gru_gates(xp, F.linear(h, w_hh, b_hh), (h,))[0][0]


def lstm_step(xp: Tensor, hidden: tuple[Tensor, Tensor], w_hh: Tensor,
              b_hh: Tensor) -> tuple[Tensor, Tensor]:
    """nn.LSTM (see `lstm_gates`). xp: (B, 4H), hidden: (h, c) each (B, H) → (h', c')."""
    return lstm_gates(xp, F.linear(hidden[0], w_hh, b_hh), hidden)[0]


# --------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class GateMath:
    """The gate math of one cell with its hand-written backward (see `gate math` above)."""

    fwd: Callable[..., tuple[State, tuple]]
    bwd: Callable[..., tuple[Tensor, Tensor | None, tuple]]


@dataclass(frozen=True)
class Cell:
    """A recurrent cell as the loop backends see it."""

    gates: int                  # weight_ih_l0 has gates * hidden_size rows
    has_cell_state: bool        # True: hidden is (h, c)
    steps: dict[str, Callable]  # input_combine → step function; gru/lstm have only "concat"
    gate_fwd: Callable          # gate math of the concat step, and its backward
    gate_bwd: Callable

    def _bind(self, fn: Callable, activation: str) -> Callable:
        """Vanilla functions take `activation`; gru and lstm ignore the vanilla-only options."""
        return fn if len(self.steps) == 1 else functools.partial(fn, activation=activation)

    def step(self, input_combine: str = "concat", activation: str = "tanh") -> StepFn:
        """The pure step function for these options."""
        if len(self.steps) == 1:
            return next(iter(self.steps.values()))
        return self._bind(self.steps[input_combine], activation)

    def gate_math(self, activation: str = "tanh") -> GateMath:
        """Gate math and its backward for the concat step with this activation."""
        return GateMath(self._bind(self.gate_fwd, activation), self._bind(self.gate_bwd, activation))


CELLS: dict[str, Cell] = {
    "vanilla": Cell(gates=1, has_cell_state=False,
                    steps={"concat": vanilla_concat_step, "add": vanilla_add_step},
                    gate_fwd=vanilla_gates, gate_bwd=vanilla_gates_bwd),
    "gru": Cell(gates=3, has_cell_state=False, steps={"concat": gru_step},
                gate_fwd=gru_gates, gate_bwd=gru_gates_bwd),
    "lstm": Cell(gates=4, has_cell_state=True, steps={"concat": lstm_step},
                 gate_fwd=lstm_gates, gate_bwd=lstm_gates_bwd),
}

def _check_choice(key: str, value: str, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{key}={value!r}: unknown value; valid choices: {', '.join(choices)}")


def as_state(hidden: Hidden) -> State:
    """(B, H) tensor or (h, c) tuple → the gate math's state tuple."""
    return hidden if isinstance(hidden, tuple) else (hidden,)


def from_state(state: State) -> Hidden:
    return state if len(state) == 2 else state[0]


def init_uniform_(params: Iterable[nn.Parameter], hidden_size: int) -> None:
    """PyTorch's RNN init: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H))."""
    bound = 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0.0
    for p in params:
        nn.init.uniform_(p, -bound, bound)
