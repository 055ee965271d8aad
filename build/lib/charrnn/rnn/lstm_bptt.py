"""The LSTM recurrence of `loop_bptt`: hand-written backprop through time with preallocated buffers.

The generic BPTT node (`loop_layers._BPTT`) calls the cell's gate math per step and builds each step's
gradient from a dozen small ops (slices, `cat`, products). On CPU at H=256, B=32 that per-op cost,
not the matmul, separated it from oneDNN's fused LSTM. Here the LSTM is written out so that

- both biases go into the input projection (one matmul for all T); the forward step is one
  matmul added in place into that step's pre-activations (`addmm(out=self)`: no copy of the
  (B, 4H) addend, which at B=32 costs ATen a parallel copy per step), one sigmoid over all 4H, and
  the cell update, all written with `out=` into buffers allocated once per call:
  act (T, B, 4H), c (T+1, B, H), tanh(c) (T, B, H), h (T+1, B, H);
- the g rows of W_hh and of the input projection are scaled by -2 once per call, so that the
  single sigmoid gives σ(-2g), and tanh g = 1 - 2σ(-2g) is folded into the cell update

      c' = σ(f) c + σ(i) (1 - 2σ(-2g)) = [σ(i) + σ(f) c] - 2 σ(i) σ(-2g)      (addcmul, addcmul_)

  which replaces a tanh over the strided g columns of a (B, 4H) row (≈4x a contiguous tanh); act
  keeps σ(-2g) in its g block, so the backward uses tanh g = 1 - 2σ(-2g) and tanh'(g) = 4σ'(-2g),
  and its d pre stays the gradient of the unscaled pre-activation;
- the backward precomputes, for all T at once (a few large vectorised ops), every factor of the
  step gradient that does not depend on the incoming gradient:

      d pre_{i,f,g} = g_c ⊙ [tanh g · σ'(i),  c_{t-1} · σ'(f),  σ(i) · tanh'(g)]   (SK, (T, B, 3, H))
      d pre_o       = g_h ⊙ tanh(c_t) · σ'(o)                                     (R,  (T, B, H))
      g_c           = g_c(carried) + g_h ⊙ σ(o) · tanh'(c_t)                     (Q,  (T, B, H))

  SK and R are written in place into the (T, B, 4H) buffer that becomes d pre, and step t scales
  its row in place by g_c, g_h: the only fresh (T, B, ·) buffers of the backward are d pre and Q
  (fresh multi-MB buffers cost page faults on every call, which here showed up as slower ops
  everywhere, matmuls included). So a step is four elementwise ops and one (B, 4H) x (4H, H)
  matmul that also adds the step's output gradient; dW_hh comes from one matmul over all steps
  after the loop (the biases' gradient is d xp, summed by autograd through the input projection).

Gate order and layout as nn.LSTM: rows (i, f, g, o) of weight_hh_l0 (4H, H).
"""
from __future__ import annotations

import torch
from torch import Tensor




def _g_scale(w_hh: Tensor) -> Tensor:
    """(4H,) scale: 1 for the i, f, o rows, -2 for the g rows: one sigmoid over all 4H gives σ(-2g)."""
    H = w_hh.shape[0] // 4
    scale = w_hh.new_ones(4, H)
    scale[2] = -2
    return scale.flatten()


def lstm_forward(xp: Tensor, w_hh: Tensor, h0: Tensor, c0: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """xp (T, B, 4H) = W_ih x + b_ih + b_hh (both biases, folded into the input projection by the
    caller); h0, c0 (B, H) → hs (T+1, B, H), cs (T+1, B, H),
    act (T, B, 4H) = σ(i), σ(f), σ(-2g), σ(o) (tanh g = 1 - 2σ(-2g)), tanh_c (T, B, H). Computes in xp's dtype."""
    T, B, G = xp.shape
    H = G // 4
    scale = _g_scale(w_hh)                                          # (4H,)
    hs, cs, tanh_c = xp.new_empty(T + 1, B, H), xp.new_empty(T + 1, B, H), xp.new_empty(T, B, H)
    act = torch.mul(xp, scale)                                        # (T, B, 4H): pre-activations, g times -2
    hs[0].copy_(h0)
    cs[0].copy_(c0)
    gates = act.unflatten(2, (4, H))                                  # (T, B, 4, H) views
    i_s, f_s, g_s, o_s = (gates[:, :, k].unbind(0) for k in range(4))  # T views of (B, H) each
    h_t, c_t, tc_t, a_t = hs.unbind(0), cs.unbind(0), tanh_c.unbind(0), act.unbind(0)
    w_t = (w_hh * scale.unsqueeze(1)).t().contiguous()                # (H, 4H), g columns times -2: NN gemm
    for t in range(T):
        torch.addmm(a_t[t], h_t[t], w_t, out=a_t[t])                  # (B, 4H) += W_hh h, in place: no copy
        torch.sigmoid(a_t[t], out=a_t[t])                             # σ(i), σ(f), σ(-2g), σ(o)
        torch.addcmul(i_s[t], f_s[t], c_t[t], out=c_t[t + 1])         # c' = σ(i) + σ(f) c
        c_t[t + 1].addcmul_(i_s[t], g_s[t], value=-2)                 #      - 2σ(i) σ(-2g)
        torch.tanh(c_t[t + 1], out=tc_t[t])
        torch.mul(o_s[t], tc_t[t], out=h_t[t + 1])                    # h' = σ(o) tanh(c')
    return hs, cs, act, tanh_c


def _step_factors(act: Tensor, hs: Tensor, cs: Tensor, tanh_c: Tensor) -> tuple[Tensor, Tensor]:
    """SK and R of the module docstring written into one (T, B, 4H) buffer, later d pre (the step
    scales each in place), and Q (T, B, H); a few vectorised ops and no other (T, B, ·) temporaries."""
    T, B, G = act.shape
    H = G // 4
    i, _, s_g, o = act.unflatten(2, (4, H)).unbind(2)                # s_g = σ(-2g)
    factors = torch.addcmul(act, act, act, value=-1)                  # σ' = s - s², (T, B, 4H)
    sk_i, sk_f, sk_g, r = factors.unflatten(2, (4, H)).unbind(2)
    sk_i.addcmul_(sk_i, s_g, value=-2)                                # σ'(i) tanh g, tanh g = 1 - 2σ(-2g)
    sk_f.mul_(cs[:-1])                                                # σ'(f) c_{t-1}
    sk_g.mul_(i).mul_(4)                                              # σ(i) tanh'(g), tanh'(g) = 4σ'(-2g)
    r.mul_(tanh_c)                                                    # σ'(o) tanh(c_t)
    q = torch.addcmul(o, hs[1:], tanh_c, value=-1)                    # σ(o) (1 - tanh²(c_t)), as h = σ(o) tanh c
    return factors, q


def lstm_backward(g_out: Tensor, g_c_final: Tensor, w_hh: Tensor, hs: Tensor, cs: Tensor,
                  act: Tensor, tanh_c: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """g_out (T, B, H): gradient of every h_t; g_c_final (B, H): of c_T.
    → d_xp (T, B, 4H) (also the biases' gradient, summed by the caller's autograd), d_w_hh (4H, H),
    d_h0, d_c0 (B, H)."""
    T, B, G = act.shape
    H = G // 4
    d_pre, q = _step_factors(act, hs, cs, tanh_c)                    # d_pre holds SK, R until step t
    d_gates = d_pre.unflatten(2, (4, H))                              # = d_xp = d (W_hh h + b_hh)
    d_ifg, d_o = d_gates[:, :, :3].unbind(0), d_gates[:, :, 3].unbind(0)
    f_s = act.unflatten(2, (4, H))[:, :, 1].unbind(0)
    q_t, g_t, d_t = q.unbind(0), g_out.unbind(0), d_pre.unbind(0)
    g_h, g_c = g_t[T - 1], g_c_final
    for t in reversed(range(T)):
        g_c = torch.addcmul(g_c, g_h, q_t[t])                         # total gradient at c_t
        d_ifg[t].mul_(g_c.unsqueeze(1))                               # (B, 3, H) = g_c SK_t
        d_o[t].mul_(g_h)                                              # g_h R_t
        g_c = g_c * f_s[t]                                            # ... reaching c_{t-1}
        g_h = torch.addmm(g_t[t - 1], d_t[t], w_hh) if t > 0 else torch.mm(d_t[t], w_hh)  # ... and h_{t-1}
    flat = d_pre.flatten(0, 1)                                        # (T*B, 4H)
    d_w = torch.mm(flat.t(), hs[:-1].flatten(0, 1))                   # (4H, T*B) x (T*B, H)
    return d_pre, d_w, g_h, g_c


class LSTMBPTT(torch.autograd.Function):
    """The LSTM recurrence after the input projection as one autograd node.

    forward(xp (T, B, 4H) with both biases, w_hh (4H, H), h0, c0 (B, H)) → (hs (T, B, H), c_T (B, H)).
    Computes in xp's dtype (bf16 under autocast) with autocast itself off inside.
    """

    @staticmethod
    def forward(ctx, xp: Tensor, w_hh: Tensor, h0: Tensor, c0: Tensor):
        dtype = xp.dtype
        w = w_hh.to(dtype)
        with torch.autocast(xp.device.type, enabled=False):
            hs, cs, act, tanh_c = lstm_forward(xp, w, h0.to(dtype), c0.to(dtype))
        ctx.save_for_backward(w, hs, cs, act, tanh_c)
        ctx.dtypes = (w_hh.dtype, h0.dtype, c0.dtype)
        return hs[1:], cs[-1]

    @staticmethod
    def backward(ctx, g_out: Tensor, g_c_final: Tensor):
        w, hs, cs, act, tanh_c = ctx.saved_tensors
        with torch.autocast(act.device.type, enabled=False):
            d_xp, d_w, d_h0, d_c0 = lstm_backward(
                g_out.to(act.dtype), g_c_final.to(act.dtype), w, hs, cs, act, tanh_c)
        w_dt, h_dt, c_dt = ctx.dtypes
        return d_xp, d_w.to(w_dt), d_h0.to(h_dt), d_c0.to(c_dt)


def lstm_recurrence(xp: Tensor, w_hh: Tensor, h0: Tensor, c0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """xp (T, B, 4H) = W_ih x + b_ih + b_hh, h0 and c0 (B, H) → (hs (T, B, H), h_T, c_T); no graph
    is kept without grad."""
    if torch.is_grad_enabled():
        hs, c_T = LSTMBPTT.apply(xp, w_hh, h0, c0)
        return hs, hs[-1], c_T
    dtype = xp.dtype
    hs, cs, _, _ = lstm_forward(xp, w_hh.to(dtype), h0.to(dtype), c0.to(dtype))
    return hs[1:], hs[-1], cs[-1]
