"""The budget views on a page: each claim's effect at every evaluation step and at equal
wall-clock time (`charrnn.science.budget` computes them; this module draws and tabulates)."""
from __future__ import annotations

from typing import Any

import pandas as pd

from charrnn.science import budget
from charrnn.science.claims import Claim
from . import figures as rf
from .base import Figure


def _row(p: budget.Point, unit: str) -> dict[str, Any]:
    x = f"{int(p.x)}" if unit == "step" else f"{p.x:.1f} s"
    return {"x": x, "effect": p.effect.fmt(4), "label": p.label}


def _changes(points: list[budget.Point], unit: str) -> str:
    flips = budget.flips(points)
    if not flips:
        return "no point with two or more paired seeds"
    fmt = (lambda x: f"step {int(x)}") if unit == "step" else (lambda x: f"{x:.1f} s")
    if len(flips) == 1:
        return f"{flips[0][1]} at every point"
    return "; ".join(f"{label} from {fmt(x)}" for x, label in flips)


def claim_budget(runs: pd.DataFrame, curves: pd.DataFrame, claim: Claim, axes: list[str]) -> dict[str, Any] | None:
    """One claim's budget views (None when nothing was logged to draw them from)."""
    steps = budget.effect_over_steps(runs, curves, claim, axes)
    timed = budget.equal_time(runs, curves, claim, axes)
    if not steps and not timed:
        return None
    curve = budget.curve_metric(claim)
    panels = [(f"{claim.id}: {curve} effect by step", steps, claim.margin, "step")] if steps else []
    if timed:
        panels.append((f"{claim.id}: at equal training time", timed, claim.margin,
                       "elapsed training time (s, evaluations excluded)"))
    caption = (f"{claim.difference().replace(claim.metric, curve)}: mean of the per-seed differences and "
               "its 95 % Student-t interval at each evaluation step"
               + (", and with each arm's curve read at the same elapsed training time (Σ step_time_ms; "
                  "the time axis ends where the shortest run ends)" if timed else "")
               + "; grey band ±margin; marker colour = the verdict rules' label at that point. "
               + ("The verdict itself is judged on the final " + claim.metric + "." if curve != claim.metric
                  else "The verdict itself uses the final value."))
    return {"id": claim.id, "curve": curve,
            "figure": Figure(f"budget-{claim.id}", f"Budget views: {claim.id}", caption,
                             rf.encode(rf.budget_plot(panels))),
            "step_rows": [_row(p, "step") for p in budget.table_rows(steps)],
            "step_changes": _changes(steps, "step"),
            "time_rows": [_row(p, "time") for p in budget.table_rows(timed)],
            "time_changes": _changes(timed, "time") if timed else ""}


def budget_sections(runs: pd.DataFrame, curves: pd.DataFrame, claims: tuple[Claim, ...],
                    axes: list[str]) -> list[dict[str, Any]]:
    found = [claim_budget(runs, curves, c, axes) for c in claims]
    return [f for f in found if f is not None]
