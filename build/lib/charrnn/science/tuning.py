"""Nuisance tuning: per (variant, seed), the run whose tuned values did best on validation.

A grid's `tune: {lr: [1e-3, 3e-3, 1e-2]}` trains every (variant, seed) once per combination of
tuned values (`grid.Grid.tunings`). `select` keeps one run per (variant, seed): among its FINISHED
runs with a finite selection metric, the best on validation (`final_val_loss` by default).
Claims then compare the selected runs, best against best, on test. Rules:

- **Never on test.** A `test` metric cannot be the selection metric (ValueError).
- **Ties** (exactly equal metric) go to the combination listed first in the grid's `tune` order
  (first value of the first key, then of the next key, ...): deterministic, and not biased toward
  any arm.
- A (variant, seed) with no usable run is left out of the selection and listed in
  `attrs["unselected"]`; one selected from fewer runs than the grid planned says so in
  `tune_candidates` vs `tune_planned`; a choice at the first or last value of a numeric list is
  flagged `tune_at_edge` (the best value may lie outside the range tried).

Torch-free (pandas only): `results`, `stats` and `report` may import it.
"""
from __future__ import annotations

import itertools
import math
from typing import Any, Mapping, Sequence

import pandas as pd

from charrnn import registry

SELECT_METRIC = "final_val_loss"
GROUP = ("variant", "seed")

Tune = Mapping[str, Sequence[Any]]


def tune_of(definition: Mapping[str, Any] | None) -> dict[str, list[Any]]:
    """The `tune` block of a parsed grid file ({} when the grid tunes nothing)."""
    return dict((definition or {}).get("tune") or {})


def _same(a: Any, b: Any) -> bool:
    """Equal config values; floats compared with a relative tolerance (MLflow params are strings)."""
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-9)
        except (TypeError, ValueError):
            return False
    return a == b


def _position(key: str, value: Any, values: Sequence[Any]) -> int:
    for i, candidate in enumerate(values):
        if _same(value, candidate):
            return i
    raise ValueError(f"{key}={value!r}: not among the tuned values {list(values)!r}")


def _order(row: pd.Series, tune: Tune) -> int:
    """Index of the row's combination in the grid's `tune` order (itertools.product order)."""
    index = 0
    for key, values in tune.items():
        index = index * len(values) + _position(key, row[key], values)
    return index


def _at_edge(row: pd.Series, tune: Tune) -> bool:
    """The chosen value of some numeric key is its smallest or largest tried value."""
    for key, values in tune.items():
        numeric = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(numeric) == len(values) >= 3 and (_same(row[key], min(numeric)) or _same(row[key], max(numeric))):
            return True
    return False


def select(runs: pd.DataFrame, tune: Tune, metric: str = SELECT_METRIC,
           higher_is_better: bool | None = None) -> pd.DataFrame:
    """One row per (variant, seed): the selected run's row of `runs` (a `results.runs_frame`)
    plus `tuned` (e.g. "lr=0.003"), `tune_candidates`, `tune_planned` and `tune_at_edge`.
    Without `tune` every finished run is its own selection."""
    if "test" in metric:
        raise ValueError(f"metric={metric!r}: selection never uses the test split; valid: a val metric "
                         f"such as {SELECT_METRIC}")
    missing = [k for k in (*GROUP, metric, *tune) if k not in runs.columns]
    if missing:
        raise ValueError(f"runs frame lacks columns {missing}; valid: a results.runs_frame of the grid")
    higher = registry.higher_is_better(metric) if higher_is_better is None else higher_is_better
    usable = runs[runs[metric].map(lambda v: isinstance(v, (int, float)) and math.isfinite(v))]
    if "status" in usable.columns:
        usable = usable[usable["status"] == "FINISHED"]
    usable = usable.assign(_order=[_order(r, tune) for _, r in usable.iterrows()])
    ranked = usable.sort_values([metric, "_order"], ascending=[not higher, True], kind="mergesort")
    best = ranked.groupby(list(GROUP), sort=True, dropna=False).head(1)
    counts = usable.groupby(list(GROUP), dropna=False).size()
    planned = math.prod(len(v) for v in tune.values())
    out = best.drop(columns="_order").assign(
        tuned=[",".join(f"{k}={_text(r[k])}" for k in tune) for _, r in best.iterrows()],
        tune_candidates=[int(counts[tuple(r[g] for g in GROUP)]) for _, r in best.iterrows()],
        tune_planned=planned,
        tune_at_edge=[_at_edge(r, tune) for _, r in best.iterrows()],
    ).sort_values(list(GROUP), kind="mergesort").reset_index(drop=True)
    chosen = set(zip(*(out[g] for g in GROUP)))
    out.attrs["unselected"] = sorted({k for k in zip(*(runs[g] for g in GROUP)) if k not in chosen}, key=str)
    out.attrs["tune"] = {k: list(v) for k, v in tune.items()}
    out.attrs["metric"] = metric
    return out


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def chosen_counts(selected: pd.DataFrame) -> pd.DataFrame:
    """Per variant, how many seeds chose each tuned combination: columns variant, tuned, seeds."""
    return (selected.groupby(["variant", "tuned"], sort=True).size().rename("seeds").reset_index())


def isolation(runs: pd.DataFrame, key: str, metric: str = SELECT_METRIC) -> pd.DataFrame:
    """The isolation view of one tuned key: per (variant, value) the mean, std and count over the
    FINISHED runs of `metric`, for a plot of metric vs the tuned value per arm."""
    usable = runs[runs["status"] == "FINISHED"] if "status" in runs.columns else runs
    grouped = usable.groupby(["variant", key], sort=True)[metric]
    return grouped.agg(["mean", "std", "count"]).reset_index()


def combinations(tune: Tune) -> list[dict[str, Any]]:
    """Every tuned combination in the grid's order (the order ties are broken by)."""
    return [dict(zip(tune, row)) for row in itertools.product(*tune.values())]


def judged_runs(runs: pd.DataFrame, tune: Tune, metric: str = SELECT_METRIC) -> pd.DataFrame:
    """The runs claims are judged on: without `tune`, `runs` as they are; with it, the selected
    run per (variant, seed) (`select`), plus the runs of every (variant, seed) that had no usable
    run, so the verdict still counts them as failed. Keeps `select`'s attrs."""
    if not tune:
        return runs
    chosen = select(runs, tune, metric)
    attrs, missing = dict(chosen.attrs), set(chosen.attrs["unselected"])
    if missing:
        lost = runs[[k in missing for k in zip(*(runs[g] for g in GROUP))]]
        chosen = pd.concat([chosen, lost], ignore_index=True)
        chosen["tuned"] = chosen["tuned"].fillna("none usable")
        chosen.attrs = attrs
    return chosen
