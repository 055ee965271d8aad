"""The one number formatter of the pages, findings and `charrnn grid`'s summary: 3 significant
figures, thousands separators, the metric's unit from the registry, p-values as "p < 0.001".

    number(44337.6)                          -> "44,300"
    quantity(0.0824, "test_loss")            -> "0.0824 nats/char"
    quantity(0.95, "test_exact_match")       -> "95.0 %"       ("%" metrics are logged as fractions)
    difference(0.916, "log10_tokens_per_s")  -> "×8.24"        (a log10 difference is a ratio)
    p_text(3e-5)                             -> "p < 0.001"

Negative numbers get a typographic minus. Nothing here knows about claims or verdicts.
"""
from __future__ import annotations

import math

from charrnn import registry

NO_VALUE = "n/a"                # a number that is missing or not finite, wherever it is printed

SIGNIFICANT = 3
P_FLOOR = 0.001
MINUS = "−"


def number(value: float | None, significant: int = SIGNIFICANT) -> str:
    """`value` to `significant` figures with thousands separators; tiny values in e-notation."""
    if value is None or not math.isfinite(value):
        return NO_VALUE
    if value == 0:
        return "0"
    rounded = float(f"{abs(value):.{significant}g}")      # 99.96 -> 100: the magnitude after rounding
    magnitude = math.floor(math.log10(rounded))
    if magnitude < -4:
        text = f"{rounded:.{significant - 1}e}".replace("e-0", "e-")
    else:
        text = f"{rounded:,.{max(significant - 1 - magnitude, 0)}f}"
    return (MINUS if value < 0 else "") + text


def tick(value: float) -> str:
    """An axis tick: the shortest plain form (`5`, `1,000`, `0.01`, `−20`), never `5×10⁰`."""
    text = f"{value:,.6g}"
    return text.replace("-", MINUS) if "e" not in text else number(value)


def exact(value: float | None, metric: str) -> str:
    """A number someone typed (a claim's bar) as typed, with the metric's unit: `95 %`, `2.461 nats/char`."""
    if value is None or not math.isfinite(value):
        return NO_VALUE
    unit = unit_of(metric)
    return _with_unit(tick(100 * value if _is_percent(unit) else value), unit)


def unit_of(metric: str) -> str:
    """The registry's unit of `metric` (`final_` prefix allowed; "" when it has none)."""
    found = registry.METRICS.get(metric.removeprefix("final_"))
    return found.unit if found else ""


def _is_percent(unit: str) -> bool:
    return unit == "%"


def _is_log10(unit: str) -> bool:
    return unit.startswith("log10 ")


def _with_unit(text: str, unit: str) -> str:
    return f"{text} {unit}" if unit else text


def quantity(value: float | None, metric: str) -> str:
    """A value of `metric` with its unit (fractions as percentages)."""
    unit = unit_of(metric)
    if _is_percent(unit):
        return _with_unit(number(None if value is None else 100 * value), unit)
    return _with_unit(number(value), unit)


def difference(value: float | None, metric: str) -> str:
    """A difference of two values of `metric`: percentage points for fractions, a ratio (×) for
    log10 metrics, else the metric's unit."""
    unit = unit_of(metric)
    if _is_log10(unit):
        return NO_VALUE if value is None or not math.isfinite(value) else f"×{number(10 ** value)}"
    if _is_percent(unit):
        return _with_unit(number(None if value is None else 100 * value), "pp")
    return _with_unit(number(value), unit)


def bare_difference(value: float | None, metric: str) -> str:
    """`difference` without the unit (interval ends beside a value that carries it)."""
    unit = unit_of(metric)
    if _is_log10(unit):
        return difference(value, metric)
    return number(None if value is None else (100 * value if _is_percent(unit) else value))


def interval(low: float | None, high: float | None, metric: str) -> str:
    """`[low to high]` in the difference's units (empty when there is no interval)."""
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return ""
    return f"[{bare_difference(low, metric)} to {bare_difference(high, metric)}]"


def p_text(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return "p n/a"
    return f"p < {P_FLOOR:g}" if p < P_FLOOR else f"p = {number(p)}"


def ratio(value: float | None) -> str:
    """A ratio of two times or rates: `0.741×`."""
    return NO_VALUE if value is None or not math.isfinite(value) else f"{number(value)}×"
