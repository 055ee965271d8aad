"""Seed-batching probe: K GRU CharRNNs trained as one K-member model (stacked weights, one torch.bmm
per step) against K separate models, tokens/s of training (fwd + bwd + Adam) on this CPU.

    python tools/seed_batch_probe.py [--hidden 64 128] [--k 5] [--steps 15] [--rounds 3]

Arms, each timed per training step (min over interleaved rounds):
  batched   K members: embedding (K, V, H) gather, input GEMM as one bmm, per step h W_hh^T as one
            baddbmm over K, eager GRU gate math, head bmm, sum of members' mean losses, one Adam
            over the stacked tensors (Adam is elementwise: per-member state for free)
  fused     K separate nn.Embedding + nn.GRU (oneDNN) + nn.Linear models, one Adam each, stepped in turn
  loop      K separate models with the same eager loop as `batched` (K = 1): the batching gain alone
"""
import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

V = 65


class BatchedGRULM(nn.Module):
    def __init__(self, K: int, H: int):
        super().__init__()
        s = H ** -0.5
        u = lambda *shape: nn.Parameter(torch.empty(*shape).uniform_(-s, s))  # noqa: E731
        self.emb = nn.Parameter(torch.randn(K, V, H))
        self.w_ih, self.w_hh = u(K, H, 3 * H), u(K, H, 3 * H)           # stored transposed: (K, I, 3H)
        self.b_ih, self.b_hh = u(K, 1, 3 * H), u(K, 1, 3 * H)
        self.w_out, self.b_out = u(K, H, V), u(K, 1, V)
        self.H = H

    def forward(self, ids):                                               # ids (K, B, T)
        K, B, T = ids.shape
        x = torch.gather(self.emb, 1, ids.reshape(K, B * T, 1).expand(K, B * T, self.H))   # (K, B*T, H)
        xp = torch.baddbmm(self.b_ih, x, self.w_ih).view(K, B, T, 3 * self.H)             # (K, B, T, 3H)
        h = x.new_zeros(K, B, self.H)
        outs = []
        for t in range(T):
            hp = torch.baddbmm(self.b_hh, h, self.w_hh)                                    # (K, B, 3H)
            xr, xz, xn = xp[:, :, t].chunk(3, -1)
            hr, hz, hn = hp.chunk(3, -1)
            r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            n = torch.tanh(xn + r * hn)
            h = n + z * (h - n)
            outs.append(h)
        out = torch.stack(outs, 2).view(K, B * T, self.H)
        return torch.baddbmm(self.b_out, out, self.w_out)                                  # (K, B*T, V)


class FusedLM(nn.Module):
    def __init__(self, H: int):
        super().__init__()
        self.emb, self.rnn, self.head = nn.Embedding(V, H), nn.GRU(H, H, batch_first=True), nn.Linear(H, V)

    def forward(self, ids):                                               # (B, T)
        return self.head(self.rnn(self.emb(ids))[0])


def step_batched(model, opt, ids, targets):
    K = ids.shape[0]
    logits = model(ids)                                                   # (K, B*T, V)
    loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), reduction="sum") / (targets[0].numel())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item() / K


def step_fused(model, opt, ids, targets):
    loss = F.cross_entropy(model(ids).reshape(-1, V), targets.reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def timed(fn, steps):
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    K, B, T = a.k, a.batch, a.seq
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, K={K} B={B} T={T}")
    for H in a.hidden:
        ids = torch.randint(0, V, (K, B, T))
        tgt = torch.randint(0, V, (K, B, T))
        batched = BatchedGRULM(K, H)
        opt_b = torch.optim.Adam(batched.parameters(), 1e-3)
        fused = [FusedLM(H) for _ in range(K)]
        opt_f = [torch.optim.Adam(m.parameters(), 1e-3) for m in fused]
        loops = [BatchedGRULM(1, H) for _ in range(K)]
        opt_l = [torch.optim.Adam(m.parameters(), 1e-3) for m in loops]
        arms = {
            "batched": lambda: step_batched(batched, opt_b, ids, tgt),
            "fused x K": lambda: [step_fused(m, o, ids[k], tgt[k]) for k, (m, o) in enumerate(zip(fused, opt_f))],
            "loop x K": lambda: [step_batched(m, o, ids[k:k + 1], tgt[k:k + 1])
                                 for k, (m, o) in enumerate(zip(loops, opt_l))],
        }
        for fn in arms.values():
            timed(fn, 2)                                                  # warm-up
        best = {name: float("inf") for name in arms}
        for _ in range(a.rounds):                                         # interleaved rounds
            for name, fn in arms.items():
                best[name] = min(best[name], timed(fn, a.steps))
        tokens = K * B * T
        rates = {name: tokens / s for name, s in best.items()}
        arms_text = (f"{n} {r:,.0f} tok/s ({1e3 * best[n]:.1f} ms per K-step)" for n, r in rates.items())
        print(f"H{H}: " + ", ".join(arms_text))
        print(f"H{H}: batched / fused x K = {rates['batched'] / rates['fused x K']:.2f}x, "
              f"batched / loop x K = {rates['batched'] / rates['loop x K']:.2f}x")


if __name__ == "__main__":
    main()
