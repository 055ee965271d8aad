"""Seed batching: K GRU CharRNN runs of one config that differ only in their seed, trained as one
K-member module — every weight stacked over a leading member axis, the input projection of all steps
one bmm, each time step's h W_hh^T one baddbmm over the K members, the head one bmm — with one Adam
over the stacked tensors (Adam is elementwise, so each member keeps its own moments: per-member Adam
state) and the trainer's gradient clipping taken per member.

Each member starts from the weights its own `Trainer` builds and trains on its own seed's batches,
so member k follows the separate run of seed k step for step (tests/test_seed_batch.py: each loss
within 1e-5 and every parameter within 1e-5 x max(1, |parameter|) over 5 steps against a fused
`Trainer`, clipping engaged or not; about 3e-7 measured).

A measurement, not a training path: it is NOT wired into the grid executor, because it measured
slower: on a 2-core CPU a 5-member batch trained at 0.53-0.66x the tokens/s of five separate fused
models (GRU H64 and H128, B32 T64; the stand-alone probe this module replaces). The benchmark
`charrnn/bench/timed/test_seed_batch_speed.py` times it against five separate runs.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from charrnn.config import ConfigError, TrainConfig
from charrnn.rnn.models import CharRNN, masked_cross_entropy
from charrnn.tasks.base import Batch, Task

def check_members(cfgs: Sequence[TrainConfig]) -> None:
    """ConfigError unless the configs are GRU CharRNNs this module runs (one layer, embedding input,
    no residual, zero initial state, Adam at a constant lr, fp32) that differ only in their seed."""
    first = cfgs[0]
    wanted = {"cell": "gru", "layers": 1, "input": "embedding", "residual": False, "hidden_init": "zero",
              "optimizer": "adam", "lr_schedule": "constant", "dtype": "fp32"}
    off = {k: getattr(first, k) for k, v in wanted.items() if getattr(first, k) != v}
    if off:
        raise ConfigError(f"seed batching runs {wanted}; these configs have {off}")
    if any(dataclasses.replace(cfg, seed=first.seed) != first for cfg in cfgs[1:]):
        raise ConfigError("seed batching: the members' configs must differ in their seed alone")


class SeedBatchedGRU(nn.Module):
    """K GRU CharRNNs (embedding, one nn.GRU layer, linear head) as one module, on the members' weights."""

    def __init__(self, members: Sequence[CharRNN]) -> None:
        super().__init__()
        states = [m.state_dict() for m in members]

        def stacked(name: str, matrix: bool = True) -> nn.Parameter:
            """Weights stored transposed, (K, in, out), for bmm; biases as (K, 1, out)."""
            parts = torch.stack([s[name].t() if matrix else s[name].unsqueeze(0) for s in states])
            return nn.Parameter(parts.contiguous().clone())

        self.emb = nn.Parameter(torch.stack([s["embedding.weight"] for s in states]).clone())   # (K, V, E)
        self.w_ih = stacked("layers.0.weight_ih_l0")                         # (K, E, 3H)
        self.w_hh = stacked("layers.0.weight_hh_l0")                         # (K, H, 3H)
        self.b_ih = stacked("layers.0.bias_ih_l0", matrix=False)             # (K, 1, 3H)
        self.b_hh = stacked("layers.0.bias_hh_l0", matrix=False)             # (K, 1, 3H)
        self.w_out = stacked("head.weight")                                  # (K, H, V)
        self.b_out = stacked("head.bias", matrix=False)                      # (K, 1, V)
        self.K, self.V, self.H = len(members), self.emb.shape[1], self.w_hh.shape[1]

    def forward(self, ids: Tensor) -> Tensor:
        """ids (K, B, T) → logits (K, B, T, V), each member from a zero state (nn.GRU's equations)."""
        K, B, T = ids.shape
        offset = (torch.arange(K, device=ids.device) * self.V).view(K, 1, 1)
        x = nn.functional.embedding(ids + offset, self.emb.flatten(0, 1)).view(K, B * T, -1)   # (K, B*T, E)
        xp = torch.baddbmm(self.b_ih, x, self.w_ih).view(K, B, T, 3 * self.H)                   # (K, B, T, 3H)
        h = x.new_zeros(K, B, self.H)
        outs = []
        for t in range(T):
            hp = torch.baddbmm(self.b_hh, h, self.w_hh)                                          # (K, B, 3H)
            xr, xz, xn = xp[:, :, t].chunk(3, -1)
            hr, hz, hn = hp.chunk(3, -1)
            r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            n = torch.tanh(xn + r * hn)
            h = n + z * (h - n)                                                                  # (1 - z) n + z h
            outs.append(h)
        out = torch.stack(outs, 2).view(K, B * T, self.H)
        return torch.baddbmm(self.b_out, out, self.w_out).view(K, B, T, self.V)

    def member_state_dict(self, k: int) -> dict[str, Tensor]:
        """Member k's weights in CharRNN's state-dict layout."""
        return {"embedding.weight": self.emb[k], "layers.0.weight_ih_l0": self.w_ih[k].t(),
                "layers.0.weight_hh_l0": self.w_hh[k].t(), "layers.0.bias_ih_l0": self.b_ih[k, 0],
                "layers.0.bias_hh_l0": self.b_hh[k, 0], "head.weight": self.w_out[k].t(),
                "head.bias": self.b_out[k, 0]}


def clip_per_member(params: Sequence[nn.Parameter], max_norm: float) -> Tensor:
    """`clip_grad_norm_` of each member's own gradients (dim 0 of every stacked parameter) → (K,) norms."""
    norms = torch.stack([p.grad.flatten(1).pow(2).sum(1) for p in params]).sum(0).sqrt()   # (K,)
    if max_norm > 0:
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for p in params:
            p.grad.mul_(coef.view(-1, *[1] * (p.dim() - 1)))
    return norms


class SeedBatchRun:
    """K runs (`cfgs`, one seed each) of one task, trained as one SeedBatchedGRU from the members'
    initial weights; `train_step(step)` is what each run's `Trainer.train_step(step)` does."""

    def __init__(self, cfgs: Sequence[TrainConfig], task: Task, members: Sequence[CharRNN]) -> None:
        check_members(cfgs)
        self.cfgs, self.task = list(cfgs), task
        self.device = members[0].head.weight.device
        self.model = SeedBatchedGRU(members).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfgs[0].lr)

    def train_step(self, step: int) -> list[float]:
        """Forward, backward, per-member clip, Adam; returns each member's loss."""
        batches = [self.task.train_batch(step, cfg.batch_size, cfg.seq_len, cfg.seed, False) for cfg in self.cfgs]
        ids = torch.stack([b.x for b in batches]).to(self.device)                                 # (K, B, T)
        logits = self.model(ids)                                                                 # (K, B, T, V)
        losses = torch.stack([masked_cross_entropy(logits[k], Batch(b.x, b.y.to(self.device), b.mask.to(self.device)))
                              for k, b in enumerate(batches)])                                   # (K,)
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()   # member k's parameters get the gradient of its own loss alone
        clip_per_member(list(self.model.parameters()), self.cfgs[0].grad_clip)
        self.optimizer.step()
        return losses.tolist()
