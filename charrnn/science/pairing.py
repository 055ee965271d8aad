"""The frame plumbing of a claim: which runs it judges (`scoped`), its two arms, and the per-seed
values and differences the statistics core (`estimates`) turns into an interval. A seed counts
once; runs are paired on the seed and on every other varied axis that does not move with the
claim's axis (a `zip:` partner). Torch-free; plain pandas frames in.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from charrnn.science.claims import Claim
from charrnn.science.stats import matches
from charrnn.tags import FINISHED


def _usable(rows: pd.DataFrame, column: str) -> pd.Series:
    return (rows["status"] == FINISHED) & np.isfinite(pd.to_numeric(rows[column], errors="coerce"))


def scoped(runs: pd.DataFrame, claim: Claim) -> pd.DataFrame:
    """The runs a claim judges: those with every `where:` value (and of its `profiles:`, if any)."""
    if claim.profiles and "profile" in runs:
        runs = runs[runs["profile"].astype(str).isin(claim.profiles)]
    for axis, value in claim.where:
        runs = runs[matches(runs[axis], value)] if axis in runs else runs.iloc[0:0]
    return runs


def _moves_with(runs: pd.DataFrame, axis: str, claim_axis: str) -> bool:
    """True when `axis` takes one value per level of `claim_axis` (a `zip:` partner, e.g. hidden
    size paired with cell for equal parameter counts): it cannot be matched across arms."""
    return bool((runs.astype({axis: str}).groupby(claim_axis)[axis].nunique() <= 1).all())


def arms(runs: pd.DataFrame, claim: Claim) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All runs of the claim's value arm and of its baseline arm."""
    col = runs[claim.axis] if claim.axis in runs else None
    return tuple(runs[matches(col, level)] if col is not None else runs.iloc[0:0]
                 for level in (claim.value, claim.baseline))


def paired_values(runs: pd.DataFrame, claim: Claim, axes: list[str]) -> tuple[pd.DataFrame, int, int]:
    """Per seed (and every other varied axis) the metric of each arm, columns value/baseline, rows
    matched on seed and every non-zipped other axis; the unpaired and the failed run counts."""
    column = claim.column
    keys = [a for a in axes if a != claim.axis and a in runs
            and not _moves_with(runs, a, claim.axis)] + ["seed"]
    sides, n_failed = [], 0
    for arm in arms(runs, claim):
        ok = _usable(arm, column)
        n_failed += int((~ok).sum())
        sides.append(arm[ok].assign(_m=pd.to_numeric(arm.loc[ok, column]))
                     .astype({k: str for k in keys}).groupby(keys)["_m"].mean())
    joined = pd.concat(sides, axis=1, keys=["value", "baseline"], join="outer")
    paired = joined.dropna()
    return paired, int(joined.notna().sum().sum() - 2 * len(paired)), n_failed


def differences(runs: pd.DataFrame, claim: Claim, axes: list[str]) -> tuple[pd.Series, pd.DataFrame, int, int]:
    """Per-seed differences the interval is built from (a seed counts once), the paired arm
    values behind them, and the unpaired / failed run counts. Against per-seed references, each
    seed is compared with its own reference; a seed without one counts as unpaired."""
    if claim.against_reference:
        ok = _usable(runs, claim.column)
        values = pd.to_numeric(runs.loc[ok, claim.column]).groupby(runs.loc[ok, "seed"].astype(str)).mean()
        diffs = values - np.asarray(claim.reference_of(values.index), dtype=float)
        return diffs.dropna(), pd.DataFrame(), int(diffs.isna().sum()), int((~ok).sum())
    paired, n_unpaired, n_failed = paired_values(runs, claim, axes)
    diffs = (paired["value"] - paired["baseline"]).groupby(level="seed").mean()
    return diffs, paired, n_unpaired, n_failed
