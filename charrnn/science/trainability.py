"""Trainability as Collins et al. measured it: how much of a learning-rate search trains well.

Per arm and seed, over the learning-rate grid the runs tried (>= 7 values spanning >= 2 decades):
the fraction of settings whose metric (the converged validation loss) comes within δ of that
arm's best for that seed; a failed or diverged run counts as not within. The claim compares the
arms' fractions paired by seed (value − baseline, higher = easier to train) with the Student-t
interval of `estimates`. The judged runs are every tuned run, not the one selected per arm.
Torch-free; frames in, a Verdict out.
"""
from __future__ import annotations

import pandas as pd

from charrnn.config import format_value as _text
from charrnn.science import estimates
from charrnn.science.claims import Claim
from charrnn.tags import FINISHED

LR_KEY = "lr"
MIN_VALUES, MIN_DECADES = 7, 2.0


def fractions(arm: pd.DataFrame, claim: Claim) -> pd.Series:
    """Per seed: the share of the arm's learning rates whose metric is within δ of its best."""
    ok = arm["status"] == FINISHED
    metric = pd.to_numeric(arm[claim.column], errors="coerce").where(ok)
    frame = arm.assign(_m=metric.astype(float), _seed=arm["seed"].astype(str))
    return frame.groupby("_seed")["_m"].apply(lambda s: estimates.trainability_fraction(s.to_numpy(), claim.delta))


def grid_problem(runs: pd.DataFrame) -> str:
    """Why the runs' learning-rate grid cannot measure trainability ("" when it can)."""
    if LR_KEY not in runs:
        return "no learning rate was varied: trainability needs a learning-rate grid"
    count, decades = estimates.log_grid_span(pd.to_numeric(runs[LR_KEY], errors="coerce"))
    if count < MIN_VALUES or decades < MIN_DECADES:
        return (f"the learning-rate grid has {count} values over {decades:.2g} decades: trainability needs "
                f">= {MIN_VALUES} log-spaced values over >= {MIN_DECADES:g} decades")
    return ""


def differences(value_arm: pd.DataFrame, base_arm: pd.DataFrame, claim: Claim) -> tuple[str, pd.Series, str]:
    """(problem, per-seed differences of the trainable fraction value − baseline, what they are).
    `problem` is "" when the arms' learning-rate grid can measure trainability."""
    problem = grid_problem(pd.concat([value_arm, base_arm]))
    if problem:
        return problem, pd.Series(dtype=float), ""
    a, b = fractions(value_arm, claim), fractions(base_arm, claim)
    count, decades = estimates.log_grid_span(pd.to_numeric(value_arm[LR_KEY], errors="coerce"))
    what = (f"share of {count} learning rates over {decades:.2g} decades within δ = {claim.delta:g} of the arm's "
            f"best {claim.metric}: {claim.axis}={_text(claim.value)} {a.mean():.2f}, "
            f"{claim.axis}={_text(claim.baseline)} {b.mean():.2f} (mean over seeds); ")
    return "", (a - b).dropna(), what
