"""Synthetic experiments for the report tests and the render benchmark (no MLflow, no torch)."""
from __future__ import annotations

import itertools
import json
from typing import Any

import numpy as np
import pandas as pd

from charrnn.science.claims import CLAIM_KEYS, parse_claims
from charrnn.report.base import ExperimentData

# a claim's scope keys (what it tests, the source's regime), where this version of claims has them
SCOPE = {k: v for k, v in {"tests": "source", "regime": "synthetic runs"}.items() if k in CLAIM_KEYS}
PROVENANCE_TAGS = {"charrnn.git_sha": "0123abcd", "charrnn.git_dirty": "false", "charrnn.torch": "2.13.0",
                   "charrnn.cuda": "none", "charrnn.device": "cpu", "charrnn.device_name": "x86_64"}


def predictions(text: str, wrong_every: int = 5, heat: int = 20) -> dict[str, Any]:
    """A predictions.json record over `text`, with every `wrong_every`-th prediction wrong and a
    softmax heat map over its first `heat` positions."""
    target = list(text[1:])
    guess = [("#" if i % wrong_every == 0 else c) for i, c in enumerate(target)]
    return {"input": list(text[:-1]), "target": target, "scored": [True] * len(target),
            "teacher_forced": guess, "free_running_from": 4, "free_running": guess[::-1][:len(target)],
            "heatmap": {"tokens": [[c, "e", " "] for c in target[:heat]],
                        "probs": [[0.7, 0.2, 0.1] for _ in target[:heat]]}}


def make_runs(axes: dict[str, list[Any]], seeds: list[int], effect: dict[str, dict[Any, float]] | None = None,
              noise: float = 0.01, base: float = 1.8, rng_seed: int = 0) -> pd.DataFrame:
    """One FINISHED row per (variant, seed): final_val_loss = base + Σ effect[axis][value] + noise."""
    rng = np.random.default_rng(rng_seed)
    effect = effect or {}
    rows = []
    for values in itertools.product(*axes.values()):
        params = dict(zip(axes, values))
        shift = sum(effect.get(a, {}).get(v, 0.0) for a, v in params.items())
        for seed in seeds:
            val = base + shift + noise * rng.standard_normal()
            rows.append({**{a: str(v) for a, v in params.items()}, "seed": str(seed),
                         "run_id": f"r{len(rows):04d}", "run_name": f"{params},seed={seed}",
                         "status": "FINISHED", "final_val_loss": val, "final_train_loss": val - 0.1,
                         "param_count": 1000 * (1 + len(rows) % 7), "wall_time_s": 10 + rng.random(),
                         **PROVENANCE_TAGS})
    return pd.DataFrame(rows)


def make_curves(runs: pd.DataFrame, steps: int = 400, eval_every: int = 50) -> pd.DataFrame:
    parts = []
    for run_id, final in zip(runs["run_id"], runs["final_val_loss"]):
        train_steps = np.arange(steps)
        decay = np.exp(-train_steps / (steps / 4))
        parts.append(pd.DataFrame({"run_id": run_id, "metric": "train_loss", "step": train_steps,
                                   "value": final - 0.1 + 2.5 * decay}))
        ev = np.arange(eval_every - 1, steps, eval_every)
        parts.append(pd.DataFrame({"run_id": run_id, "metric": "val_loss", "step": ev,
                                   "value": final + 2.5 * np.exp(-ev / (steps / 4))}))
    return pd.concat(parts, ignore_index=True)


def artifact_reader(runs: pd.DataFrame, sample: str = "ROMEO: to be or not to be", heat: int = 20) -> Any:
    store = {}
    for run_id in runs["run_id"]:
        store[(run_id, "samples/sample.txt")] = f"{sample} ({run_id})"
        store[(run_id, "predictions.json")] = json.dumps(predictions(sample, heat=heat))
        store[(run_id, "provenance/pip_freeze.txt")] = "numpy==2.0\ntorch==2.13.0\n"
    return lambda run_id, path: store.get((run_id, path))


def make_experiment(name: str = "demo", axes: dict[str, list[Any]] | None = None, seeds: list[int] | None = None,
                    effect: dict[str, dict[Any, float]] | None = None, claim: dict[str, Any] | None = None,
                    steps: int = 400, claims: list[dict[str, Any]] | None = None) -> ExperimentData:
    """`claim` (one) or `claims` (a list): the grid file's `claims:`, parsed by the grid's rules."""
    axes = axes or {"input_combine": ["add", "concat"]}
    runs = make_runs(axes, seeds if seeds is not None else [0, 1, 2], effect)
    parsed = parse_claims({"claims": [claim] if claim else claims}, {k: tuple(v) for k, v in axes.items()})
    return ExperimentData(name=name, runs=runs, curves=make_curves(runs, steps), axes=list(axes),
                          question="Does concatenating beat adding?", claims=parsed,
                          artifact=artifact_reader(runs))
