"""A bare PyTorch char-RNN training loop: the fair reference for the harness's loss numbers.

nn.Embedding -> nn.GRU -> nn.Linear, Adam, global-norm gradient clipping, a plain for-loop and a
plain evaluation; none of charrnn's trainer, model, loss or optimiser code. Only the batches come
from `charrnn.tasks.data` (the very windows the harness trains and evaluates on), so when the harness
and this loop disagree on the same init, data, batches, seed and budget, the harness is wrong.

    PYTHONPATH=. python tests/reference_loop.py --steps 200 --hidden-size 64

The model is built right after `torch.manual_seed(seed)` and the task, in the order the harness
builds its modules, so both start from the same weights (the test checks that too).
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from charrnn.config import TrainConfig
from charrnn.tasks.data import make_task


@dataclass(frozen=True)
class Budget:
    """Everything the bare loop trains with; `config()` is the same run for the harness."""
    task: str = "tinyshakespeare"
    hidden_size: int = 64
    batch_size: int = 16
    seq_len: int = 32
    lr: float = 2e-3
    grad_clip: float = 5.0
    steps: int = 100
    eval_batches: int = 4
    seed: int = 0

    def config(self) -> TrainConfig:
        """The harness config of the same run: GRU, 1 layer, fused backend, zero h0, constant lr."""
        return TrainConfig(task=self.task, cell="gru", backend="fused", layers=1, hidden_size=self.hidden_size,
                           batch_size=self.batch_size, seq_len=self.seq_len, lr=self.lr, grad_clip=self.grad_clip,
                           steps=self.steps, eval_interval=self.steps, eval_batches=self.eval_batches,
                           seed=self.seed, device="cpu")


class BareGRU(nn.Module):
    def __init__(self, vocab_size: int, hidden_size: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(self.embedding(x))   # (B, T, H), zero initial state
        return self.head(out)                  # (B, T, V)


def build(budget: Budget):
    """(task, model) seeded as the harness seeds them."""
    torch.manual_seed(budget.seed)
    task = make_task(budget.config())
    return task, BareGRU(task.vocab.size, budget.hidden_size)


def train(budget: Budget) -> dict[str, float]:
    """Train for budget.steps on the harness's random-window batches; final val loss (nats/char)."""
    task, model = build(budget)
    optimizer = torch.optim.Adam(model.parameters(), lr=budget.lr)
    for step in range(budget.steps):
        batch = task.train_batch(step, budget.batch_size, budget.seq_len, budget.seed, False)
        logits = model(batch.x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), budget.grad_clip)
        optimizer.step()
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in task.val_batches(budget.batch_size, budget.seq_len, budget.eval_batches):
            logits = model(batch.x)
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.y.reshape(-1),
                                     reduction="sum").item()
            count += batch.y.numel()
    return {"final_val_loss": total / count, "final_train_loss": loss.item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in vars(Budget()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    budget = Budget(**vars(parser.parse_args()))
    result = train(budget)
    print(f"bare loop: final_val_loss={result['final_val_loss']:.4f} ({budget}); "
          f"unigram ceiling ln(V)={math.log(build(budget)[0].vocab.size):.3f}")


if __name__ == "__main__":
    main()
