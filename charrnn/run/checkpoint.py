"""Self-describing checkpoints (nanoGPT style): a `.pt` rebuilds its model with nothing beside it.

A checkpoint written by `Trainer.save_checkpoint` holds the training state (model, optimiser,
step, carried hidden state, RNG states, `identity`, `train_time_s`, the convergence budget's
`stopping` state and, under it, the best-validation weights `best_model`) and what a reader needs
without the MLflow store or the task's data:

    format        CHECKPOINT_FORMAT (the only one read; `charrnn migrate` upgrades older files)
    config        TrainConfig.to_dict()  (every key; rebuilds CharRNN)
    vocab         {"itos": [...], "pad_id", "bos_id", "eos_id"}
    sample_prime  the task's default prime for `charrnn sample`
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from charrnn.config import FIELDS, TrainConfig, check_value
from charrnn.tasks.data import Vocab
from charrnn.rnn.models import CharRNN

CHECKPOINT_FORMAT = 2


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not describe its model (one-line message)."""


def describe(cfg: TrainConfig, vocab: Vocab, sample_prime: str) -> dict[str, Any]:
    """The keys that make a checkpoint self-describing (plain types: `weights_only` loads them)."""
    return {"format": CHECKPOINT_FORMAT, "config": cfg.to_dict(),
            "vocab": {"itos": list(vocab.itos), "pad_id": vocab.pad_id, "bos_id": vocab.bos_id,
                      "eos_id": vocab.eos_id},
            "sample_prime": sample_prime}


def read(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The state dict in `path`; CheckpointError when it is missing, not a charrnn checkpoint, or
    of another format."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint={str(path)!r}: no such file") from None
    except Exception as exc:
        raise CheckpointError(f"checkpoint={str(path)!r}: not a readable torch checkpoint "
                              f"({type(exc).__name__})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"checkpoint={str(path)!r}: not a charrnn checkpoint (no 'model' state)")
    if state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint={str(path)!r}: format {state.get('format', 1)}; valid: format "
                              f"{CHECKPOINT_FORMAT} (a store of an earlier release: charrnn migrate --apply)")
    return state


def stored_config(state: dict[str, Any], device: str = "cpu") -> TrainConfig:
    """The run's TrainConfig from the checkpoint, placed on `device`. Keys this version does not
    know are dropped; each value is checked alone (the combination was checked when it trained;
    a task=text corpus need not exist here to sample)."""
    values = {key: check_value(key, value) for key, value in state["config"].items() if key in FIELDS}
    return dataclasses.replace(TrainConfig(**values), device=device)


def stored_vocab(state: dict[str, Any]) -> Vocab:
    raw = state["vocab"]
    return Vocab(tuple(raw["itos"]), raw.get("pad_id"), raw.get("bos_id"), raw.get("eos_id"))


def rebuild(state: dict[str, Any], source: str = "checkpoint") -> tuple[CharRNN, Vocab, str]:
    """(model with the checkpoint's weights, on CPU, in eval mode; vocabulary; default prime)."""
    vocab = stored_vocab(state)
    model = load_weights(CharRNN(stored_config(state), vocab.size), state, source)
    return model.eval(), vocab, state["sample_prime"]


def load_weights(model: CharRNN, state: dict[str, Any], source: str = "checkpoint") -> CharRNN:
    """`model` with the checkpoint's weights; CheckpointError when they do not fit its shapes or names
    (weights from another config, or an edited state)."""
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError, AttributeError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        detail = lines[1] if len(lines) > 1 else lines[0]  # the first line only says "Error(s) in loading"
        raise CheckpointError(f"{source}: its weights do not fit its config ({detail[:300]}); valid: "
                              "a checkpoint written by charrnn for that config") from None
    return model
