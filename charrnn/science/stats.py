"""Statistics over runs tables: curve bands, value matching, importance, Pareto fronts.

Everything works on plain pandas frames (one row per run), so it is testable without MLflow; the
interval of a mean itself is `estimates.mean_ci` (arrays in, an interval out).

Intervals of a mean (of a variant's seeds, or of per-seed paired differences) are Student-t
intervals with df = n − 1 (`scipy.stats.t`), the same rule for tables, curve bands and verdicts.
No bootstrap: at 3-5 seeds a percentile bootstrap of the mean cannot exceed the seeds' range and
covers 0.75 (n=3) to 0.90 (n=10) of the time on normal data, while the t interval covers 0.95 at
every n (`tests/test_verdicts.py` simulates it). Fewer than two values give no interval (`low`
is NaN). Importance shares are resampled over seeds (percentile bootstrap, named on the page).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from charrnn.science.estimates import CONFIDENCE, T_METHOD, Interval, mean_ci, t_half_width
from charrnn.tags import FINISHED

__all__ = ["CONFIDENCE", "FINISHED", "T_METHOD", "Interval", "columns_ci", "importance", "matches", "mean_ci",
           "pareto_front", "same_value", "t_half_width"]

IMPORTANCE_METHOD = "percentile bootstrap over seeds"
IMPORTANCE_RESAMPLES = 500
RNG_SEED = 0


def columns_ci(matrix: np.ndarray, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Per-column mean and Student-t CI of a (runs × points) matrix without NaN (curve bands:
    the same rule as the tables)."""
    n = matrix.shape[0]
    mean = matrix.mean(axis=0)
    if n < 2:
        nan = np.full_like(mean, np.nan)
        return pd.DataFrame({"mean": mean, "low": nan, "high": nan, "n": n})
    half = t_half_width(matrix.std(axis=0, ddof=1), n, confidence)
    return pd.DataFrame({"mean": mean, "low": mean - half, "high": mean + half, "n": n})


# --------------------------------------------------------------------------- value matching

def same_value(a: Any, b: Any) -> bool:
    """MLflow params are strings; grid YAML values are typed. `"512" == 512`, `"True" == true`."""
    if isinstance(a, bool) or isinstance(b, bool) or str(a).lower() in ("true", "false"):
        return str(a).lower() == str(b).lower()
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    except (TypeError, ValueError):
        return str(a) == str(b)


def matches(column: pd.Series, value: Any) -> pd.Series:
    return column.map(lambda v: same_value(v, value)).astype(bool)


# --------------------------------------------------------------------------- importance

def factors(runs: pd.DataFrame, axes: list[str]) -> dict[str, list[str]]:
    """Axes grouped into factors: axes that move together (a `zip:`, e.g. cell with the hidden
    size that equalises parameters: one level of either fixes the other) are one factor, named
    `cell+hidden_size`."""
    groups: list[list[str]] = []
    for axis in axes:
        for group in groups:
            pairs = runs[[group[0], axis]].astype(str).drop_duplicates()
            if pairs[group[0]].is_unique and pairs[axis].is_unique:
                group.append(axis)
                break
        else:
            groups.append([axis])
    return {"+".join(g): g for g in groups}


def _sequential_shares(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Each factor's share of the metric's variance: the R² an additive least-squares model gains
    when the factor is added, in order (type-I sums of squares). On a balanced grid these are the
    main effects; in any case they sum to the additive model's R² ≤ 1. `codes`: (runs × factors)."""
    centred = values - values.mean()
    total = float(centred @ centred)
    if not np.isfinite(total) or total == 0:
        return np.zeros(codes.shape[1])
    design = [np.ones((len(values), 1))]
    explained, shares = 0.0, []
    for col in codes.T:
        design.append(np.eye(col.max() + 1)[col][:, 1:])             # dummy codes, first level dropped
        x = np.hstack(design)
        fit = x @ np.linalg.lstsq(x, values, rcond=None)[0]
        now = float(((fit - values.mean()) ** 2).sum()) / total
        shares.append(max(now - explained, 0.0))
        explained = max(now, explained)
    return np.asarray(shares)


def importance(runs: pd.DataFrame, axes: list[str], metric_col: str) -> dict[str, Interval]:
    """fANOVA-style main effects: each factor's share of the metric's variance over finished runs
    (zipped axes are one factor; shares sum to at most 1, the rest is interactions and seed noise),
    with a percentile-bootstrap CI from resampling seeds (a seed's runs stay together)."""
    finished = runs[(runs["status"] == FINISHED)]
    values = pd.to_numeric(finished[metric_col], errors="coerce")
    finished, values = finished[np.isfinite(values)], values[np.isfinite(values)].to_numpy()
    groups_of = factors(finished, axes) if len(values) else {a: [a] for a in axes}
    names = list(groups_of)
    if len(values) == 0:
        return {a: mean_ci([]) for a in names}
    codes = np.stack([pd.factorize(finished[cols].astype(str).agg("|".join, axis=1))[0]
                      for cols in groups_of.values()], axis=1)
    seeds = finished["seed"].astype(str).to_numpy()
    point = _sequential_shares(values, codes)
    groups = [np.flatnonzero(seeds == s) for s in pd.unique(seeds)]
    if len(groups) < 2:
        return {a: Interval(float(p), math.nan, math.nan, 1, method=IMPORTANCE_METHOD)
                for a, p in zip(names, point)}

    def statistic(seed_idx: np.ndarray) -> np.ndarray:
        rows = np.concatenate([groups[int(i)] for i in seed_idx])
        return _sequential_shares(values[rows], codes[rows])

    res = sps.bootstrap((np.arange(len(groups)),), statistic, vectorized=False,
                        confidence_level=CONFIDENCE, n_resamples=IMPORTANCE_RESAMPLES,
                        method="percentile", rng=np.random.default_rng(RNG_SEED))
    low, high = np.atleast_1d(res.confidence_interval.low), np.atleast_1d(res.confidence_interval.high)
    return {a: Interval(float(p), float(lo), float(hi), len(groups), method=IMPORTANCE_METHOD)
            for a, p, lo, hi in zip(names, point, low, high)}


def pareto_front(costs: np.ndarray, losses: np.ndarray) -> np.ndarray:
    """Boolean mask of points no other point beats in both cost and loss (both minimised)."""
    costs, losses = np.asarray(costs, float), np.asarray(losses, float)
    ok = np.isfinite(costs) & np.isfinite(losses)
    front = np.zeros(len(costs), dtype=bool)
    for i in np.flatnonzero(ok):
        dominated = ok & (costs <= costs[i]) & (losses <= losses[i]) & (
            (costs < costs[i]) | (losses < losses[i]))
        front[i] = not dominated.any()
    return front
