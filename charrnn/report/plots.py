"""The figures of an experiment page, built from the prepared runs (`tables.RunStats`)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from charrnn import registry
from charrnn.grid.spec import format_value
from charrnn.science.stats import (FINISHED, IMPORTANCE_METHOD, Interval, importance, mean_ci, pareto_front,
                                   t_half_width)
from . import figures as rf
from .base import CURVE_METRICS, GAP_AXIS, GAP_COLUMN, LINE_AXES, MAX_CURVE_POINTS, Figure
from .tables import RunStats


def _binned(frame: pd.DataFrame) -> pd.DataFrame:
    """One metric's points (run_id, variant, step, value) in ≤ MAX_CURVE_POINTS step bins shared
    by every run: mean step and value per (run, bin)."""
    steps = frame["step"].to_numpy()
    if frame["step"].nunique() <= MAX_CURVE_POINTS:
        return frame.assign(bin=steps)
    edges = np.linspace(steps.min(), steps.max() + 1, MAX_CURVE_POINTS + 1)
    return (frame.assign(bin=np.digitize(steps, edges))
            .groupby(["variant", "run_id", "bin"], as_index=False)[["step", "value"]].mean())


def curve_band(binned: pd.DataFrame) -> pd.DataFrame:
    """Mean and CI over the runs of one variant at every bin at least half of them (and two, when
    there are two) logged: time-budgeted runs stop at different steps, and each keeps its curve."""
    wide = binned.pivot_table(index="bin", columns="run_id", values="value", aggfunc="mean")
    counts = wide.notna().sum(axis=1)
    wide = wide[counts >= min(max(2, math.ceil(wide.shape[1] / 2)), wide.shape[1])]
    steps = binned.groupby("bin")["step"].mean().loc[wide.index]
    values = wide.to_numpy()                                    # (bins, runs), NaN where not logged
    n = np.isfinite(values).sum(axis=1)
    mean = np.nanmean(values, axis=1) if len(values) else np.zeros(0)
    half = np.full(len(n), np.nan)
    for k in set(n[n >= 2].tolist()):
        rows = n == k
        half[rows] = t_half_width(np.nanstd(values[rows], axis=1, ddof=1), k)
    return pd.DataFrame({"mean": mean, "low": mean - half, "high": mean + half, "n": n, "step": steps.to_numpy()})


def curves_figure(runs: pd.DataFrame, curves: pd.DataFrame, variants: list[str],
                  colors: dict[str, str]) -> Figure | None:
    finished = runs.loc[runs["status"] == FINISHED, ["run_id", "variant"]]
    data = curves[["run_id", "metric", "step", "value"]].merge(finished, on="run_id")
    data = data[np.isfinite(pd.to_numeric(data["value"], errors="coerce"))]
    panels = {}
    for metric in CURVE_METRICS:
        sub = data[data["metric"] == metric]
        if not sub.empty:
            groups = dict(list(_binned(sub).groupby("variant")))
            panels[metric] = {v: curve_band(groups[v]) for v in variants if v in groups}
    if not panels:
        return None
    return Figure("curves", "Learning curves",
                  "Mean over seeds per variant; the band is the 95 % Student-t CI (df = n − 1) at "
                  f"each step, the tables' rule (train loss averaged within ≤ {MAX_CURVE_POINTS} step "
                  "bins); n = finished seeds, in the legend.",
                  rf.encode(rf.learning_curves(panels, colors)))


def point_figures(st: RunStats, variants: list[str], colors: dict[str, str],
                  metrics: list[str]) -> list[Figure]:
    figures = []
    for metric in metrics:
        ivs = st.cells(metric, variants)
        rows = [(v, iv) for v, iv in zip(variants, ivs) if iv.n > 0]
        if rows:
            short = metric.removeprefix("final_")
            figures.append(Figure(f"final-{short}", f"Final {short} per variant",
                                  "Mean over seeds with its 95 % Student-t CI; n = finished seeds, "
                                  "beside each point.",
                                  rf.encode(rf.point_plot(rows, colors, short))))
    return figures


def _axis_points(st: RunStats, axes: list[str], variants: list[str], x: str,
                 value_col: str) -> pd.DataFrame:
    """One row per variant (in `variants` order): its numeric `x`, the label of its other axes,
    and the interval of `value_col`."""
    others = [a for a in axes if a != x]
    firsts = st.runs.drop_duplicates("variant").set_index("variant", drop=False).loc[variants]
    return pd.DataFrame({
        x: pd.to_numeric(firsts[x], errors="coerce").to_numpy(),
        "group": [", ".join(f"{a}={format_value(r[a])}" for a in others) for _, r in firsts.iterrows()],
        "variant": variants,
        "iv": st.cells(value_col, variants),
    }).dropna(subset=[x])


def _n_text(intervals: list[Interval]) -> str:
    """`n = 3 seeds per point` (or a range) for captions of figures without per-point labels."""
    ns = sorted({iv.n for iv in intervals if iv.n > 0})
    if not ns:
        return "no finished seeds"
    span = str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
    return f"n = {span} finished seeds per point"


def axis_figures(st: RunStats, axes: list[str], variants: list[str], colors: dict[str, str],
                 metric: str) -> list[Figure]:
    figures = []
    for x, log_x in LINE_AXES.items():
        if x in axes and metric in st.runs:
            points = _axis_points(st, axes, variants, x, metric)
            short = metric.removeprefix("final_")
            figures.append(Figure(f"by-{x}", f"{short} against {x}",
                                  "Mean and 95 % CI over seeds per variant "
                                  f"({_n_text(list(points['iv']))}); lines join variants "
                                  "that share the other axes.",
                                  rf.encode(rf.axis_plot(points, x, short, colors, log_x))))
    return figures


def gap_figure(st: RunStats, axes: list[str], variants: list[str],
               colors: dict[str, str]) -> Figure | None:
    if GAP_AXIS not in axes or GAP_COLUMN not in st.runs:
        return None
    points = _axis_points(st, axes, variants, GAP_AXIS, GAP_COLUMN)
    return Figure("gap", "Train–val gap against dataset fraction",
                  "final val loss − train loss per run (train loss on fixed train batches at the last "
                  "evaluation where logged, else the running mean); mean and 95 % CI over seeds "
                  f"({_n_text(list(points['iv']))}). A growing gap at small fractions is memorisation.",
                  rf.encode(rf.axis_plot(points, GAP_AXIS, "val − train loss", colors, True)))


def front(costs: np.ndarray, values: list[Interval], metric: str) -> np.ndarray:
    """Pareto-front mask: nothing is both cheaper and better on `metric` (its registry direction)."""
    sign = -1.0 if registry.higher_is_better(metric) else 1.0      # pareto_front minimises both
    return pareto_front(costs, np.array([sign * iv.mean for iv in values]))


def cost_figure(st: RunStats, variants: list[str], colors: dict[str, str],
                metric: str) -> Figure | None:
    runs, loss, wall = st.runs, st.intervals(metric), st.intervals("wall_time_s")
    params = runs.groupby("variant")["param_count"].mean() if "param_count" in runs else pd.Series(dtype=float)
    rows = pd.DataFrame([{"variant": v, "loss": loss[v], "time": wall.get(v, mean_ci([])),
                          "params": float(params.get(v, np.nan))} for v in variants if v in loss])
    if rows.empty:
        return None
    higher = registry.higher_is_better(metric)
    rows["front_time"] = front(np.array([iv.mean for iv in rows["time"]]), list(rows["loss"]), metric)
    rows["front_params"] = front(rows["params"].to_numpy(), list(rows["loss"]), metric)
    short = metric.removeprefix("final_")
    return Figure("cost", "Cost view",
                  f"Final {short} against wall time per run and against parameter count; "
                  f"mean and 95 % CI over seeds ({_n_text(list(rows['loss']))}); ringed points "
                  f"on the dashed line are the Pareto front (nothing is both cheaper and better; "
                  f"{'higher' if higher else 'lower'} {short} is better).",
                  rf.encode(rf.cost_plot(rows, colors, short)))


def importance_figure(runs: pd.DataFrame, axes: list[str], metric: str) -> Figure | None:
    if len(axes) < 2 or metric not in runs:
        return None
    shares = importance(runs, axes, metric)
    short = metric.removeprefix("final_")
    return Figure("importance", "Hyper-parameter importance",
                     "fANOVA-style main effects: the share of the variance of final "
                     f"{short} each factor explains (zipped axes are one factor; added in order, "
                     f"so shares sum to at most 1); 95 % CI: {IMPORTANCE_METHOD} (n = seeds, beside "
                     "each bar). The rest is interactions and seed noise.",
                     rf.encode(rf.importance_plot(shares, short)))


def figures(st: RunStats, curves: pd.DataFrame, axes: list[str], variants: list[str],
            colors: dict[str, str], metric: str) -> list[Figure]:
    runs = st.runs
    point_metrics = [metric] + [m for m in ("final_val_accuracy",) if m in runs and m != metric]
    found = [curves_figure(runs, curves, variants, colors),
             *point_figures(st, variants, colors, point_metrics),
             gap_figure(st, axes, variants, colors),
             *axis_figures(st, axes, variants, colors, metric),
             cost_figure(st, variants, colors, metric),
             importance_figure(runs, axes, metric)]
    return [f for f in found if f is not None]
