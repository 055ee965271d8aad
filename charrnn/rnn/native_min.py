"""Backend `min_native`: minGRU / minLSTM (mincells.py) with the recurrence as a C++ loop (csrc/min_steps.cpp).

A min cell's gates see the input alone, so once the input projections of every step are known the
recurrence needs no matmul: h_t = a_t h_{t-1} + b_t, one elementwise update per step. Python's loop
(`loop`) pays a dozen small ATen ops per step; the log-space scan (`scan`) pays exp/log and cumsums
over (B, T, H) several times. Here:

    xp = x W_ih^T + b_ih             (B, T, G*H)   one GEMM for all T, in autograd (MinLayer.forward);
                                                   a CharRNN's first layer: a lookup in the projected vocabulary
    hs = MinNative(xp, h0)           (B, T, H)     C++: per batch row, t = 1..T, vectorised over H
    backward: t = T..1 in C++ from xp, h0 and hs (gates recomputed, not stored) → d xp, d h0;
              autograd takes W_ih's and b_ih's gradients from d xp

Batch rows are independent, so the parallel tasks split B and each runs its rows' whole time loop.
The kernels' equations and derivatives are in csrc/min_steps.cpp. Computes in fp32 (fp64 for fp64
inputs), also under autocast, as the scan does. Built with `loop_native`'s kernels
(`native_rnn.ops`: one extension, cached per CPU capability).
"""
from __future__ import annotations

import torch
from torch import Tensor

from charrnn.rnn import native_rnn
from charrnn.rnn.mincells import MinLayer

OPS = {"mingru": ("mingru_forward", "mingru_backward"), "minlstm": ("minlstm_forward", "minlstm_backward")}


class MinNative(torch.autograd.Function):
    """forward(xp (B, T, G*H), h0 (B, H), cell) → hs (B, T, H), h_1 .. h_T; xp and h0 of one dtype,
    float32 or float64. backward gives d xp and d h0."""

    @staticmethod
    def forward(ctx, xp: Tensor, h0: Tensor, cell: str) -> Tensor:
        forward, ctx.backward_op = (getattr(native_rnn.ops(), name) for name in OPS[cell])
        hs = forward(xp, h0)
        ctx.save_for_backward(xp, h0, hs)
        return hs

    @staticmethod
    def backward(ctx, g_out: Tensor):
        xp, h0, hs = ctx.saved_tensors
        d_xp, d_h0 = ctx.backward_op(g_out, xp, h0, hs)
        return d_xp, d_h0, None


def recurrence(cell: str, xp: Tensor, h: Tensor) -> Tensor:
    """xp (B, T, G*H), h (B, H) → hs (B, T, H) in fp32 (fp64 for fp64 xp)."""
    dtype = xp.dtype if xp.dtype == torch.float64 else torch.float32
    with torch.autocast(xp.device.type, enabled=False):
        return MinNative.apply(xp.to(dtype), h.to(dtype), cell)


class NativeMinLayer(MinLayer):
    """MinLayer whose sequential form (every T, sampling's T = 1 too) is the C++ loop.

    It also takes token ids (`forward_tokens`, `takes_tokens`), as `loop_native`'s layer does: CharRNN
    hands them to a first layer on this backend, whose input projection is then a lookup in the
    projected vocabulary (`native_rnn.project_tokens`), the GEMM over T*B rows gone."""

    takes_tokens = True

    def __init__(self, cell: str, input_size: int, hidden_size: int) -> None:
        super().__init__(cell, input_size, hidden_size, scan=False)

    def extra_repr(self) -> str:
        return f"{self.cell}, {self.input_size}, {self.hidden_size}, backend=min_native"

    def sequential(self, xp: Tensor, h: Tensor) -> Tensor:
        return recurrence(self.cell, xp, h)

    def forward_tokens(self, ids: Tensor, encoding: Tensor | None, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """ids (B, T) token ids, T > 0; encoding (V, I): the embedding weight, or None for one-hot inputs;
        hx (1, B, H) or None → like forward(encoded ids, hx), in the same numbers up to rounding."""
        h = ids.new_zeros(ids.shape[0], self.hidden_size, dtype=self.weight_ih_l0.dtype) if hx is None \
            else hx.squeeze(0)                                                               # (B, H)
        xp = native_rnn.project_tokens(ids, encoding, self.weight_ih_l0, self.bias_ih_l0)  # (B, T, G*H)
        out = recurrence(self.cell, xp, h)                                                  # (B, T, H)
        return out, out[:, -1].unsqueeze(0)


def native_min_layer(cell: str, input_size: int, hidden_size: int, *_vanilla_options: str) -> NativeMinLayer:
    """The `min_native` backend's layer factory (input_combine and activation are vanilla-only)."""
    return NativeMinLayer(cell, input_size, hidden_size)
