"""The budget views on a page: each claim's effect at every evaluation step and at equal
wall-clock time (`charrnn.science.budget` computes them; this module draws and tabulates).

What is compared like with like:

- a grid whose judged runs had a time budget (`max_time_s` > 0) stopped each arm at a different
  step, so it is shown at equal training time only;
- a claim against a reference number (a threshold) compares one final value with a number
  measured at the end of training: no view along the way;
- effects are in the claimed direction (positive = as claimed), as in the verdict above.

Table rows without data read "no data" and carry no verdict; consecutive points with the same
effect (a value held over between evaluations) are one row; every populated point is listed.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from charrnn.science import budget
from charrnn.science.claim_options import TRAINABILITY
from charrnn.science.claims import Claim
from charrnn.science.verdicts import scoped
from . import figures as rf
from charrnn import numbers as fmt
from .base import Figure

TIME_BUDGET = "max_time_s"
SHOWN_ROWS = 12                  # table rows shown open; the rest one click away


def time_budgeted(runs: pd.DataFrame, claim: Claim) -> bool:
    """True when the claim's judged runs trained against a wall-clock budget."""
    judged = scoped(runs, claim)
    return TIME_BUDGET in judged and bool((pd.to_numeric(judged[TIME_BUDGET], errors="coerce") > 0).any())


def _x_text(x: float, unit: str) -> str:
    return f"step {int(x)}" if unit == "step" else f"{fmt.number(x)} s"


def _effect_text(p: budget.Point, claim: Claim, sign: int) -> str:
    e = p.effect
    low, high = sorted((sign * e.low, sign * e.high))
    return f"{fmt.difference(sign * e.mean, claim.metric)} {fmt.interval(low, high, claim.metric)}".strip()


def table_rows(points: list[budget.Point], claim: Claim, unit: str, sign: int) -> list[dict[str, Any]]:
    """One row per run of points with the same effect (held-over values are one row); points
    without data collapse into one "no data" row per run of them, without a label."""
    rows: list[dict[str, Any]] = []
    for p in points:
        has_data = p.effect.n > 0
        key = (p.effect.mean, p.effect.low, p.effect.high, p.effect.n, p.label) if has_data else None
        if rows and rows[-1]["key"] == key:
            rows[-1]["last"] = p.x
            continue
        rows.append({"key": key, "first": p.x, "last": p.x, "n": p.effect.n,
                     "effect": _effect_text(p, claim, sign) if has_data else "no data",
                     "label": p.label if has_data else ""})
    for r in rows:
        r["x"] = _x_text(r["first"], unit) + ("" if r["last"] == r["first"] else f" – {_x_text(r['last'], unit)}")
    return rows


def _changes(points: list[budget.Point], unit: str) -> str:
    populated = [p for p in points if p.effect.n > 0]
    flips = budget.flips([p for p in populated if p.effect.n >= 2])
    if not flips:
        return "no point with two or more paired seeds"
    if len(flips) == 1:
        return f"{flips[0][1]} at every point with two or more paired seeds"
    return "; ".join(f"{label} from {_x_text(x, unit)}" for x, label in flips)


def _directed(points: list[budget.Point], sign: int) -> list[budget.Point]:
    """Points with their effect turned into the claimed direction (for the plot)."""
    out = []
    for p in points:
        e = p.effect
        low, high = sorted((sign * e.low, sign * e.high))
        out.append(budget.Point(p.x, type(e)(sign * e.mean, low, high, e.n, e.sd, e.method), p.label))
    return out


def claim_budget(runs: pd.DataFrame, curves: pd.DataFrame, claim: Claim, axes: list[str]) -> dict[str, Any] | None:
    """One claim's budget views (None when there is nothing like-for-like to draw)."""
    if claim.axis is None:              # judged against a number measured at the end of training
        return None
    if claim.method == TRAINABILITY:    # a share of the learning-rate grid: no curve over steps
        return None
    sign = 1 if claim.is_equivalence else claim.expected_sign
    timed_only = time_budgeted(runs, claim)
    steps = [] if timed_only else budget.effect_over_steps(runs, curves, claim, axes)
    timed = budget.equal_time(runs, curves, claim, axes)
    views = [(f"{claim.id}: effect by step", steps, "step"),
             (f"{claim.id}: at equal training time", timed, "time")]
    views = [(title, points, unit) for title, points, unit in views
             if any(p.effect.n > 0 for p in points)]
    if not views:
        return None
    curve = budget.curve_metric(claim)
    panels = [(title, _directed([p for p in points if p.effect.n > 0], sign), claim.margin,
               "step" if unit == "step" else "elapsed training time (s, evaluations excluded)")
              for title, points, unit in views]
    caption = (f"{claim.difference().replace(claim.metric, curve)}, in the claimed direction (positive = as "
               "claimed): mean of the per-seed differences (line) and its 95 % Student-t interval (blue band)"
               + (" at each evaluation step" if steps else "")
               + (", and with each arm's curve read at the same elapsed training time (Σ step_time_ms; "
                  "the time axis ends where the shortest run ends)" if timed else "")
               + ("; the runs had a time budget, so the arms stopped at different steps and only equal "
                  "time compares them" if timed_only else "")
               + "; grey band: ±margin; marker colour: the verdict rules' label at that point. "
               + f"The verdict itself is judged on the final {claim.metric}.")
    tables = [{"unit": unit, "title": "By step" if unit == "step" else "At equal training time",
               "rows": table_rows(points, claim, unit, sign), "changes": _changes(points, unit)}
              for _, points, unit in views]
    return {"id": claim.id, "curve": curve, "shown_rows": SHOWN_ROWS, "tables": tables,
            "figure": Figure(f"budget-{claim.id}", f"Budget views: {claim.id}", caption,
                             rf.encode(rf.budget_plot(panels)))}


def budget_sections(runs: pd.DataFrame, curves: pd.DataFrame, claims: tuple[Claim, ...],
                    axes: list[str]) -> list[dict[str, Any]]:
    found = [claim_budget(runs, curves, c, axes) for c in claims]
    return [f for f in found if f is not None]
