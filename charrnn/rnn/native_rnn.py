"""Backend `loop_native`: the LSTM and GRU recurrences of `loop_bptt` as C++ loops (csrc/rnn_steps.cpp).

`loop_bptt` already writes the backward out by hand, but each step is still a dozen small ATen ops
issued from Python; on a 2-core CPU at H=256, B=32 that per-op cost, not the matmul, is what kept it
behind oneDNN's LSTM. Here a step is one ATen matmul and one fused gate kernel that reads and writes
every element once, and the time loop runs in C++:

    before the op (Python, autograd): xp = x W_ih^T + bias, one GEMM for all T (`project`); for
        layer 0 of a CharRNN a lookup in a (V, G*H) table of the projected vocabulary (`project_tokens`)
    forward, step t                              backward, step t (t = T-1 .. 0)
    m   = h_t W_hh^T              (matmul)       d_t = gate_bwd(g_out_t + m, dc, a_t, c_t, tanh c_{t+1})  (kernel)
    a_t, c_{t+1}, h_{t+1}                        m   = d_t W_hh                                           (matmul)
        = gate_fwd(xp_t + m, c_t) (kernel)
    after the loop: dW_hh = d^T hs (one matmul over all T); the op returns d xp = d, and autograd
        takes the input projection's gradients from it (for the table: per-token sums, V rows)

The step matmul is oneDNN's with the weight packed once per call (fp32; at::mm otherwise); the
kernel adds its addends itself, so no step writes a sum to memory before the kernel reads it.

LSTM (gate blocks i, f, g, o as nn.LSTM; bias = b_ih + b_hh, both in the input projection):
    c' = σ(f) c + σ(i) tanh g,  h' = σ(o) tanh c'
    d pre_i = dc σ(i)(1-σ(i)) tanh g,  d pre_f = dc c σ(f)(1-σ(f)),  d pre_g = dc σ(i)(1-tanh² g),
    d pre_o = dh tanh c' σ(o)(1-σ(o)),  with dc = dc(carried) + dh σ(o)(1-tanh² c'); dc(carried) ← dc σ(f)
GRU (gate blocks r, z, n as nn.GRU; b_ih in the input projection, b_hh added to h W_hh^T by the step kernel,
as n sees r (W_hn h + b_hn)):
    n = tanh(xp_n + r hp_n),  h' = (1-z) n + z h,  hp = W_hh h + b_hh
    d n_pre = dh (1-z)(1-n²),  d z_pre = dh (h-n) z(1-z),  d r_pre = d n_pre hp_n r(1-r);
    d hp = (d r_pre, d z_pre, r d n_pre);  dh_{t-1} = z dh + g_out_{t-1} + d hp W_hh

The kernels compute in fp32 for bf16 tensors (ATen's opmath type). The extension is built on first use
with `torch.utils.cpp_extension.load` (cached under $TORCH_EXTENSIONS_DIR, default
~/.cache/torch_extensions), for the vector ISA torch itself dispatches to on this CPU (probed, never
`-march=native`: a build cache shared between machines must not carry instructions one of them lacks).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

# the GRU / LSTM loops, and the minGRU / minLSTM loops of backend `min_native` (native_min.py): one extension
SOURCES = [Path(__file__).parent / "csrc" / name for name in ("rnn_steps.cpp", "min_steps.cpp")]
# torch's CPU capability → the ISA flags the kernels are compiled for (vectorised expf/tanhf from
# glibc's libmvec need -ffast-math; -fopenmp-simd honours `#pragma omp simd` without an OpenMP runtime).
ISA_FLAGS = {"AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma"],
             "AVX2": ["-mavx2", "-mfma"]}
BASE_FLAGS = ["-O3", "-ffast-math", "-fopenmp-simd"]


def build_flags() -> list[str]:
    """Compiler flags for this CPU: BASE_FLAGS and the ISA flags of torch's probed capability."""
    return BASE_FLAGS + ISA_FLAGS.get(torch.backends.cpu.get_cpu_capability(), [])


class NativeBuildError(RuntimeError):
    """The C++ extension did not build or load here (the message says why, in one line)."""


_BUILT: list = []   # [torch.ops.charrnn_native] or [NativeBuildError]: the process's one build attempt


def _ninja_on_path() -> None:
    """torch builds with `ninja` found on PATH; the `ninja` package's binary sits in the Python
    environment's bin directory, which is not on PATH unless that environment is activated."""
    if shutil.which("ninja") is None:
        import ninja

        os.environ["PATH"] = os.pathsep.join([ninja.BIN_DIR, os.environ.get("PATH", "")])


def _build():
    from torch.utils.cpp_extension import load

    _ninja_on_path()
    capability = torch.backends.cpu.get_cpu_capability().lower()
    try:
        load(name=f"charrnn_native_{capability}", sources=[str(s) for s in SOURCES], is_python_module=False,
             extra_cflags=build_flags())
    except Exception as exc:
        text = str(exc).strip()
        return NativeBuildError(f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": "))
    return torch.ops.charrnn_native


def ops():
    """torch.ops.charrnn_native, built on the first call (about 15 s on 2 cores), loaded afterwards.
    The build's name carries the capability, so one cache can hold the builds of several CPUs. A
    failed build raises NativeBuildError, on this call and every later one of the process (a
    compiler error does not go away between calls; each retry would cost the whole build)."""
    if not _BUILT:
        _BUILT.append(_build())
    if isinstance(_BUILT[0], NativeBuildError):
        raise _BUILT[0]
    return _BUILT[0]


class LSTMNative(torch.autograd.Function):
    """forward(xp (T, B, 4H) = x W_ih^T + b_ih + b_hh, w_hh (4H, H), h0, c0 (B, H)) → (hs (T, B, H),
    c_T (B, H)); backward gives d xp, from which autograd takes the input projection's gradients.
    Computes in xp's dtype (the caller casts under autocast)."""

    @staticmethod
    def forward(ctx, xp: Tensor, w_hh: Tensor, h0: Tensor, c0: Tensor):
        w_hh_, h0_, c0_ = (t.to(xp.dtype) for t in (w_hh, h0, c0))
        hs, cs, act, tanh_c = ops().lstm_forward(xp, w_hh_, h0_, c0_)
        ctx.save_for_backward(w_hh_, hs, cs, act, tanh_c)
        ctx.dtypes = [t.dtype for t in (w_hh, h0, c0)]
        return hs[1:], cs[-1]

    @staticmethod
    def backward(ctx, g_out: Tensor, g_c: Tensor):
        w_hh, hs, cs, act, tanh_c = ctx.saved_tensors
        d_xp, *grads = ops().lstm_backward(g_out.to(act.dtype), g_c.to(act.dtype), w_hh, hs, cs, act, tanh_c)
        return d_xp, *(g.to(dt) for g, dt in zip(grads, ctx.dtypes, strict=True))


class GRUNative(torch.autograd.Function):
    """forward(xp (T, B, 3H) = x W_ih^T + b_ih, w_hh (3H, H), b_hh (3H,), h0 (B, H)) → hs (T, B, H);
    b_hh is added by the step kernel, as n sees it through r. Computes in xp's dtype."""

    @staticmethod
    def forward(ctx, xp: Tensor, w_hh: Tensor, b_hh: Tensor, h0: Tensor):
        w_hh_, b_hh_, h0_ = (t.to(xp.dtype) for t in (w_hh, b_hh, h0))
        hs, act = ops().gru_forward(xp, w_hh_, b_hh_, h0_)
        ctx.save_for_backward(w_hh_, hs, act)
        ctx.dtypes = [t.dtype for t in (w_hh, b_hh, h0)]
        return hs[1:]

    @staticmethod
    def backward(ctx, g_out: Tensor):
        w_hh, hs, act = ctx.saved_tensors
        d_xp, *grads = ops().gru_backward(g_out.to(act.dtype), w_hh, hs, act)
        return d_xp, *(g.to(dt) for g, dt in zip(grads, ctx.dtypes, strict=True))


def input_bias(cell: str, b_ih: Tensor, b_hh: Tensor) -> Tensor:
    """The bias the input projection carries: b_ih + b_hh for the LSTM, b_ih for the GRU (whose
    b_hh_n sits inside r (W_hn h + b_hn))."""
    return b_ih + b_hh if cell == "lstm" else b_ih


def compute_dtype(device_type: str, dtype: torch.dtype) -> torch.dtype:
    """The dtype the recurrence runs in: autocast's where it is on (as the other backends' matmuls)."""
    return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else dtype


def project(x: Tensor, w_ih: Tensor, bias: Tensor) -> Tensor:
    """x (T, B, I) → xp (T, B, G*H) = x W_ih^T + bias: one GEMM for all steps, in the compute dtype."""
    dtype = compute_dtype(x.device.type, x.dtype)
    with torch.autocast(x.device.type, enabled=False):
        return F.linear(x.to(dtype), w_ih.to(dtype), bias.to(dtype))


def project_tokens(ids: Tensor, encoding: Tensor | None, w_ih: Tensor, bias: Tensor) -> Tensor:
    """Token ids (T, B) → xp (T, B, G*H), the projection of their encodings as rows of one table:
    encoding (V, I) an embedding's weight, or None for one-hot inputs (encoding = identity).

        table = encoding W_ih^T + bias                 (V, G*H): V rows instead of T*B
        xp[t, b] = table[ids[t, b]]                    (a lookup; its backward sums d xp per token)

    The same numbers as `project(encoding[ids], ...)` up to rounding; the gradients of W_ih and of
    the encoding come from the (V, G*H) table's gradient instead of two (T*B)-row GEMMs."""
    dtype = compute_dtype(w_ih.device.type, w_ih.dtype)
    with torch.autocast(w_ih.device.type, enabled=False):
        w, b = w_ih.to(dtype), bias.to(dtype)
        table = w.t() + b if encoding is None else F.linear(encoding.to(dtype), w, b)   # (V, G*H)
        return F.embedding(ids, table)


def recurrence(cell: str, xp: Tensor, w_hh: Tensor, b_hh: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """xp (T, B, G*H) from `project` or `project_tokens`, weights as nn.LSTM / nn.GRU, state (h,) or
    (h, c) each (B, H) → (hs (T, B, H), h_T[, c_T]). Runs in xp's dtype, with fp32 gate math inside the
    kernels and gradients back in the parameters' dtypes."""
    with torch.autocast(xp.device.type, enabled=False):
        if cell == "lstm":
            hs, c_T = LSTMNative.apply(xp, w_hh, *state)
            return hs, hs[-1], c_T
        hs = GRUNative.apply(xp, w_hh, b_hh, *state)
        return hs, hs[-1]
