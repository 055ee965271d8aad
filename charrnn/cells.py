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
- `loop_bptt_compiled`: `loop_bptt` with the gate math forward and backward each `torch.compile`d
                        into one fused kernel per step.
- `loop_cudagraph`:     `loop_bptt` captured as CUDA graphs (forward and backward), CUDA only.
- `scan`:               minGRU / minLSTM only: a log-space parallel scan over time (charrnn/mincells.py,
                        which also holds their `loop` layer; `make_layer` routes min cells there).

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

from charrnn import mincells
from charrnn.config import CHOICES, ConfigError, check_cell_backend, check_fused_vanilla
from charrnn.lstm_bptt import lstm_recurrence

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

FUSED: dict[str, type[nn.RNNBase]] = {"vanilla": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


def _check_choice(key: str, value: str, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{key}={value!r}: unknown value; valid choices: {', '.join(choices)}")


def as_state(hidden: Hidden) -> State:
    """(B, H) tensor or (h, c) tuple → the gate math's state tuple."""
    return hidden if isinstance(hidden, tuple) else (hidden,)


def from_state(state: State) -> Hidden:
    return state if len(state) == 2 else state[0]


# --------------------------------------------------------------------------- loop layer

class LoopRNNLayer(nn.Module):
    """One recurrent layer as a Python loop over time steps; parameters named like nn.RNN/GRU/LSTM.

    forward(x (B, T, I), hx) → (out (B, T, H), h_n), batch_first like the fused layers.
    `self.step` is the pure per-step function; a compiled backend may replace it in place.
    premul=False projects each step's input inside the loop (one small matmul per step);
    premul=True projects all steps in one (T*B, I) x (I, G*H) matmul before the loop.
    """

    num_layers = 1
    batch_first = True

    def __init__(self, cell: str, input_size: int, hidden_size: int,
                 input_combine: str = "concat", activation: str = "tanh", premul: bool = False) -> None:
        super().__init__()
        _check_choice("cell", cell, tuple(CELLS))
        _check_choice("input_combine", input_combine, CHOICES["input_combine"])
        _check_choice("activation", activation, CHOICES["activation"])
        spec = CELLS[cell]
        self.cell, self.input_size, self.hidden_size = cell, input_size, hidden_size
        self.input_combine, self.activation, self.premul = input_combine, activation, premul
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
                + (opts if self.cell == "vanilla" else "") + (", premul=True" if self.premul else ""))

    def _zeros(self, batch_size: int, like: Tensor) -> Hidden:
        h = like.new_zeros(1, batch_size, self.hidden_size)  # (1, B, H)
        return (h, h.clone()) if self.has_cell_state else h

    def _initial(self, x: Tensor, hx: Hidden | None) -> Hidden:
        """hx (1, B, H) or (h, c), None = zeros → (B, H) or (h, c)."""
        return map_hidden(lambda t: t.squeeze(0), hx if hx is not None else self._zeros(x.shape[0], x))

    def project(self, x: Tensor) -> Tensor:
        """x (..., I) → W_ih x + b_ih (..., G*H)."""
        return F.linear(x, self.weight_ih_l0, self.bias_ih_l0)

    def forward(self, x: Tensor, hx: Hidden | None = None) -> tuple[Tensor, Hidden]:
        """x: (B, T, I), hx: (1, B, H) or (h, c) → (out (B, T, H), h_n like hx)."""
        hidden = self._initial(x, hx)
        inputs = x.transpose(0, 1)                                            # (T, B, I)
        if self.premul:
            inputs = self.project(inputs)                                     # (T, B, G*H)
        outputs = []
        for x_t in inputs.unbind(0):
            xp_t = x_t if self.premul else self.project(x_t)                  # (B, G*H)
            hidden = self.step(xp_t, hidden, self.weight_hh_l0, self.bias_hh_l0)
            outputs.append(hidden[0] if self.has_cell_state else hidden)      # (B, H)
        out = torch.stack(outputs, dim=1) if outputs else x.new_zeros(x.shape[0], 0, self.hidden_size)
        return out, map_hidden(lambda t: t.unsqueeze(0), hidden)              # (B, T, H), (1, B, H)


# --------------------------------------------------------------------------- hand-written BPTT

_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def step_linear(weight: Tensor, bias: Tensor | None, rows: int) -> Callable[..., Tensor]:
    """linear(x (rows, K), add=None) → x weight^T + bias (+ add), for the T matmuls one recurrence
    makes with the same weight. fp32 on CPU: the weight is packed once for oneDNN, whose small-batch
    matmul is ~20 % faster than MKL's addmm at H=256, B=32 (the packing costs about one step);
    elsewhere addmm."""
    if _ONEDNN and weight.device.type == "cpu" and weight.dtype == torch.float32:
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, rows)

        def linear(x: Tensor, add: Tensor | None = None) -> Tensor:
            if add is None:
                return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")
            return torch.ops.mkldnn._linear_pointwise.binary(x, add, packed, bias, "add")
        return linear

    weight_t = weight.t()

    def linear(x: Tensor, add: Tensor | None = None) -> Tensor:
        base = _plus(bias, add)
        return torch.mm(x, weight_t) if base is None else torch.addmm(base, x, weight_t)
    return linear


def _plus(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    return a if b is None else b if a is None else a + b


def _recur(gm: GateMath, xp: Tensor, w_hh: Tensor, b_hh: Tensor,
           state: State, keep: bool) -> tuple[list[State], list[tuple]]:
    """Run the recurrence over xp (T, B, G*H) from `state`; returns [state_0 .. state_T] and, when
    `keep`, what each step saved for its backward."""
    hidden_proj = step_linear(w_hh, b_hh, xp.shape[1])
    states, saved = [state], []
    for xp_t in xp.unbind(0):                                  # (B, G*H)
        state, s = gm.fwd(xp_t, hidden_proj(state[0]), state)
        states.append(state)
        if keep:
            saved.append(s)
    return states, saved


class _BPTT(torch.autograd.Function):
    """The recurrence after the input projection as one autograd node with a hand-written backward.

    Computes in xp's dtype (bf16 under autocast). Inputs: GateMath, xp (T, B, G*H), w_hh, b_hh,
    then the state tensors (B, H). Outputs: h for every step (T, B, H), then the final c (lstm).
    Backward runs the gate math backward step by step with one (B, G*H) x (G*H, H) matmul, the
    step's output gradient added in the same call; dW_hh and db_hh come after the loop from one
    (G*H, T*B) x (T*B, H) matmul over all steps.
    """

    @staticmethod
    def forward(ctx, gm: GateMath, xp: Tensor, w_hh: Tensor, b_hh: Tensor, *state: Tensor):
        dtype = xp.dtype
        w = w_hh.to(dtype)
        states, saved = _recur(gm, xp, w, b_hh.to(dtype), tuple(s.to(dtype) for s in state), keep=True)
        ctx.gm, ctx.w, ctx.states, ctx.saved = gm, w, states, saved
        ctx.xp_shape = xp.shape
        ctx.hs = torch.stack([s[0] for s in states])          # (T+1, B, H)
        return (ctx.hs[1:], *states[-1][1:])

    @staticmethod
    def backward(ctx, g_out: Tensor, *g_final: Tensor):
        # g_out (T, B, H): gradient of every h_t; g_final: of the final c (lstm), else nothing.
        gm, states, saved = ctx.gm, ctx.states, ctx.saved
        dtype = ctx.w.dtype
        g_out = g_out.to(dtype)
        back_proj = step_linear(ctx.w.t().contiguous(), None, g_out.shape[1])  # dh → dh W_hh
        grad = (g_out[-1], *(g.to(dtype) for g in g_final))
        d_xp = g_out.new_empty(ctx.xp_shape)                       # (T, B, G*H)
        d_hp = None                                                # stays None while d_hp == d_xp
        for t in reversed(range(g_out.shape[0])):
            dx, dh, direct = gm.bwd(grad, states[t], states[t + 1], saved[t])
            d_xp[t].copy_(dx)           # written step by step while hot, not stacked afterwards
            if dh is None:
                dh = dx
            else:
                d_hp = torch.empty_like(d_xp) if d_hp is None else d_hp
                d_hp[t].copy_(dh)
            carried = _plus(direct[0], g_out[t - 1] if t > 0 else None)
            grad = (back_proj(dh, carried), *direct[1:])           # gradient at state t
        d_hp = (d_xp if d_hp is None else d_hp).flatten(0, 1)      # (T*B, G*H)
        d_w = torch.mm(d_hp.t(), ctx.hs[:-1].flatten(0, 1))        # (G*H, T*B) x (T*B, H)
        return (None, d_xp, d_w, d_hp.sum(0), *grad)


class BPTTRNNLayer(LoopRNNLayer):
    """`loop_premul` with the recurrence as one `_BPTT` autograd node (hand-written backward).

    `self.gate_math` may be replaced by compiled functions (`loop_bptt_compiled`). Vanilla needs
    input_combine=concat: the gate math assumes the state enters only through W_hh h.
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int,
                 input_combine: str = "concat", activation: str = "tanh") -> None:
        super().__init__(cell, input_size, hidden_size, input_combine, activation, premul=True)
        if cell == "vanilla" and input_combine != "concat":
            raise ConfigError(f"input_combine={input_combine!r}: the BPTT backends run only concat; "
                              "valid with them: concat (use backend=loop or loop_premul for add)")
        self.gate_math: GateMath = CELLS[cell].gate_math(activation)
        # lstm: the written-out recurrence of charrnn/lstm_bptt.py instead of the per-step gate math
        # (off where the gate math is replaced: loop_bptt_compiled, loop_cudagraph)
        self.lstm_kernel = cell == "lstm"

    def recurrence(self, x: Tensor, state: State, w_ih: Tensor, w_hh: Tensor,
                   b_ih: Tensor, b_hh: Tensor) -> tuple[Tensor, ...]:
        """x (B, T, I), state (h,) or (h, c) each (B, H) → (out (B, T, H), h_T, [c_T])."""
        if self.lstm_kernel:  # both biases in the input projection
            xp = F.linear(x.transpose(0, 1), w_ih, b_ih + b_hh)           # (T, B, 4H)
            hs, h_T, c_T = lstm_recurrence(xp, w_hh, *state)               # (T, B, H), (B, H) x 2
            return hs.transpose(0, 1), h_T, c_T
        xp = F.linear(x.transpose(0, 1), w_ih, b_ih)                  # (T, B, G*H)
        if torch.is_grad_enabled():
            hs, *final = _BPTT.apply(self.gate_math, xp, w_hh, b_hh, *state)  # (T, B, H), [c_T]
        else:
            dtype = xp.dtype
            states, _ = _recur(self.gate_math, xp, w_hh.to(dtype), b_hh.to(dtype),
                               tuple(s.to(dtype) for s in state), keep=False)
            hs, final = torch.stack([s[0] for s in states[1:]]), list(states[-1][1:])
        return hs.transpose(0, 1), hs[-1], *final

    def forward(self, x: Tensor, hx: Hidden | None = None) -> tuple[Tensor, Hidden]:
        """x: (B, T, I), hx: (1, B, H) or (h, c) → (out (B, T, H), h_n like hx)."""
        if x.shape[1] == 0:
            return super().forward(x, hx)
        out, *final = self.recurrence(x, as_state(self._initial(x, hx)), self.weight_ih_l0,
                                      self.weight_hh_l0, self.bias_ih_l0, self.bias_hh_l0)
        return out, map_hidden(lambda t: t.unsqueeze(0), from_state(tuple(final)))


class CudaGraphRNNLayer(BPTTRNNLayer):
    """`loop_bptt` replayed as CUDA graphs: forward and backward of the layer each captured once per
    input signature (shapes, dtype, requires_grad, autocast) with `torch.cuda.make_graphed_callables`.

    The parameters are passed to the graphed function as inputs; being the very tensors captured,
    they are read in place (optimizer updates are seen) and never copied.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lstm_kernel = False
        self._graphs: dict[tuple, Callable] = {}

    def forward(self, x: Tensor, hx: Hidden | None = None) -> tuple[Tensor, Hidden]:
        if x.device.type != "cuda":
            raise RuntimeError(f"backend=loop_cudagraph needs a CUDA device, got {x.device}")
        state = as_state(self._initial(x, hx))
        params = (self.weight_ih_l0, self.weight_hh_l0, self.bias_ih_l0, self.bias_hh_l0)
        key = (torch.is_grad_enabled(), torch.is_autocast_enabled("cuda"),
               *((t.shape, t.dtype, t.requires_grad) for t in (x, *state)))
        if key not in self._graphs:
            def run(x_, *rest):
                return self.recurrence(x_, tuple(rest[:len(state)]), *rest[len(state):])
            sample = tuple(t.detach().clone().requires_grad_(t.requires_grad) for t in (x, *state))
            self._graphs[key] = torch.cuda.make_graphed_callables(run, sample + params)
        out, *final = self._graphs[key](x, *state, *params)
        return out, map_hidden(lambda t: t.unsqueeze(0), from_state(tuple(final)))


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
