"""Budget views: does a claim's verdict depend on when training stops, and on what it is charged?

Two views of every comparison claim, from the logged curves (torch-free, pandas only):

- **effect over steps**: at each evaluation step, the claim's per-seed paired difference of the
  curve that stands in for its metric (`val_loss` for `test_loss`/`val_loss`, the interval
  `tokens_per_s` for `tokens_per_s`, ...), its Student-t interval and the label the verdict rules
  would give it there (`verdicts.decide`);
- **equal wall-clock**: each run's training time at an evaluation is the sum of its logged
  `step_time_ms` × steps since the previous evaluation (evaluation time excluded), and each arm's
  curve is read at the same elapsed times: at t, a run's value is its last evaluation at or before
  t. The grid of times ends where the run with the shortest training time ends, so every run has
  a value at every point.

    run A  evals at 2.0 s, 4.1 s, 6.0 s     ->  at t = 5 s: A's value from 4.1 s
    run B  evals at 3.5 s, 7.2 s            ->  at t = 5 s: B's value from 3.5 s

Threshold claims have no arms: their over-steps view is metric − threshold, they have no
equal-time view.

**Stability**: a verdict is `stable` when the label at the final evaluation equals the label at
half the steps (the last evaluation at or before half the final step, both with n ≥ 2 seeds);
otherwise it is budget-sensitive and says so (`budget_note`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from charrnn.science.claims import Claim, ClaimKind
from charrnn.science.estimates import Interval, mean_ci
from charrnn.tags import FINISHED
from charrnn.science.pairing import differences, scoped
from charrnn.science.verdicts import STABLE_NA, UNDERPOWERED, Verdict, decide

TIME_METRIC = "step_time_ms"
TIME_POINTS = 12                 # points of the equal-time grid
MAX_STEP_ROWS = 12               # rows of the per-step table on a page
CURVE_OF = {"test_loss": "val_loss", "test_accuracy": "val_accuracy", "test_exact_match": "val_exact_match",
            "test_own_loss": "val_loss", "test_own_accuracy": "val_accuracy",
            "test_own_exact_match": "val_exact_match", "log10_tokens_per_s": "tokens_per_s"}


def curve_metric(claim: Claim) -> str:
    """The logged curve that stands in for the claim's metric during training."""
    return CURVE_OF.get(claim.metric, claim.metric)


@dataclass(frozen=True)
class Point:
    x: float            # step, or elapsed training seconds
    effect: Interval    # per-seed differences (or metric − threshold)
    label: str          # the verdict rules' label at this point (n >= 2), else underpowered


def _at(runs: pd.DataFrame, values: pd.Series, column: str) -> pd.DataFrame:
    """`runs` with `column` set from `values` (indexed by run_id); runs without a value get NaN."""
    return runs.assign(**{column: runs["run_id"].map(values).astype(float)})


def _point(runs: pd.DataFrame, claim: Claim, axes: list[str], x: float) -> Point:
    diffs = differences(runs, claim, axes)[0]
    d = mean_ci(diffs.to_numpy())
    label = decide(d, claim)[0] if d.n >= 2 and math.isfinite(d.sd) else UNDERPOWERED
    return Point(float(x), d, label)


def _finished(runs: pd.DataFrame, claim: Claim) -> pd.DataFrame:
    runs = scoped(runs, claim)
    return runs[runs["status"] == FINISHED] if "status" in runs else runs


def _curve(curves: pd.DataFrame, metric: str, run_ids) -> pd.DataFrame:
    sub = curves[(curves["metric"] == metric) & curves["run_id"].isin(set(run_ids))]
    return sub.assign(value=pd.to_numeric(sub["value"], errors="coerce"))


def _claim_curve(curves: pd.DataFrame, claim: Claim, run_ids) -> pd.DataFrame:
    """The curve standing in for the claim's metric, in that metric's scale (a log10 metric reads
    the log10 of its curve, so effects, margins and at_least keep their meaning along the way)."""
    curve = _curve(curves, curve_metric(claim), run_ids)
    if claim.metric.startswith("log10_"):
        curve = curve.assign(value=np.log10(curve["value"].where(curve["value"] > 0)))
    return curve


def effect_over_steps(runs: pd.DataFrame, curves: pd.DataFrame, claim: Claim, axes: list[str]) -> list[Point]:
    """The claim's effect at every evaluation step every judged run logged (see module doc)."""
    runs = _finished(runs, claim)
    curve = _claim_curve(curves, claim, runs["run_id"])
    if curve.empty:
        return []
    wide = curve.pivot_table(index="step", columns="run_id", values="value", aggfunc="last")
    return [_point(_at(runs, wide.loc[step], claim.column), claim, axes, step)
            for step in wide.index if wide.loc[step].notna().any()]


def elapsed_seconds(curves: pd.DataFrame, run_ids) -> pd.DataFrame:
    """Per run and evaluation step, seconds of training so far: Σ step_time_ms × Δsteps / 1000
    (columns run_id, step, elapsed_s)."""
    times = _curve(curves, TIME_METRIC, run_ids).sort_values(["run_id", "step"])
    if times.empty:
        return pd.DataFrame(columns=["run_id", "step", "elapsed_s"])
    delta = times.groupby("run_id")["step"].diff().fillna(times["step"] + 1)  # first eval: steps 0..step
    times = times.assign(elapsed_s=(times["value"] * delta / 1000.0).groupby(times["run_id"]).cumsum())
    return times[["run_id", "step", "elapsed_s"]].reset_index(drop=True)


def equal_time(runs: pd.DataFrame, curves: pd.DataFrame, claim: Claim, axes: list[str],
               points: int = TIME_POINTS) -> list[Point]:
    """The claim's effect with each arm's curve read at the same elapsed training times."""
    if claim.against_reference:
        return []
    runs = _finished(runs, claim)
    curve = _claim_curve(curves, claim, runs["run_id"])
    clock = elapsed_seconds(curves, runs["run_id"])
    timed = curve.merge(clock, on=["run_id", "step"]).dropna(subset=["value"]).sort_values("elapsed_s")
    if timed.empty or timed["run_id"].nunique() < 2:
        return []
    ends = timed.groupby("run_id")["elapsed_s"].max()
    starts = timed.groupby("run_id")["elapsed_s"].min()
    first, last = float(starts.max()), float(ends.min())
    if not last > 0 or first > last:
        return []
    out = []
    for t in np.linspace(first, last, points) if last > first else [last]:
        seen = timed[timed["elapsed_s"] <= t + 1e-9].groupby("run_id")["value"].last()
        out.append(_point(_at(runs, seen, claim.column), claim, axes, float(t)))
    return out


def flips(points: list[Point]) -> list[tuple[float, str]]:
    """Where the label changes along the points: [(x, new label), ...], the first included."""
    out: list[tuple[float, str]] = []
    for p in points:
        if not out or out[-1][1] != p.label:
            out.append((p.x, p.label))
    return out


def table_rows(points: list[Point], limit: int = MAX_STEP_ROWS) -> list[Point]:
    """At most `limit` points, evenly spaced, always the last."""
    if len(points) <= limit:
        return points
    keep = sorted(set(np.linspace(0, len(points) - 1, limit).round().astype(int)))
    return [points[i] for i in keep]


def stability(points: list[Point]) -> tuple[str, str]:
    """(`stable`, note): "true" when the label at the final evaluation equals the one at half the
    steps, "false" with a note saying how it changed, STABLE_NA without two such evaluations."""
    decided = [p for p in points if p.effect.n >= 2]
    if len(decided) < 2:
        return STABLE_NA, ""
    final = decided[-1]
    half = [p for p in decided[:-1] if p.x <= final.x / 2]
    if not half:
        return STABLE_NA, ""
    if half[-1].label == final.label:
        return "true", ""
    return "false", (f"budget-sensitive: {half[-1].label} at step {half[-1].x:g} (half the steps), "
                     f"{final.label} at step {final.x:g}")


def with_stability(verdicts: list[Verdict], runs: pd.DataFrame, curves: pd.DataFrame,
                   axes: list[str]) -> list[Verdict]:
    """Each verdict with `stable` and `budget_note` from its effect over steps. A claim of equality
    to reference values gets STABLE_NA: those values belong to the final step (the bare loop's loss
    after its whole budget), so a mid-training value is no like-for-like comparison with them."""
    out = []
    for v in verdicts:
        if v.claim.kind is ClaimKind.EQUAL_TO_REFERENCE:
            out.append(replace(v, stable=STABLE_NA, budget_note=""))
            continue
        stable, note = stability(effect_over_steps(runs, curves, v.claim, axes))
        out.append(replace(v, stable=stable, budget_note=note))
    return out
