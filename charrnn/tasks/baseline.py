"""Trivial baselines, the learning check of every run: what a model that learned nothing beyond
token frequencies scores on the run's own evaluation batches.

Two predictors are counted on the run's train split (after `dataset_fraction`), add-one smoothed
over the vocabulary:

- unigram: P(target), the same for every position; its argmax is the majority class (chance
  accuracy for the synthetic tasks);
- bigram: P(target | the input token at that position). Only for autoregressive tasks, where that
  input is the previous character. In bitflip the input at a position determines its target
  (y = 1 - x), so a bigram would be the task's answer, not a trivial baseline: unigram only.

For each evaluation set the baseline of a metric is the better predictor on it: the lower loss
(nats/char), the higher accuracy and exact match, scored exactly as `Trainer.score` scores a model
(masked targets, an exact match needs every scored target of a row). Logged once per run as
`baseline_<metric>` (e.g. `baseline_test_loss`), beside `final_<metric>`.
"""
from __future__ import annotations

import torch

from charrnn.tasks.base import Batch, Task


def predictor_tables(task: Task) -> dict[str, torch.Tensor]:
    """name -> (V, V) float64 table of log P(target | context) (rows: context token id)."""
    context, target = task.train_pairs()                       # (N,), (N,)
    size = task.vocab.size
    unigram = torch.bincount(target, minlength=size).double() + 1.0                    # (V,)
    tables = {"unigram": (unigram / unigram.sum()).log().expand(size, size)}
    if task.autoregressive:
        pairs = torch.bincount(context * size + target, minlength=size * size).double()  # (V*V,)
        counts = pairs.view(size, size) + 1.0                                           # (V, V)
        tables["bigram"] = (counts / counts.sum(dim=1, keepdim=True)).log()
    return tables


def score_table(table: torch.Tensor, batches: list[Batch], has_accuracy: bool) -> dict[str, float]:
    """loss (+ accuracy, exact_match) of a context -> target table over `batches`, unprefixed."""
    loss_sum = correct = counted = exact = rows = 0.0
    guess = table.argmax(dim=1)                                   # (V,) the table's prediction per context
    for batch in batches:
        x, y, mask = batch.x.cpu(), batch.y.cpu(), batch.mask.cpu()  # (B, T) each
        log_p = table[x, y]                                       # (B, T)
        loss_sum -= log_p[mask].sum().item()
        hit = (guess[x] == y) | ~mask                             # (B, T)
        correct += (hit & mask).sum().item()
        counted += mask.sum().item()
        has_target = mask.any(dim=1)
        exact += (hit.all(dim=1) & has_target).sum().item()
        rows += has_target.sum().item()
    scores = {"loss": loss_sum / max(counted, 1)}
    if has_accuracy:
        scores.update(accuracy=correct / max(counted, 1), exact_match=exact / max(rows, 1))
    return scores


def baseline_metrics(task: Task, eval_sets: dict[str, list[Batch]]) -> dict[str, float]:
    """`baseline_<prefix>_<metric>` for every evaluation set (prefix -> its batches, e.g. "val"):
    the best trivial predictor on that set, per metric."""
    tables = predictor_tables(task)
    out: dict[str, float] = {}
    for prefix, batches in eval_sets.items():
        if not batches:
            continue
        scored = [score_table(table, batches, task.has_accuracy) for table in tables.values()]
        for metric in scored[0]:
            values = [s[metric] for s in scored]
            out[f"baseline_{prefix}_{metric}"] = min(values) if metric == "loss" else max(values)
    return out
