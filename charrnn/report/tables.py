"""The runs table made ready for a page: variants, per-variant intervals, the summary table."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from charrnn.science.claims import Claim
from charrnn.config import FIELDS
from charrnn.grid.spec import format_value
from charrnn.science.stats import FINISHED, Interval, mean_ci
from charrnn.numbers import number, unit_of
from .base import FINAL_METRICS, GAP_COLUMN, NO_VARIANT, ExperimentData, natural_key


def infer_axes(runs: pd.DataFrame) -> list[str]:
    """Config keys (other than seed) that take more than one value across the runs."""
    return [k for k in FIELDS if k != "seed" and k in runs and runs[k].astype(str).nunique() > 1]


def _with_defaults(runs: pd.DataFrame) -> pd.DataFrame:
    runs = runs.loc[:, ~runs.columns.duplicated()].copy()
    for col, default in (("status", FINISHED), ("seed", 0), ("failure", ""), ("run_name", "")):
        if col not in runs:
            runs[col] = default
    runs["run_name"] = runs["run_name"].fillna("").astype(str)
    runs["run_name"] = runs["run_name"].where(runs["run_name"] != "", runs["run_id"].astype(str))
    if "wall_time_s" not in runs:  # training time; where it is missing, the run's duration
        runs["wall_time_s"] = np.nan
        for col in ("train_time_s", "duration_s"):
            if col in runs:
                runs["wall_time_s"] = runs["wall_time_s"].fillna(pd.to_numeric(runs[col], errors="coerce"))
    for col in (*FINAL_METRICS, "param_count", "wall_time_s"):
        if col in runs:
            runs[col] = pd.to_numeric(runs[col], errors="coerce")
    if "final_generalization_gap" in runs:      # val − train, both scored alike at the last eval
        runs[GAP_COLUMN] = runs["final_generalization_gap"]
    elif {"final_val_loss", "final_train_loss"} <= set(runs):
        runs[GAP_COLUMN] = runs["final_val_loss"] - runs["final_train_loss"]
    return runs


def _label(row: pd.Series, axes: list[str]) -> str:
    return ", ".join(f"{a}={format_value(row[a])}" for a in axes) if axes else NO_VARIANT


def prepare(exp: ExperimentData) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Runs with a `variant` column, the varied axes, and the variants in natural order."""
    runs = _with_defaults(exp.runs)
    axes = [a for a in (exp.axes if exp.axes is not None else infer_axes(runs)) if a in runs]
    runs["variant"] = runs.apply(_label, axis=1, axes=axes) if len(runs) else pd.Series(dtype=str)
    combos = runs.drop_duplicates("variant") if len(runs) else runs
    ordered = sorted(combos.itertuples(index=False),
                     key=lambda r: tuple(natural_key(getattr(r, a)) for a in axes))
    return runs, axes, [r.variant for r in ordered]




def primary_metric(runs: pd.DataFrame, claims: tuple[Claim, ...]) -> str:
    """The metric tables and figures lead with: the first claim's when it was logged, else val loss."""
    logged = [c.column for c in claims if c.column in runs]
    return logged[0] if logged else "final_val_loss"


class RunStats:
    """The prepared runs and, per column, each variant's interval over its finished runs
    (computed once: several tables and figures show the same intervals)."""

    def __init__(self, runs: pd.DataFrame):
        self.runs = runs
        self._finished = runs[runs["status"] == FINISHED]
        self._cache: dict[str, dict[str, Interval]] = {}

    def intervals(self, col: str) -> dict[str, Interval]:
        if col not in self._cache:
            self._cache[col] = ({} if col not in self.runs else
                                {v: mean_ci(g[col]) for v, g in self._finished.groupby("variant")})
        return self._cache[col]

    def cells(self, col: str, variants: list[str]) -> list[Interval]:
        """One interval per variant, in order (n=0 where a variant has none)."""
        ivs = self.intervals(col)
        return [ivs.get(v, mean_ci([])) for v in variants]


def summary_table(st: RunStats, variants: list[str], metrics: list[str]) -> dict[str, Any]:
    """Rows per variant: runs finished/total, mean [CI] (n) per metric, params, wall time."""
    runs = st.runs
    per_metric = {m: st.cells(m, variants) for m in metrics}
    wall = st.cells("wall_time_s", variants)
    counts = runs.groupby("variant")["status"].agg(
        total="size", finished=lambda s: int((s == FINISHED).sum()))
    params = runs.groupby("variant")["param_count"].agg(["min", "max"]) if "param_count" in runs else None
    rows = []
    for i, v in enumerate(variants):
        rows.append({"variant": v, "finished": int(counts.loc[v, "finished"]),
                     "total": int(counts.loc[v, "total"]),
                     "metrics": [interval_text(per_metric[m][i]) for m in metrics],
                     "params": _params_text(params, v), "wall": interval_text(wall[i])})
    return {"metrics": [_header(m) for m in metrics], "rows": rows}


ARM_DEVICE_COLUMNS = ("charrnn.device", "device")    # the resolved device (provenance tag), else the config's


def arm_table(st: RunStats, variants: list[str], metric: str) -> dict[str, Any]:
    """The page's first table, as a paper gives it: per arm the question's metric (mean [95 % CI]
    (n)), parameters, the step cap (a time budget or early stopping may end a run before it), the
    epochs the runs trained (mean), how many runs converged (stopped by patience before the cap),
    device and training time (mean s)."""
    runs = st.runs
    values = st.cells(metric, variants)
    wall = st.cells("wall_time_s", variants)
    params = runs.groupby("variant")["param_count"].agg(["min", "max"]) if "param_count" in runs else None
    device = next((c for c in ARM_DEVICE_COLUMNS if c in runs and runs[c].fillna("").astype(str).ne("").any()), None)
    rows = []
    for i, v in enumerate(variants):
        arm = runs[runs["variant"] == v]
        rows.append({"variant": v, "metric": interval_text(values[i]), "params": _params_text(params, v),
                     "steps": _distinct(arm, "steps"), "epochs": _mean_text(arm, "epochs"),
                     "converged": _count_text(arm, "converged"),
                     "device": _distinct(arm, device) if device else "n/a",
                     "time": "n/a" if wall[i].n == 0 else number(wall[i].mean)})
    return {"metric": _header(metric), "rows": rows}


def _count_text(runs: pd.DataFrame, column: str) -> str:
    """`4 of 5`: the runs whose 0/1 column is 1, of those that log it; n/a when none does."""
    values = pd.to_numeric(runs[column], errors="coerce").dropna() if column in runs else pd.Series(dtype=float)
    return "n/a" if values.empty else f"{int((values == 1).sum())} of {len(values)}"


def _mean_text(runs: pd.DataFrame, column: str) -> str:
    """The column's mean over an arm's runs (what the runs did, e.g. epochs trained), or n/a."""
    values = pd.to_numeric(runs[column], errors="coerce").dropna() if column in runs else pd.Series(dtype=float)
    return "n/a" if values.empty else number(float(values.mean()))


def _distinct(runs: pd.DataFrame, column: str) -> str:
    """The column's values over an arm's runs, as text (`500`, `250–500`, `cpu`), or n/a."""
    if column not in runs:
        return "n/a"
    found = runs[column].dropna()
    found = found[found.astype(str) != ""]
    if found.empty:
        return "n/a"
    numeric = pd.to_numeric(found, errors="coerce")
    if numeric.notna().all():
        lo, hi = int(numeric.min()), int(numeric.max())
        return f"{lo:,}" if lo == hi else f"{lo:,}–{hi:,}"
    return ", ".join(sorted(found.astype(str).unique()))


def _header(metric: str) -> str:
    unit = unit_of(metric)
    short = metric.removeprefix("final_")
    return f"{short} ({'fraction' if unit == '%' else unit})" if unit else short


def interval_text(iv: Interval) -> str:
    """`1.95 [1.94 to 1.97] (n=5)`: 3 significant figures; `(n=1, no CI)`, `n/a (n=0)` as they are."""
    if iv.n == 0 or not np.isfinite(iv.mean):
        return "n/a (n=0)"
    if not iv.has_ci:
        return f"{number(iv.mean)} (n={iv.n}, no CI)"
    return f"{number(iv.mean)} [{number(iv.low)} to {number(iv.high)}] (n={iv.n})"


def _params_text(params: pd.DataFrame | None, variant: str) -> str:
    if params is None or not np.isfinite(params.loc[variant, "min"]):
        return "n/a"
    lo, hi = int(params.loc[variant, "min"]), int(params.loc[variant, "max"])
    return f"{lo:,}" if lo == hi else f"{lo:,}–{hi:,}"




def best_variant(st: RunStats, metric: str, higher_is_better: bool) -> tuple[str, Interval] | None:
    ivs = {v: iv for v, iv in st.intervals(metric).items() if iv.n > 0}
    if not ivs:
        return None
    pick = max if higher_is_better else min
    v = pick(ivs, key=lambda k: ivs[k].mean)
    return v, ivs[v]


