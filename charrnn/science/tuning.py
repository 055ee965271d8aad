"""Nuisance tuning: per arm, the tuned values that did best on validation, and the run each seed trained at them.

A grid's `tune: {lr: [1e-3, 3e-3, 1e-2]}` trains every (variant, seed) once per combination of
tuned values (the block is parsed by `tune_space`). `select` keeps one run per (variant, seed)
among the FINISHED runs with a finite selection metric (`final_val_loss` by default):

- `choice: per_arm` (the default): per variant, the combination with the best mean metric over
  its seeds; a combination some seed has no usable run at ranks below one every seed finished.
  Each seed is then judged on its run at that combination, so both arms of a seed pair run at
  their arm's one value. A seed whose run at it failed has no selection (counted as failed).
- `choice: per_seed`: per (variant, seed), that seed's best run.

Claims then compare the selected runs, best against best, on test. Rules:

- **Never on test.** A `test` metric cannot be the selection metric (ValueError).
- **Ties** (exactly equal metric or mean) go to the combination listed first in the grid's `tune` order
  (first value of the first key, then of the next key, ...): deterministic, and not biased toward
  any arm.
- A (variant, seed) with no usable run (per arm: at its arm's choice) is left out of the selection and listed in
  `attrs["unselected"]`; one selected from fewer runs than the grid planned says so in
  `tune_candidates` vs `tune_planned`; a choice at the smallest or largest value of a numeric key
  is flagged `tune_at_edge` (the best value may lie outside the range tried), whatever the number
  of values, and `tune_at_bound` when that edge is the grid's `tune_bounds` limit.
- **Extension, per arm.** A choice at an edge below its bound grows that arm's axis one step beyond
  (`extension`): the ratio of the edge value to its neighbour (geometric; the difference where the
  two differ in sign or one is 0), clipped to the bound. `charrnn grid` trains the arm's new
  values and selects again until no choice sits at an unbounded edge; an arm whose choice is
  inside its axis trains no more. Values an arm's runs tried beyond the grid's listed range are its
  extensions: selection counts them as part of that arm's axis (listed after the grid's), and the
  edges, the planned count and the tie order of an arm are read on its own axis.

Torch-free (pandas only): `results`, `stats` and `report` may import it.
"""
from __future__ import annotations

import itertools
import math
from typing import Any, Mapping, Sequence

import pandas as pd

from charrnn import registry
from charrnn.config import format_value
from charrnn.science.stats import same_value
from charrnn.science.tune_space import CHOICES, TuneSpace

SELECT_METRIC = "final_val_loss"
GROUP = ("variant", "seed")

Tune = Mapping[str, Sequence[Any]]
SIGNIFICANT = 4   # digits an extended value is rounded to (0.0333 rather than 0.033333333)


def bounds_of(tune: Tune) -> dict[str, tuple[Any, Any]]:
    return dict(getattr(tune, "bounds", {}))


def choice_of(tune: Tune) -> str:
    """What one tuned value is chosen for (`tune_space.CHOICES`): per_arm unless the grid says per_seed."""
    return getattr(tune, "choice", CHOICES[0])


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _plain(value: Any) -> Any:
    """A numpy scalar of a runs frame as the Python number a grid file holds."""
    return value.item() if hasattr(value, "item") else value


def tried_axes(runs: pd.DataFrame, tune: Tune) -> TuneSpace:
    """The grid's values per key, then those the runs tried beyond the listed range (extensions),
    nearest first; non-numeric keys as listed. Keeps `tune`'s bounds."""
    axes = {}
    for key, values in tune.items():
        values = list(values)
        if key in runs and values and all(_number(v) for v in values):
            low, high = min(values), max(values)
            seen = {_plain(v) for v in runs[key].dropna() if _number(_plain(v))}
            beyond = [v for v in seen if (v < low or v > high) and not any(same_value(v, w) for w in values)]
            values += sorted(beyond, key=lambda v: low - v if v < low else v - high)
        axes[key] = values
    return TuneSpace(axes, bounds_of(tune), choice_of(tune))


def arm_axes(runs: pd.DataFrame, tune: Tune) -> dict[Any, TuneSpace]:
    """Variant -> the axes its own runs tried (`tried_axes`: the grid's values, then the arm's
    extensions), every run counted whatever its status: a value an arm tried and failed at was tried."""
    return {variant: tried_axes(group, tune) for variant, group in runs.groupby("variant", sort=True, dropna=False)}


def _position(key: str, value: Any, values: Sequence[Any]) -> int:
    for i, candidate in enumerate(values):
        if same_value(value, candidate):
            return i
    raise ValueError(f"{key}={value!r}: not among the tuned values {list(values)!r}")


def _order(row: pd.Series, tune: Tune) -> int:
    """Index of the row's combination in the grid's `tune` order (itertools.product order)."""
    index = 0
    for key, values in tune.items():
        index = index * len(values) + _position(key, row[key], values)
    return index


def _edges(row: pd.Series, tune: Tune) -> list[tuple[str, int]]:
    """(key, side) for every numeric key whose chosen value is its smallest (-1) or largest (+1)."""
    found = []
    for key, values in tune.items():
        if values and all(_number(v) for v in values):
            found += [(key, side) for side, edge in ((-1, min(values)), (1, max(values))) if same_value(row[key], edge)]
    return found


def _at_bound(row: pd.Series, tune: Tune) -> bool:
    """Some edge the row chose is the grid's bound on that side: the axis cannot grow there."""
    bounds = bounds_of(tune)
    return any(key in bounds and same_value(row[key], bounds[key][side > 0]) for key, side in _edges(row, tune))


def usable_mask(runs: pd.DataFrame, metric: str) -> pd.Series:
    """The runs selection can use: FINISHED (where the frame has a status) with a finite `metric`."""
    usable = runs[metric].map(lambda v: isinstance(v, (int, float)) and math.isfinite(v)).astype(bool)
    return usable & (runs["status"] == "FINISHED") if "status" in runs.columns else usable


def select(runs: pd.DataFrame, tune: Tune, metric: str = SELECT_METRIC,
           higher_is_better: bool | None = None) -> pd.DataFrame:
    """One row per (variant, seed), chosen per arm or per seed as `tune.choice` says (see the
    module doc): the selected run's row of `runs` (a `results.runs_frame`)
    plus `tuned` (e.g. "lr=0.003"), `tune_candidates`, `tune_planned`, `tune_at_edge` and
    `tune_at_bound`, each read on the row's arm's own axes. `attrs["tune"]` holds the axes tried by
    any arm (`tried_axes`), a TuneSpace; `attrs["arm_tune"]` each arm's (`arm_axes`)."""
    if "test" in metric:
        raise ValueError(f"metric={metric!r}: selection never uses the test split; valid: a val metric "
                         f"such as {SELECT_METRIC}")
    missing = [k for k in (*GROUP, metric, *tune) if k not in runs.columns]
    if missing:
        raise ValueError(f"runs frame lacks columns {missing}; valid: a results.runs_frame of the grid")
    higher = registry.higher_is_better(metric) if higher_is_better is None else higher_is_better
    arms = arm_axes(runs, tune)
    usable = runs[usable_mask(runs, metric)]
    usable = usable.assign(_order=[_order(r, arms[r["variant"]]) for _, r in usable.iterrows()])
    best = _best_per_seed(usable, metric, higher) if choice_of(tune) == "per_seed" else \
        _best_per_arm(usable, metric, higher)
    counts = usable.groupby(list(GROUP), dropna=False).size()
    out = best.drop(columns="_order").assign(
        tuned=[_tuned_text(r, arms[r["variant"]]) for _, r in best.iterrows()],
        tune_candidates=[int(counts[tuple(r[g] for g in GROUP)]) for _, r in best.iterrows()],
        tune_planned=[math.prod(len(v) for v in arms[r["variant"]].values()) for _, r in best.iterrows()],
        tune_at_edge=[bool(_edges(r, arms[r["variant"]])) for _, r in best.iterrows()],
        tune_at_bound=[_at_bound(r, arms[r["variant"]]) for _, r in best.iterrows()],
    ).sort_values(list(GROUP), kind="mergesort").reset_index(drop=True)
    chosen = set(zip(*(out[g] for g in GROUP)))
    out.attrs["unselected"] = sorted({k for k in zip(*(runs[g] for g in GROUP)) if k not in chosen}, key=str)
    out.attrs["tune"] = tried_axes(runs, tune)
    out.attrs["arm_tune"] = arms
    out.attrs["metric"] = metric
    out.attrs["choice"] = choice_of(tune)
    return out


def _best_per_seed(usable: pd.DataFrame, metric: str, higher: bool) -> pd.DataFrame:
    """Per (variant, seed), its best run (ties: the combination listed first)."""
    ranked = usable.sort_values([metric, "_order"], ascending=[not higher, True], kind="mergesort")
    return ranked.groupby(list(GROUP), sort=True, dropna=False).head(1)


def arm_scores(usable: pd.DataFrame, metric: str = SELECT_METRIC) -> pd.DataFrame:
    """Per (variant, combination `_order`): how many seeds have a usable run there and their mean metric."""
    grouped = usable.groupby(["variant", "_order"], sort=True, dropna=False)
    return grouped.agg(seeds=("seed", "nunique"), mean=(metric, "mean")).reset_index()


def _best_per_arm(usable: pd.DataFrame, metric: str, higher: bool) -> pd.DataFrame:
    """Per variant, the combination with the most seeds, then the best mean over them (ties: listed
    first); every seed's run at it."""
    scores = arm_scores(usable, metric).sort_values(["seeds", "mean", "_order"], ascending=[False, not higher, True],
                                                    kind="mergesort")
    chosen = scores.groupby("variant", sort=True, dropna=False).head(1)[["variant", "_order"]]
    return usable.merge(chosen, on=["variant", "_order"], how="inner")


def _tuned_text(row: pd.Series, tune: Tune) -> str:
    """The row's tuned combination as the grid lists it, e.g. "lr=0.003,residual=true"."""
    return ",".join(f"{key}={format_value(values[_position(key, row[key], values)])}" for key, values in tune.items())


def beyond(values: Sequence[Any], side: int, bound: Any) -> Any | None:
    """The value one step past the smallest (side -1) or largest (+1) of `values`, clipped to
    `bound`; None when that edge already is the bound. Integer axes stay integers."""
    ordered = sorted(values)
    edge, inner = (ordered[-1], ordered[-2]) if side > 0 else (ordered[0], ordered[1])
    if side * (bound - edge) <= 0:
        return None
    step = edge * (edge / inner) if edge * inner > 0 else edge + (edge - inner)
    if all(isinstance(v, int) for v in values):
        step = round(step) if round(step) != edge else edge + side
    else:
        rounded = float(f"{step:.{SIGNIFICANT}g}")
        step = rounded if side * (rounded - edge) > 0 else step
    return min(step, bound) if side > 0 else max(step, bound)


def extension(selected: pd.DataFrame) -> dict[Any, dict[str, list[Any]]]:
    """Variant -> key -> the values to add to that arm's axis (one per side) where a selection of
    `select` chose an edge of the arm's axis below the grid's bound; {} when every choice is inside,
    or at a bound. An arm whose choices are all inside its axis is absent."""
    grown: dict[Any, dict[str, list[Any]]] = {}
    for variant, rows in selected.groupby("variant", sort=True, dropna=False):
        tune = selected.attrs["arm_tune"][variant]
        bounds = bounds_of(tune)
        sides = {edge for _, row in rows.iterrows() for edge in _edges(row, tune) if edge[0] in bounds}
        for key, side in sorted(sides):
            value = beyond(tune[key], side, bounds[key][side > 0]) if len(tune[key]) >= 2 else None
            if value is not None:
                grown.setdefault(variant, {}).setdefault(key, []).append(value)
    return grown


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


def past_tuning_cap(runs: pd.DataFrame, tune: Tune) -> pd.Series:
    """True for the runs trained to a longer step cap than the shortest of their variant (per
    profile): a `judge_steps` judging round's runs. All False where `steps` is tuned or absent."""
    if "steps" not in runs or "steps" in tune or runs.empty:
        return pd.Series(False, index=runs.index)
    keys = [k for k in ("profile", "variant") if k in runs]
    return runs["steps"] > runs.groupby(keys, dropna=False)["steps"].transform("min")


def _judged_at_longer_cap(runs: pd.DataFrame, longer: pd.Series, tune: Tune, metric: str) -> pd.DataFrame:
    """Under `judge_steps`: each arm's choice made on the tuning runs (the shorter cap), then every
    run of the judging round at that choice, finished or not (a failed one counts as failed).
    attrs: `select`'s, with the judged (variant, seed) pairs lacking a usable run as `unselected`,
    and `judging` = (tuning seeds, judging seeds, tuning cap, judging cap)."""
    chosen = select(runs[~longer], tune, metric)
    judging = runs[longer]
    arms = chosen.drop_duplicates("variant").set_index("variant")
    at_choice = [r["variant"] in arms.index and all(same_value(r[k], arms.at[r["variant"], k]) for k in tune)
                 for _, r in judging.iterrows()]
    judging = judging[at_choice]
    notes = ["tuned", "tune_planned", "tune_at_edge", "tune_at_bound"]
    out = judging.merge(arms[notes], left_on="variant", right_index=True, how="left").assign(tune_candidates=1)
    no_choice = runs[~longer & ~runs["variant"].isin(arms.index)]    # every tuning run failed: no judging round
    out = pd.concat([out, no_choice.assign(tuned="none usable")], ignore_index=True) if len(no_choice) else out
    out = out.sort_values(list(GROUP), kind="mergesort").reset_index(drop=True)
    usable = usable_mask(out, metric)
    out.attrs = {**chosen.attrs, "unselected": sorted(set(zip(*(out[~usable][g] for g in GROUP))), key=str),
                 "judging": (sorted(set(runs[~longer]["seed"]), key=int), sorted(set(judging["seed"]), key=int),
                             int(runs[~longer]["steps"].max()), int(judging["steps"].max()) if len(judging) else 0)}
    return out


def judged_runs(runs: pd.DataFrame, tune: Tune, metric: str = SELECT_METRIC) -> pd.DataFrame:
    """The runs claims are judged on: without `tune`, `runs` as they are; with it, the selected
    run per (variant, seed) (`select`), plus the runs of every (variant, seed) that had no usable
    run, so the verdict still counts them as failed. Keeps `select`'s attrs. Where a judging round
    trained to a longer cap (`past_tuning_cap`), its runs alone, at each arm's choice."""
    if not tune:
        return runs
    longer = past_tuning_cap(runs, tune)
    if longer.any():
        return _judged_at_longer_cap(runs, longer, tune, metric)
    chosen = select(runs, tune, metric)
    attrs, missing = dict(chosen.attrs), set(chosen.attrs["unselected"])
    if missing:
        lost = runs[[k in missing for k in zip(*(runs[g] for g in GROUP))]]
        chosen = pd.concat([chosen, lost], ignore_index=True)
        chosen["tuned"] = chosen["tuned"].fillna("none usable")
        chosen.attrs = attrs
    return chosen
