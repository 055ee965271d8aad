"""How a verdict reads on the pages: the effect in the claimed direction with the metric's unit,
a threshold claim's value against its bar, p and MDE as text, and the forest plots.

"In the claimed direction": a comparison or threshold claim's difference is multiplied by +1 when
higher is better and −1 when lower is better, so positive means "as claimed" and every reproduced
claim sits on the positive side. Equivalence claims claim no direction: their difference is shown
as is. Verdict views that carry `effect_sense` (the verdict table's rows) are already in that
direction; older views are turned here, in `directed`, the one place that does it.
"""
from __future__ import annotations

import math
from typing import Any

from charrnn.science.claims import Claim
from charrnn.science.verdict_table import SELF_CHECK_FAMILY
from . import figures as rf
from charrnn import numbers as fmt
from .base import Figure


def claim_facts(claim: Claim) -> dict[str, Any]:
    """What the display needs of a claim beyond its verdict view (kept in the index manifest):
    `bar`, the number a claim without a second arm (`axis` None) is judged against, when it is one
    number for every seed."""
    bar = claim.baseline if claim.axis is None and isinstance(claim.baseline, (int, float)) else None
    return {"sign": 1 if claim.is_equivalence else claim.expected_sign,
            "bar": None if bar is None else float(bar), "at_least": claim.at_least,
            "equivalence": claim.is_equivalence}


def _value(view: dict[str, Any], key: str) -> float:
    value = view.get(key)
    return float(value) if value is not None and math.isfinite(float(value)) else math.nan


def directed(view: dict[str, Any]) -> tuple[float, float, float]:
    """(effect, low, high) in the claimed direction (NaN where missing)."""
    effect, low, high = (_value(view, k) for k in ("effect", "low", "high"))
    if "effect_sense" in view or view.get("sign", 1) > 0:
        return effect, low, high
    return -effect, -high, -low


def _signed(text: str, value: float, view: dict[str, Any]) -> str:
    """A leading + on positive directed effects (comparisons): positive reads "as claimed"."""
    return f"+{text}" if value > 0 and not view.get("equivalence") and text[:1].isdigit() else text


def effect_text(view: dict[str, Any]) -> str:
    """`+0.0824 nats/char [0.0773 to 0.0875]`, or for a threshold claim `100 % vs bar 95.0 %
    [100 to 100]`; the interval is the verdict's."""
    metric = view["metric"]
    effect, low, high = directed(view)
    if not math.isfinite(effect):
        return "no value"
    bar = view.get("bar")
    if bar is not None:                          # threshold: the measured value and its bar
        raw, raw_low, raw_high = (bar + view.get("sign", 1) * v for v in (effect, low, high))
        lo, hi = sorted((raw_low, raw_high))
        return (f"{fmt.quantity(raw, metric)} vs bar {fmt.exact(bar, metric)} "
                f"{fmt.interval(lo, hi, metric)}").strip()
    return f"{_signed(fmt.difference(effect, metric), effect, view)} {fmt.interval(low, high, metric)}".strip()


def margin_text(view: dict[str, Any]) -> str:
    metric, margin = view["metric"], view.get("margin") or 0.0
    if view.get("at_least"):
        return f"claimed size {fmt.difference(view['at_least'], metric)}"
    return f"margin ±{fmt.difference(margin, metric)}" if margin > 0 else "no margin"


def mde_text(view: dict[str, Any]) -> str:
    mde = view.get("mde")
    if mde is None or not math.isfinite(mde):
        return "n/a"
    need = view.get("seeds_needed")
    seeds = (f"{int(need)} seeds would decide at the observed effect" if need
             else "no finite number of seeds would decide")
    return f"{fmt.difference(mde, view['metric'])} ({seeds})"


def display(view: dict[str, Any]) -> dict[str, Any]:
    """A verdict view with its display strings: effect (claimed direction, units), margin, p, MDE."""
    effect, low, high = directed(view)
    return {**view, "effect_shown": effect_text(view), "margin_shown": margin_text(view),
            "p_shown": fmt.p_text(view.get("p")), "p_adjusted_shown": fmt.p_text(view.get("p_adjusted")),
            "mde_shown": mde_text(view), "directed": (effect, low, high)}


# --------------------------------------------------------------------------- forest plots

def _label(row: dict[str, Any]) -> str:
    return f"{row['experiment']} · {row['id']}"


def _scaled_by_margin(row: dict[str, Any]) -> bool:
    return (row.get("margin") or 0) > 0 and row.get("bar") is None or bool(row.get("equivalence"))


def forest_figures(rows: list[dict[str, Any]]) -> list[Figure]:
    """Two forest plots: claims with a margin on one axis of effect / margin, and margin-free and
    threshold claims, each on its own axis in its metric's units. Effects in the claimed direction.
    Self-checks (exact checks with a tolerance and no margin) have their own table, not a forest row."""
    shown = [r for r in rows if math.isfinite(directed(r)[0]) and r.get("family") != SELF_CHECK_FAMILY]
    by_margin = [r for r in shown if _scaled_by_margin(r)]
    own_units = [r for r in shown if not _scaled_by_margin(r)]
    figures = []
    if by_margin:
        points = [{"label": _label(r), "verdict": r.get("adjusted_verdict", r["verdict"]),
                   **dict(zip(("effect", "low", "high"), (v / r["margin"] for v in directed(r))))}
                  for r in by_margin]
        figures.append(Figure(
            "forest", "Claims with a margin: effect in units of the margin",
            "One row per claim: the mean per-seed difference (dot) and its interval, in the claimed "
            "direction (right of 0 = as claimed; equivalence claims: the plain difference) and divided by "
            "the claim's margin, so claims on different metrics share the axis. Grey band: ±margin "
            "(symlog axis: linear inside ±1). Colour: the verdict after Holm.",
            rf.encode(rf.forest_plot(points))))
    if own_units:
        panels = [_unit_panel(r) for r in own_units]
        figures.append(Figure(
            "forest-units", "Margin-free and threshold claims, in their own units",
            "One axis per claim in its metric's units, in the claimed direction (right = as claimed). "
            "Comparisons: the per-seed difference, 0 = no difference, the dashed line = the size the "
            "source claims where it states one; thresholds: the measured value against its bar "
            "(dashed). Colour: the verdict after Holm.",
            rf.encode(rf.unit_forest(panels))))
    return figures


def _unit_panel(row: dict[str, Any]) -> dict[str, Any]:
    """One claim on its own axis: values, reference lines, axis label, log-ratio or linear."""
    metric = row["metric"]
    effect, low, high = directed(row)
    unit = fmt.unit_of(metric)
    scale = 100.0 if unit == "%" else 1.0
    panel = {"label": _label(row), "verdict": row.get("adjusted_verdict", row["verdict"]), "log": False}
    if row.get("bar") is not None:
        bar, sign = row["bar"], row.get("sign", 1)
        values = sorted(bar + sign * v for v in (low, high))
        return {**panel, "effect": scale * (bar + sign * effect), "low": scale * values[0],
                "high": scale * values[1], "lines": {"bar": scale * bar}, "invert": sign < 0,
                "xlabel": f"{metric} ({unit})" if unit else metric}
    if unit.startswith("log10 "):
        ratios = [10 ** v for v in (effect, low, high)]
        lines = {"no difference": 1.0, **({"claimed": 10 ** row["at_least"]} if row.get("at_least") else {})}
        return {**panel, "effect": ratios[0], "low": ratios[1], "high": ratios[2], "lines": lines,
                "log": True, "invert": False, "xlabel": f"{metric}: ratio (×) in the claimed direction"}
    lines = {"no difference": 0.0, **({"claimed": scale * row["at_least"]} if row.get("at_least") else {})}
    return {**panel, "effect": scale * effect, "low": scale * low, "high": scale * high, "lines": lines,
            "invert": False,
            "xlabel": f"{metric} difference ({'pp' if unit == '%' else unit or 'units'}), claimed direction"}
