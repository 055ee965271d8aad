"""What the `backend: auto` probe (capabilities.probe) measures: the CharRNN of a config on one backend
as it trains — the token lookup (embedding or one-hot), every recurrent layer, the residuals, the
head and the masked cross-entropy, forward and backward — on a batch of the run's own task.

Every backend builds the same state dict (models.py), so a candidate is built on the reference's
weights and must give the reference's logits and parameter gradients within its tolerance
(`registry.TOLERANCE`). Only then is it timed, in alternation with the reference.
"""
from __future__ import annotations

import dataclasses
import time
from contextlib import contextmanager

import torch
from torch import Tensor

from charrnn.config import TrainConfig
from charrnn.rnn.models import CharRNN, masked_cross_entropy
from charrnn.tasks.base import Batch

WHOLE_MODEL = "model"   # what a probe entry timed (capabilities.Choice.timed): the whole CharRNN, not one layer


def build(backend: str, cfg: TrainConfig, vocab_size: int, device: torch.device,
          state: dict[str, Tensor] | None = None) -> CharRNN:
    """cfg's CharRNN with its layers on `backend` (one the registry runs for cfg), on `state`'s weights."""
    model = CharRNN(dataclasses.replace(cfg, backend=backend), vocab_size)
    if state is not None:
        model.load_state_dict(state)
    return model.to(device)


def forward_backward(model: CharRNN, batch: Batch, autocast) -> dict[str, Tensor]:
    """Logits and every parameter gradient of one training forward + backward (the trainer's
    loss, from the model's initial state: zero, or learned h0)."""
    model.zero_grad(set_to_none=True)
    with autocast:
        logits, _ = model(batch.x)                                          # (B, T, V)
        loss = masked_cross_entropy(logits, batch)
    loss.backward()
    grads = {f"d_{name}": p.grad for name, p in model.named_parameters() if p.grad is not None}
    return {"logits": logits.detach(), **grads}


def equivalence_error(got: dict[str, Tensor], want: dict[str, Tensor], tol: float) -> str:
    """Why `got` differs from `want` beyond max |got - want| <= tol * max(1, max |want|) ("" when it does not)."""
    for name, ref in want.items():
        if name not in got:
            return f"{name}: missing"
        have, ref = got[name].float(), ref.float()
        err, scale = (have - ref).abs().max().item(), max(1.0, ref.abs().max().item())
        if not err <= tol * scale:   # NaN fails too
            return f"{name}: max |error| {err:.3g} > {tol:g} x {scale:.3g}"
    return ""


@contextmanager
def tf32_off():
    """fp32 equivalence in fp32: cuBLAS and cuDNN without TF32, the RNN backward included."""
    matmul = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, benchmark=torch.backends.cudnn.benchmark,
                                        deterministic=torch.backends.cudnn.deterministic, allow_tf32=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul


def timed(model: CharRNN, batch: Batch, autocast, device: torch.device) -> float:
    """Seconds of one training forward + backward, device-synchronised."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    forward_backward(model, batch, autocast)
    sync()
    return time.perf_counter() - start
