"""Tuning that brackets its optimum, within one `charrnn grid` invocation.

After a round of runs, selection (`charrnn.science.tuning.select`, on validation) is redone on
what the rounds trained; where a tuned arm (`tuned_arms`: every variant but those only speed claims
judge, which keep their one combination, `Grid.tunings`) chose an edge of its tuned axis below the
grid's `tune_bounds` (per arm, or per (arm, seed) under `choice: per_seed`), that arm's axis grows one
step past that edge (`tuning.extension`, `grow`) for every tuning seed of the arm, and
those runs train as the next round, in seed blocks. An arm whose choice is inside its axis trains no
more values: each arm's search brackets its own optimum, claimed or not (an unclaimed arm's point on
the page is as well tuned as a claimed one's). Rounds repeat until every tuned arm's choice is
inside its axis or at the bound.
Under a profile's `tune_seeds`, a judging round follows
(`judging_round`): every seed that did not tune trains once, at its arm's chosen values.
A later invocation replays the rounds from the store: the same selections, the same values.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import pandas as pd

from charrnn.grid.order import ordered
from charrnn.grid.spec import Grid, RunSpec, variant_name
from charrnn.science.claims import Pairs
from charrnn.science import tuning
from charrnn.science.stats import FINISHED, same_value
from charrnn.science.tune_space import speed_only


def results_frame(results, tuned_keys: list[str]) -> pd.DataFrame:
    """One row per result: variant, seed, its tuned values, status and the selection metric (of a
    FINISHED run only). Selection uses the FINISHED rows; every row tells which values an arm tried."""
    rows = [{"variant": r.spec.variant, "seed": r.spec.seed, **dict(r.spec.tuned), "status": r.status,
             tuning.SELECT_METRIC: r.final.get(tuning.SELECT_METRIC) if r.status == FINISHED else None}
            for r in results]
    return pd.DataFrame(rows, columns=["variant", "seed", *tuned_keys, "status", tuning.SELECT_METRIC])


def tuning_frame(grid: Grid, profile: str, results) -> pd.DataFrame:
    """`results_frame` of the tuning seeds' runs: what every choice is made on (the judging round's
    runs, at the chosen values only and, under `judge_steps`, to a longer cap, never move it)."""
    frame = results_frame(results, list(grid.tune_space))
    return frame[frame["seed"].isin(grid.tune_seeds_of(profile))]


def tuned_arms(grid: Grid) -> set[str]:
    """The variants whose tuned choice must be bracketed: every variant that tries every tuned
    combination, all but those only speed claims judge (`tune_space.speed_only`: tokens/s does not
    depend on the learning rate)."""
    return {variant_name(v) for v in grid.variants() if not speed_only(grid.claims, dict(v))}


def tuned_choices(chosen: pd.DataFrame, grid: Grid) -> pd.DataFrame:
    """`tuning.select`'s rows of the arms `tuned_arms` names (its attrs kept)."""
    subset = chosen[chosen["variant"].isin(tuned_arms(grid))]
    subset.attrs = dict(chosen.attrs)
    return subset


def grow(grid: Grid, grown: dict[str, dict[str, list[Any]]]) -> Grid:
    """`grid` with each named variant's axes grown by `grown[variant][key]` (`tuning.extension`),
    after what earlier rounds added (`Grid.tune_grown`, read by `Grid.arm_tune`)."""
    merged = {variant: dict(keys) for variant, keys in grid.tune_grown}
    for variant, keys in grown.items():
        for key, values in keys.items():
            merged.setdefault(variant, {})[key] = (*merged.get(variant, {}).get(key, ()), *values)
    return replace(grid, tune_grown=tuple((variant, tuple(keys.items())) for variant, keys in merged.items()))


def tried_values(grid: Grid) -> dict[str, list[Any]]:
    """Key -> every value some arm of `grid` tries: the grid's, then each extension once, as they grew."""
    tried = {key: list(values) for key, values in grid.tune}
    for _, keys in grid.tune_grown:
        for key, values in keys:
            tried[key] += [v for v in values if v not in tried[key]]
    return tried


def next_round(grid: Grid, profile: str, results, done: set[str]) -> tuple[Grid, tuple[RunSpec, ...], str]:
    """(the grid with grown axes, the RunSpecs it adds in execution order, a line saying so);
    (grid, (), "") when no axis grows."""
    if not grid.tune_bounds:
        return grid, (), ""
    space = grid.tune_space
    frame = tuning_frame(grid, profile, results)
    if frame.empty:
        return grid, (), ""
    grown = tuning.extension(tuned_choices(tuning.select(frame, space), grid))
    if not grown:
        return grid, (), ""
    wider = grow(grid, grown)
    specs = ordered([s for s in wider.expand(profile) if s.identity not in done], grid.order_seed)
    return wider, specs, (f"tuning: a choice sat at the edge, so its arm's axis grew ({growth_text(grown)}): "
                          f"{len(specs)} more runs")


def growth_text(grown: dict[str, dict[str, list]]) -> str:
    """e.g. "layers=8: lr + 0.0005; layers=4: lr + 0.016" (an unnamed variant: "lr + 0.03")."""
    def values(keys: dict[str, list]) -> str:
        return ", ".join(f"{key} + {', '.join(map(str, vals))}" for key, vals in keys.items())
    return "; ".join(f"{variant}: {values(keys)}" if variant else values(keys) for variant, keys in grown.items())


def arm_choices(chosen: pd.DataFrame, grid: Grid) -> dict[str, Pairs]:
    """Variant name -> its chosen tuned pairs, as the grid lists the values (extensions included), from
    `tuning.select`'s rows (per arm: one combination per variant)."""
    tried = chosen.attrs["tune"]
    choices = {}
    for _, row in chosen.drop_duplicates("variant").iterrows():
        choices[row["variant"]] = tuple((key, next(v for v in tried[key] if same_value(v, row[key])))
                                        for key, _ in grid.tune)
    return choices


def judging_round(grid: Grid, profile: str, results, done: set[str]) -> tuple[tuple[RunSpec, ...], str]:
    """Under `tune_seeds`, once tuning has settled: the seeds that did not tune, each variant at its
    arm's chosen values (a variant whose tuning runs all failed trains none), minus those `done`;
    ((), "") otherwise. A rerun plans the same runs: selection prefers the combination most seeds
    finished, which these runs only add to."""
    if not grid.judges_after_tuning(profile):
        return (), ""
    space = grid.tune_space
    frame = tuning_frame(grid, profile, results)
    if frame.empty:
        return (), ""
    choices = arm_choices(tuning.select(frame, space), grid)
    specs = ordered([s for s in grid.judging_specs(profile, choices) if s.identity not in done], grid.order_seed)
    if not specs:
        return (), ""
    seeds = {k: ", ".join(map(str, v)) for k, v in (("judging", grid.judging_seeds_of(profile)),
                                                    ("tuning", grid.tune_seeds_of(profile)))}
    cap = grid.judge_steps_of(profile)
    return specs, (f"judging: seeds {seeds['judging']} train at each arm's chosen values (tuned on "
                   f"seeds {seeds['tuning']}){f' to {cap} steps' if cap else ''}: "
                   f"{len(specs)} runs")


def edge_report(grid: Grid, profile: str, results) -> str:
    """After the last round: how many selections still sit at an edge, and whether at the bound."""
    if not grid.tune:
        return ""
    space = grid.tune_space
    frame = tuning_frame(grid, profile, results)
    if frame.empty:
        return ""
    chosen = tuned_choices(tuning.select(frame, space), grid)
    if chosen.empty:
        return ""
    if not space.per_seed:                   # one choice per arm, shared by its seeds
        chosen = chosen.drop_duplicates("variant")
    what = "tuned seed's" if space.per_seed else "tuned arm's"
    edge, bound = int(chosen["tune_at_edge"].sum()), int(chosen["tune_at_bound"].sum())
    if not edge:
        return f"tuning: every {what} choice of {len(chosen)} lies inside its axis"
    return (f"tuning: {edge} of {len(chosen)} {what} choices at an edge of the axis, {bound} of them at the grid's "
            f"bound{'' if edge == bound else ' (no bound to grow to: widen tune or set tune_bounds)'}")
