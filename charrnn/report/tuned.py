"""Nuisance tuning on a page: the value each arm chose per seed and the isolation plot (metric
against each tuned key, per arm). Selection itself is `charrnn.science.tuning`."""
from __future__ import annotations

from typing import Any

import pandas as pd

from charrnn.science import tuning
from charrnn.grid.spec import format_value
from charrnn.science.stats import FINISHED, mean_ci, same_value
from charrnn.science.tune_space import speed_only
from . import figures as rf
from .base import Figure


def _isolation_frame(runs: pd.DataFrame, selected: pd.DataFrame, key: str, metric: str) -> pd.DataFrame:
    done = runs[(runs["status"] == FINISHED)] if "status" in runs else runs
    chosen = {(v, str(val)) for v, val in zip(selected["variant"], selected[key])}
    rows = []
    for (variant, value), group in done.groupby(["variant", key], sort=True):
        rows.append({"variant": variant, "value": value, "iv": mean_ci(pd.to_numeric(group[metric], errors="coerce")),
                     "chosen": any(v == variant and same_value(c, value) for v, c in chosen)})
    return pd.DataFrame(rows, columns=["variant", "value", "iv", "chosen"])


def _tuning_seeds(picked: pd.DataFrame, rounds: tuple | None) -> dict[str, Any]:
    """Under a profile's `tune_seeds`: the seeds that tried every value and those that trained once, at
    their arm's choice ({"tuning_seeds": "0, 1", "judging_seeds": "2, 3, 4"}); both "" when every seed tuned.
    Under `judge_steps` (`rounds`: `tuning.judged_runs`'s attrs["judging"]) also both step caps."""
    if rounds:
        tuning, judged, tuning_cap, judging_cap = rounds
        return {"tuning_seeds": ", ".join(map(str, tuning)), "judging_seeds": ", ".join(map(str, judged)),
                "tuning_cap": tuning_cap, "judging_cap": judging_cap}
    none = {"tuning_seeds": "", "judging_seeds": "", "tuning_cap": 0, "judging_cap": 0}
    if "tune_candidates" not in picked or picked.empty or int(picked["tune_planned"].max()) < 2:
        return none
    tried = picked.groupby("seed")["tune_candidates"].max()
    tuning, judging = sorted(tried.index[tried > 1], key=int), sorted(tried.index[tried == 1], key=int)
    if not tuning or not judging:
        return none
    return {**none, "tuning_seeds": ", ".join(map(str, tuning)), "judging_seeds": ", ".join(map(str, judging))}


def _tried_text(axes: dict[str, list[Any]] | None) -> str:
    """An arm's tried values, e.g. "0.002, 0.004, 0.008, 0.016" (several keys: "lr 0.002, ...; steps 100, ...")."""
    if not axes:
        return ""
    parts = {key: ", ".join(map(format_value, sorted(values) if _numbers(values) else values))
             for key, values in axes.items()}
    return next(iter(parts.values())) if len(parts) == 1 else "; ".join(f"{k} {v}" for k, v in parts.items())


def _numbers(values: list[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def tuning_section(runs: pd.DataFrame, selected: pd.DataFrame, tune: dict[str, list[Any]],
                   colors: dict[str, str], claims: tuple = ()) -> dict[str, Any] | None:
    """The page's tuning block: chosen value per arm (seeds per choice), edge warnings, and one
    isolation figure per tuned key (selection metric: final val loss). None without `tune`. The arms
    only speed claims judge (`tune_space.speed_only`) that trained at one combination (a store written
    before they did trains them at every one) are named apart and never flagged at an edge."""
    if not tune or selected.empty or "tuned" not in selected:
        return None
    tried = runs.drop_duplicates(["variant", *tune]).groupby("variant").size() if set(tune) <= set(runs) else {}
    untuned = selected.apply(lambda r: tried.get(r["variant"], 0) == 1 and speed_only(claims, r), axis=1).astype(bool) \
        if claims else pd.Series(False, index=selected.index)
    one_value = sorted(set(selected.loc[untuned, "variant"]))
    if one_value:
        attrs = dict(selected.attrs)
        selected, runs = selected[~untuned], runs[~runs["variant"].isin(one_value)]
        selected.attrs = attrs
    picked = selected[selected["tuned"] != "none usable"]
    tried_by_arm = {v: _tried_text(axes) for v, axes in selected.attrs.get("arm_tune", {}).items()}
    chosen = [{"variant": r.variant, "tuned": r.tuned, "seeds": int(r.seeds), "tried": tried_by_arm.get(r.variant, "")}
              for r in tuning.chosen_counts(picked).itertuples(index=False)]
    none = pd.Series(False, index=picked.index)
    at_edge = picked["tune_at_edge"].astype(bool) if "tune_at_edge" in picked else none
    at_bound = picked["tune_at_bound"].astype(bool) if "tune_at_bound" in picked else none
    tried = selected.attrs.get("tune") or tune          # the grid's values and any automatic extension
    metric = tuning.SELECT_METRIC
    rounds = selected.attrs.get("judging")
    if rounds:      # the figure shows what the choice was made on: the tuning seeds at the shorter cap
        runs = runs[~tuning.past_tuning_cap(runs, tune)]
    figures = []
    for key in tune:
        frame = _isolation_frame(runs, picked, key, metric)
        if not frame.empty:
            short = metric.removeprefix("final_")
            figures.append(Figure(f"isolation-{key}", f"Isolation: {short} against {key}",
                                  f"Final {short} (the selection metric, never test) per arm against the values "
                                  f"of {key} it tried (any arm: {', '.join(map(format_value, tried[key]))}); mean "
                                  "and 95 % Student-t CI "
                                  f"over {f'the tuning seeds (to {rounds[2]} steps)' if rounds else 'seeds'}; a "
                                  "ring marks a value some seed of that arm selected.",
                                  rf.encode(rf.isolation_plot(frame, key, short, colors))))
    seeds = _tuning_seeds(picked, rounds)
    return {"keys": list(tune), "chosen": chosen, "figures": figures, **seeds, "one_value": one_value,
            "per_seed": selected.attrs.get("choice") == "per_seed",
            "edge": [f"{r.variant}, seed {r.seed}: {r.tuned}" for r in picked[at_edge & ~at_bound].itertuples()],
            "bound": [f"{r.variant}, seed {r.seed}: {r.tuned}" for r in picked[at_bound].itertuples()],
            "unselected": [f"{v}, seed {s}" for v, s in selected.attrs.get("unselected", [])]}
