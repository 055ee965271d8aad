"""Single-layer loop modules over the pure cells of `charrnn/rnn/cell_math.py`, in the weight layout of
nn.RNN/GRU/LSTM: `LoopRNNLayer` (eager Python loop), `BPTTRNNLayer` (the recurrence as one autograd
node with hand-written backprop through time), `NativeRNNLayer` (that recurrence as C++ loops) and
`CudaGraphRNNLayer` (that node as CUDA graphs).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from charrnn import registry
from charrnn.rnn import native_rnn, onednn
from charrnn.rnn.cell_math import (CellMath, GateMath, Hidden, State, StepFn, as_state, from_state, init_uniform_,
                                   map_hidden)
from charrnn.rnn.lstm_bptt import lstm_recurrence


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
        spec = registry.CELLS[cell]
        self.math: CellMath = registry.load(spec.math)
        self.cell, self.input_size, self.hidden_size = cell, input_size, hidden_size
        self.input_combine, self.activation, self.premul = input_combine, activation, premul
        self.has_cell_state = spec.has_cell_state
        self.step: StepFn = self.math.step(input_combine, activation)
        rows = spec.gates * hidden_size
        self.weight_ih_l0 = nn.Parameter(torch.empty(rows, input_size))   # (G*H, I)
        self.weight_hh_l0 = nn.Parameter(torch.empty(rows, hidden_size))  # (G*H, H)
        self.bias_ih_l0 = nn.Parameter(torch.empty(rows))                 # (G*H,)
        self.bias_hh_l0 = nn.Parameter(torch.empty(rows))                 # (G*H,)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's RNN init: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H))."""
        init_uniform_(self.parameters(), self.hidden_size)

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

def step_linear(weight: Tensor, bias: Tensor | None, rows: int) -> Callable[..., Tensor]:
    """linear(x (rows, K), add=None) → x weight^T + bias (+ add), for the T matmuls one recurrence
    makes with the same weight. fp32 on CPU: the weight is packed once for oneDNN, whose small-batch
    matmul is ~20 % faster than MKL's addmm at H=256, B=32 (the packing costs about one step);
    elsewhere addmm."""
    packed = onednn.packed_linear(weight, bias, rows)
    if packed is not None:
        return packed
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
    input_combine=concat (`registry.Backend.concat_only`): the gate math assumes the state enters
    only through W_hh h.
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int,
                 input_combine: str = "concat", activation: str = "tanh") -> None:
        super().__init__(cell, input_size, hidden_size, input_combine, activation, premul=True)
        self.gate_math: GateMath = self.math.gate_math(activation)
        # lstm: the written-out recurrence of charrnn/rnn/lstm_bptt.py instead of the per-step gate math
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


class NativeRNNLayer(BPTTRNNLayer):
    """`loop_bptt`'s LSTM / GRU recurrence with the time loop and the gate math in C++
    (charrnn/rnn/native_rnn.py): per step one matmul and one fused gate kernel, CPU only.

    It also takes token ids (`forward_tokens`, `takes_tokens`): CharRNN hands them to a first layer on
    this backend, whose input projection is then a lookup in the projected vocabulary."""

    takes_tokens = True

    def recurrence(self, x: Tensor, state: State, w_ih: Tensor, w_hh: Tensor,
                   b_ih: Tensor, b_hh: Tensor) -> tuple[Tensor, ...]:
        """x (B, T, I), state (h,) or (h, c) each (B, H) → (out (B, T, H), h_T, [c_T])."""
        xp = native_rnn.project(x.transpose(0, 1), w_ih, native_rnn.input_bias(self.cell, b_ih, b_hh))  # (T, B, G*H)
        hs, *final = native_rnn.recurrence(self.cell, xp, w_hh, b_hh, state)
        return hs.transpose(0, 1), *final

    def forward_tokens(self, ids: Tensor, encoding: Tensor | None, hx: Hidden | None = None) -> tuple[Tensor, Hidden]:
        """ids (B, T) token ids, T > 0; encoding (V, I): the embedding weight, or None for one-hot inputs;
        hx (1, B, H) or (h, c) → like forward(encoded ids, hx), in the same numbers up to rounding."""
        hx = hx if hx is not None else self._zeros(ids.shape[0], self.weight_hh_l0)
        bias = native_rnn.input_bias(self.cell, self.bias_ih_l0, self.bias_hh_l0)
        xp = native_rnn.project_tokens(ids.t(), encoding, self.weight_ih_l0, bias)      # (T, B, G*H)
        hs, *final = native_rnn.recurrence(self.cell, xp, self.weight_hh_l0, self.bias_hh_l0,
                                           as_state(self._initial(ids, hx)))
        return hs.transpose(0, 1), map_hidden(lambda t: t.unsqueeze(0), from_state(tuple(final)))


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

