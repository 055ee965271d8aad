"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"): gates from the input alone,
so the recurrence is linear in h and a whole sequence runs as one parallel prefix scan.

Equations of one layer (x_t: (B, I), h: (B, H); σ the logistic sigmoid):

    g(u)  = u + 1/2 if u >= 0 else σ(u)              (positive, continuous, increasing; the paper's
                                                      activation for the log-space form)
    minGRU:  z_t = σ(W_z x_t + b_z)      h̃_t = g(W_h x_t + b_h)
             h_t = (1 - z_t) h_{t-1} + z_t h̃_t
    minLSTM: f_t = σ(W_f x_t + b_f)      i_t = σ(W_i x_t + b_i)      h̃_t = g(W_h x_t + b_h)
             f'_t = f_t / (f_t + i_t)    i'_t = i_t / (f_t + i_t)
             h_t = f'_t h_{t-1} + i'_t h̃_t

Both are h_t = a_t h_{t-1} + b_t with a_t in (0, 1) and b_t > 0 computed from x_t alone. Unrolled,

    h_t = A_t h_0 + A_t Σ_{k<=t} b_k / A_k,      A_t = Π_{k<=t} a_k,

and in log space (Heinsen 2023), with a*_t = Σ_{k<=t} log a_k (a cumsum):

    h_t = exp(a*_t) h_0 + exp(a*_t + logcumsumexp_{k<=t}(log b_k - a*_k)).

The h_0 term is kept out of the logarithm, so h_0 may be zero or negative (the harness's zero and
random initial states, and a state carried from the previous chunk). The log-space sums use the
stable forms log σ(u) = -softplus(-u), log(1 - σ(u)) = -softplus(-u), log g(u) = log(u + 1/2) or
-softplus(-u), and for minLSTM log f' = -softplus(log i - log f), log i' = -softplus(log f - log i).

Backends: `loop` (`MinLayer(scan=False)`): the step function `mingru_step` / `minlstm_step`
applied t = 1..T, the sequential reference; `scan` (`scan_layer`): the log-space scan over time. The scan runs in
chunks of `chunk` steps (default `SCAN_CHUNK`): inside a chunk all steps at once, across chunks the
carry h_{end} goes in through the linear h_0 term, one small elementwise op per chunk:

    time  ─────────────────────────────────────────────▶
          [ chunk 0: scan ][ chunk 1: scan ] ... [ chunk N-1 ]     all chunks' scans in parallel
           h_0 ──────────▶ h_C ────────────▶ ... ─▶ h_T            carries: N sequential steps

Chunking bounds |a*| (so the cancellation in a* + logcumsumexp(·) stays small in fp32) and is the
same sum, so it changes results only by rounding. A single step (T = 1: sampling) always uses the
sequential form. Parameters: `weight_ih_l0` (G*H, I) and `bias_ih_l0` (G*H,), gate blocks stacked
along dim 0 like nn.GRU (minGRU: z | h̃, G = 2; minLSTM: f | i | h̃, G = 3); no hidden-to-hidden
weights. Every backend shares this state dict. The scan computes in fp32 (also under autocast).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from charrnn import registry
from charrnn.rnn.cell_math import init_uniform_

SCAN_CHUNK = 64    # steps per chunk of the scan backend: fp32 error ~3e-5 at T=1024 (whole-T: ~8e-3)
# scan == loop within this, per tensor: max|scan - loop| <= tol * max(1, max|loop|) (see tests)
SCAN_TOLERANCE = dict(registry.BACKENDS["scan"].tolerances)


# --------------------------------------------------------------------------- activations

def g(u: Tensor) -> Tensor:
    """The paper's positive activation: u + 1/2 for u >= 0, σ(u) below."""
    return torch.where(u >= 0, u + 0.5, torch.sigmoid(u))


def log_g(u: Tensor) -> Tensor:
    """log g(u) without overflow: log(relu(u) + 1/2) for u >= 0, -softplus(-u) below."""
    return torch.where(u >= 0, (F.relu(u) + 0.5).log(), -F.softplus(-u))


# --------------------------------------------------------------------------- sequential steps
# step(xp, h) -> h': xp = W x + b (B, G*H), h (B, H) → (B, H). The paper's equations, linear space.

def mingru_step(xp: Tensor, h: Tensor) -> Tensor:
    """h' = (1 - z) h + z g(h̃), z = σ(xp_z). xp: (B, 2H) = z | h̃."""
    k, pre = xp.chunk(2, dim=-1)                    # (B, H) each
    z = torch.sigmoid(k)
    return (1 - z) * h + z * g(pre)


def minlstm_step(xp: Tensor, h: Tensor) -> Tensor:
    """h' = f' h + i' g(h̃), (f', i') = (f, i) / (f + i). xp: (B, 3H) = f | i | h̃."""
    kf, ki, pre = xp.chunk(3, dim=-1)               # (B, H) each
    f, i = torch.sigmoid(kf), torch.sigmoid(ki)
    return (f * h + i * g(pre)) / (f + i)


# --------------------------------------------------------------------------- log-space coefficients
# log_coeffs(xp) -> (log a, log b), each (..., H): h_t = a_t h_{t-1} + b_t.

def mingru_log_coeffs(xp: Tensor) -> tuple[Tensor, Tensor]:
    k, pre = xp.chunk(2, dim=-1)
    return -F.softplus(k), -F.softplus(-k) + log_g(pre)          # log(1 - z), log z + log g(h̃)


def minlstm_log_coeffs(xp: Tensor) -> tuple[Tensor, Tensor]:
    kf, ki, pre = xp.chunk(3, dim=-1)
    diff = F.softplus(-kf) - F.softplus(-ki)                      # log i - log f
    return -F.softplus(diff), -F.softplus(-diff) + log_g(pre)     # log f', log i' + log g(h̃)


@dataclass(frozen=True)
class MinMath:
    """The functions of a min cell (the registry's `Cell.math` names one of these)."""

    step: Callable[[Tensor, Tensor], Tensor]                    # sequential form
    log_coeffs: Callable[[Tensor], tuple[Tensor, Tensor]]       # log-space form for the scan


MINGRU = MinMath(mingru_step, mingru_log_coeffs)
MINLSTM = MinMath(minlstm_step, minlstm_log_coeffs)


# --------------------------------------------------------------------------- the scan

def log_scan(log_a: Tensor, log_b: Tensor, h0: Tensor) -> Tensor:
    """h_t = a_t h_{t-1} + b_t for t = 1..T in one log-space scan (Heinsen 2023).

    log_a, log_b: (B, N, C, H) — N independent blocks of C steps along dim 2; h0: (B, N, H),
    any sign. Returns h: (B, N, C, H).
    """
    a_star = torch.cumsum(log_a, dim=2)                              # (B, N, C, H)
    local = torch.exp(a_star + torch.logcumsumexp(log_b - a_star, dim=2))
    return torch.addcmul(local, torch.exp(a_star), h0.unsqueeze(2))


def scan_time(log_a: Tensor, log_b: Tensor, h0: Tensor, chunk: int = SCAN_CHUNK) -> Tensor:
    """The whole recurrence over time: log_a, log_b (B, T, H), h0 (B, H) → h (B, T, H).

    Chunks of `chunk` steps are scanned in parallel from a zero state; then each chunk's carry,
    h at the end of the chunk before, enters through the linear term exp(a*_t) h_carry.
    """
    B, T, H = log_a.shape
    C = max(1, min(chunk, T))
    N = -(-T // C)
    pad = N * C - T              # padded steps come after every real one: they change nothing kept
    if pad:
        log_a, log_b = F.pad(log_a, (0, 0, 0, pad)), F.pad(log_b, (0, 0, 0, pad))
    log_a, log_b = log_a.view(B, N, C, H), log_b.view(B, N, C, H)  # (B, N, C, H)
    if N == 1:
        return log_scan(log_a, log_b, h0.unsqueeze(1)).view(B, C, H)[:, :T]
    zero = h0.new_zeros(B, N, H)
    local = log_scan(log_a, log_b, zero)                             # (B, N, C, H): from h = 0
    decay = torch.exp(torch.cumsum(log_a, dim=2))                    # (B, N, C, H): A_t in-chunk
    chunks, carry = [], h0                                           # carry (B, H)
    for n in range(N):
        h_n = torch.addcmul(local[:, n], decay[:, n], carry.unsqueeze(1))  # (B, C, H)
        chunks.append(h_n)
        carry = h_n[:, -1]
    return torch.cat(chunks, dim=1)[:, :T]                           # (B, T, H)


# --------------------------------------------------------------------------- the layer

class MinLayer(nn.Module):
    """One minGRU / minLSTM layer; forward like nn.GRU(batch_first=True):
    x (B, T, I), hx (1, B, H) or None (zeros) → (out (B, T, H), h_n (1, B, H)).

    scan=False (backend `loop`): the step function over t (the reference); scan=True (backend
    `scan`): `scan_time` (T = 1: the step).
    """

    num_layers = 1
    batch_first = True

    def __init__(self, cell: str, input_size: int, hidden_size: int, scan: bool = True,
                 chunk: int = SCAN_CHUNK) -> None:
        super().__init__()
        spec = registry.CELLS[cell]
        self.math: MinMath = registry.load(spec.math)
        self.cell, self.scan, self.chunk = cell, scan, chunk
        self.input_size, self.hidden_size = input_size, hidden_size
        rows = spec.gates * hidden_size
        self.weight_ih_l0 = nn.Parameter(torch.empty(rows, input_size))   # (G*H, I)
        self.bias_ih_l0 = nn.Parameter(torch.empty(rows))                 # (G*H,)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's RNN init, as the other cells: U(-1/sqrt(H), 1/sqrt(H))."""
        init_uniform_(self.parameters(), self.hidden_size)

    def extra_repr(self) -> str:
        return f"{self.cell}, {self.input_size}, {self.hidden_size}, backend={'scan' if self.scan else 'loop'}"

    def forward(self, x: Tensor, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        B, T, _ = x.shape
        h = x.new_zeros(B, self.hidden_size) if hx is None else hx.squeeze(0)   # (B, H)
        xp = F.linear(x, self.weight_ih_l0, self.bias_ih_l0)                   # (B, T, G*H)
        if T == 0:
            return x.new_zeros(B, 0, self.hidden_size), h.unsqueeze(0)
        if not self.scan or T == 1:
            out = self.sequential(xp, h)
        else:
            log_a, log_b = self.math.log_coeffs(xp.float())                    # (B, T, H) each
            out = scan_time(log_a, log_b, h.float(), self.chunk)
        return out, out[:, -1].unsqueeze(0)                                    # (B, T, H), (1, B, H)

    def sequential(self, xp: Tensor, h: Tensor) -> Tensor:
        """The step function for t = 1..T: xp (B, T, G*H), h (B, H) → (B, T, H)."""
        step, outputs = self.math.step, []
        for xp_t in xp.unbind(1):                                              # (B, G*H)
            h = step(xp_t, h)
            outputs.append(h)
        return torch.stack(outputs, dim=1)


def scan_layer(cell: str, input_size: int, hidden_size: int, *_vanilla_options: str) -> MinLayer:
    """The `scan` backend's layer factory (input_combine and activation are vanilla-only)."""
    return MinLayer(cell, input_size, hidden_size, scan=True)
