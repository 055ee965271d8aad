"""A verdict as one `verdicts.csv` row, and the preregistration check that marks edited claims.

Columns (ROW_COLUMNS; the report adds `experiment`, `adjusted_verdict` and `p_adjusted`):

- `claim` (id), `description`, `metric`, `tests` (source | extrapolation | self-check), `family`
  (the Holm family: the scope, source or extrapolation; "self-check" rows are exact checks outside
  Holm, their verdict `passed` or `failed`), `regime` (the source's setting), `source` (the quoted
  sentence);
- `effect`, `low`, `high`: the mean per-seed difference and its interval **in the claimed
  direction**: for a comparison or threshold claim, positive means "as claimed" (the difference is
  multiplied by +1 when higher is better, −1 when lower is better, and the interval's ends swap
  accordingly), so every `reproduced` row has a positive effect beyond its margin. Equivalence
  claims claim no direction: their effect is the plain difference (value − baseline, or metric −
  reference), and `equivalent` means the interval lies inside ±margin. `effect_sense` says which;
- `sd`, `n`, `method`, `margin`, `at_least`, `verdict`, `reason`, `p`, `mde`, `tost_power`
  (equivalence claims: exact TOST power at a true difference of 0), `seeds_needed` (at α / the
  size of the claim's Holm family once the suite is known), `power_basis` ("observed": from the
  observed sd; "planned" numbers come from a claim's `plan:` before any run);
- `converged`: for a claim that requires converged runs, "true", "false" (the verdict is then `not
  tested`), "better arm capped" (only the arm claimed better hit the cap: the effect is a lower
  bound, reproduced or not tested) or "not logged" (cannot be checked: the reason says so); else
  "not required";
- `learned`: "true" when every judged arm beat its trivial baseline (`baseline_<metric>`),
  "false" (the verdict is then `not tested`), "not applicable" (a metric without a baseline, e.g.
  tokens/s) or "baseline not logged";
- `stable`: "true" when the verdict rules give the same label at the final evaluation and at half
  the steps, "false" (budget-sensitive: `budget_note` says how), "not applicable" (no curve);
- `preregistered`: "true" when the claim's text equals the text logged when its grid's first run
  started; "false" when it was edited after data (`preregistration` reads "edited after data" and
  `original_text` holds the logged text), its stored text no longer matches the stored sha256
  (`preregistration` says so), or its text was not logged before runs existed (`preregistration`
  says which); "not checked" when no store was read. The pages show the note and the original text.

Torch-free, MLflow-free.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from typing import Any

from charrnn.science.claims import Claim
from charrnn.science.estimates import (ALPHA, NOT_TESTED, Hypothesis, adjusted_label, holm_by_family,
                                       seeds_to_decide)
from charrnn.tags import CLAIM_LOGGED_BEFORE_RUNS
from charrnn.science.verdicts import Verdict

AS_CLAIMED = "as claimed (positive = the claimed direction)"
PLAIN = "difference (no direction claimed)"
SELF_CHECK_FAMILY = "self-check"
ROW_COLUMNS = ["claim", "description", "metric", "tests", "family", "regime", "source", "effect", "low", "high",
               "effect_sense", "sd", "n", "method", "margin", "at_least", "verdict", "reason", "p", "mde",
               "tost_power", "seeds_needed", "learned", "stable", "budget_note", "preregistered",
               "preregistration", "original_text", "converged", "power_basis"]


def num(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def claimed_sign(claim: Claim) -> int:
    """+1 or −1: multiplies a difference so that positive reads "as claimed"; +1 for equivalence."""
    return 1 if claim.is_equivalence else claim.expected_sign


def directed_effect(v: Verdict) -> tuple[float, float, float]:
    """(effect, low, high) of a verdict in the claimed direction: positive means "as claimed"
    (equivalence claims: the plain difference); NaN ends without an interval. The one place the
    sign is turned: verdicts.csv, the pages, findings.md, the CLI and the MLflow parent run use it."""
    e, s = v.effect, claimed_sign(v.claim)
    low, high = sorted((s * e.low, s * e.high)) if e.has_ci else (math.nan, math.nan)
    return s * e.mean, low, high


def verdict_row(v: Verdict) -> dict[str, Any]:
    """The `verdicts.csv` row of a verdict (see the module doc for every column's convention)."""
    c, e = v.claim, v.effect
    effect, low, high = directed_effect(v)
    return {"claim": c.id, "description": c.describe(), "metric": c.effect_metric, "tests": c.tests,
            "family": c.family or SELF_CHECK_FAMILY,
            "regime": c.regime, "source": c.source, "effect": num(effect), "low": num(low),
            "high": num(high), "effect_sense": PLAIN if c.is_equivalence else AS_CLAIMED,
            "sd": num(e.sd), "n": e.n, "method": v.method, "margin": c.margin, "at_least": c.at_least,
            "verdict": v.label, "reason": v.reason, "p": num(v.p), "mde": num(v.mde),
            "tost_power": num(v.tost_power), "seeds_needed": v.seeds_needed, "learned": v.learned,
            "stable": v.stable, "budget_note": v.budget_note, "preregistered": v.preregistered,
            "preregistration": v.preregistration, "original_text": v.original_text,
            "converged": v.converged, "power_basis": v.power_basis}


def family_sizes(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Claims with a p in each Holm family (self-checks and not-tested claims count in none)."""
    sizes: dict[str, int] = {}
    for r in rows:
        if _in_holm(r):
            sizes[r["family"]] = sizes.get(r["family"], 0) + 1
    return sizes


def _in_holm(row: dict[str, Any]) -> bool:
    return (row.get("family") not in (None, SELF_CHECK_FAMILY) and row.get("p") is not None
            and row.get("verdict") != NOT_TESTED and math.isfinite(float(row["p"])))


def adjust_rows(rows: list[dict[str, Any]], alpha: float = ALPHA) -> list[dict[str, Any]]:
    """The suite's rows with `p_adjusted` and `adjusted_verdict`: Holm's step-down within each
    family (the claim's scope); a self-check keeps its verdict and has no adjusted p. Each
    `seeds_needed` is recomputed at α / the family's size (Holm's first step), so it says what
    would decide the claim after the adjustment."""
    families = [r["family"] if _in_holm(r) else None for r in rows]
    ps = holm_by_family([float(r["p"]) if f else math.nan for r, f in zip(rows, families)], families)
    sizes = family_sizes(rows)
    out = []
    for r, p, f in zip(rows, ps, families):
        label = adjusted_label(r["verdict"], p, alpha) if f else r["verdict"]
        r = {**r, "p_adjusted": num(p), "adjusted_verdict": label}
        if f and _t_row(r):
            at_least = r.get("at_least")
            h = Hypothesis(float(r["margin"]), 1, r.get("effect_sense") == PLAIN,
                           None if at_least is None or at_least != at_least else float(at_least))
            r["seeds_needed"] = seeds_to_decide(float(r["effect"]), float(r["sd"]), h, alpha / sizes[f])
        out.append(r)
    return out


def _t_row(row: dict[str, Any]) -> bool:
    """A row decided by the t interval (or the sign test at zero spread) with the numbers to plan."""
    return (all(row.get(k) is not None for k in ("sd", "effect", "margin"))
            and str(row.get("method", "")).startswith("Student-t"))


EDITED = "edited after data"
ALTERED = "the stored text does not match its stored sha256 (the store was changed after logging)"


def preregistration(claim: Claim, logged: dict[str, str] | None) -> tuple[str, str, str]:
    """(`preregistered`, its note, the original text) of a claim against what its grid logged:
    `logged` maps "text" to the canonical text, "sha256" to its hash (checked against the text when
    present: a mismatch reads ALTERED) and "when" to CLAIM_LOGGED_BEFORE_RUNS or a note of the runs
    that already existed. None: the store holds no text for this claim."""
    if logged is None:
        return "false", "no text was logged for it before its runs", ""
    if logged.get("sha256") and hashlib.sha256(logged.get("text", "").encode()).hexdigest() != logged["sha256"]:
        return "false", ALTERED, logged.get("text", "")
    if logged.get("text") != claim.canonical_text():
        return "false", EDITED, logged.get("text", "")
    if logged.get("when") != CLAIM_LOGGED_BEFORE_RUNS:
        return "false", f"its text was logged {logged.get('when') or 'after runs existed'}", ""
    return "true", "", ""


def with_preregistration(verdicts: list[Verdict], logged: dict[str, dict[str, str]]) -> list[Verdict]:
    """Each verdict with `preregistered`, its note and the original text from the logged claims."""
    out = []
    for v in verdicts:
        flag, note, original = preregistration(v.claim, logged.get(v.claim.id))
        out.append(replace(v, preregistered=flag, preregistration=note, original_text=original))
    return out
