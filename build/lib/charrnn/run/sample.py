"""Text from a trained model: temperature samples and teacher-forced vs free-running predictions."""
from __future__ import annotations

from typing import Any

import torch

from charrnn.tasks.data import Task, Vocab
from charrnn.rnn.models import CharRNN

MAX_SAMPLE_LINES = 20  # for tasks with an end token (names, arithmetic): sequences per sample
HEATMAP_POSITIONS = 40
HEATMAP_TOP_K = 8


def _next_token(logits: torch.Tensor, temperature: float, generator: torch.Generator) -> int:
    """Sample one id from (V,) logits; temperature 0 is greedy."""
    if temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float().cpu() / temperature, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


@torch.no_grad()
def continue_from(model: CharRNN, prefix: list[int], length: int, temperature: float,
                  generator: torch.Generator, stop_id: int | None = None) -> list[int]:
    """Feed `prefix`, then generate up to `length` ids one step at a time (stop at `stop_id`)."""
    device = next(model.parameters()).device
    x = torch.tensor([prefix], dtype=torch.long, device=device)  # (1, P)
    logits, hidden = model(x, None)
    out: list[int] = []
    for _ in range(length):
        token = _next_token(logits[0, -1], temperature, generator)
        if token == stop_id:
            break
        out.append(token)
        logits, hidden = model(torch.tensor([[token]], device=device), hidden)
    return out


def _prefix(vocab: Vocab, prime: str) -> list[int]:
    ids = vocab.encode(prime)
    if vocab.bos_id is not None:
        ids = [vocab.bos_id] + ids
    return ids or [0]


def generate(model: CharRNN, vocab: Vocab, prime: str, length: int, temperature: float,
             seed: int = 0) -> str:
    """`prime` + sampled continuation. Tasks with an end token yield one sequence per line."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    prefix = _prefix(vocab, prime)
    if vocab.eos_id is None:
        text = prime + vocab.decode(continue_from(model, prefix, length, temperature, generator))
    else:
        lines, total = [], 0
        while total < length and len(lines) < MAX_SAMPLE_LINES:
            ids = continue_from(model, prefix, length, temperature, generator, vocab.eos_id)
            lines.append(prime + vocab.decode(ids))
            total += len(lines[-1]) + 1
        text = "\n".join(lines)
    model.train(was_training)
    return text


def _free_running_start(mask: torch.Tensor) -> int:
    """First target position the model generates on its own: the first scored one (the answer
    of an arithmetic problem), or after a short true context for plain language modelling."""
    if mask.all():
        return min(16, len(mask) // 4)
    return int(mask.nonzero()[0]) if mask.any() else 0


@torch.no_grad()
def predictions(model: CharRNN, task: Task, seq_len: int) -> dict[str, Any]:
    """Teacher-forced (true prefix every step) vs free-running (own output fed back) greedy
    predictions on the first val sequence, plus the top-k softmax over the first positions."""
    was_training = model.training
    model.eval()
    batch = task.val_batches(1, seq_len, 1)[0]
    device = next(model.parameters()).device
    x, y, mask = batch.x[0], batch.y[0], batch.mask[0]  # (T,)
    logits, _ = model(x[None].to(device), None)  # (1, T, V)
    probs = torch.softmax(logits[0].float(), dim=-1).cpu()  # (T, V)
    teacher = probs.argmax(-1)
    start = _free_running_start(mask)
    if task.autoregressive:  # language modelling: feed predictions back as inputs
        free = y[:start].tolist() + continue_from(
            model, x[:start + 1].tolist(), len(y) - start, 0.0, torch.Generator(), None)
    else:  # inputs are given (bitflip): nothing to feed back, both views coincide
        free = teacher.tolist()
    decode = task.vocab.itos
    top = probs[:HEATMAP_POSITIONS].topk(min(HEATMAP_TOP_K, probs.shape[1]), dim=-1)
    model.train(was_training)
    return {
        "input": [decode[i] for i in x.tolist()],
        "target": [decode[i] for i in y.tolist()],
        "scored": mask.tolist(),
        "teacher_forced": [decode[i] for i in teacher.tolist()],
        "free_running_from": start,
        "free_running": [decode[i] for i in free],
        "heatmap": {"tokens": [[decode[i] for i in row] for row in top.indices.tolist()],
                    "probs": [[round(p, 4) for p in row] for row in top.values.tolist()]},
    }
