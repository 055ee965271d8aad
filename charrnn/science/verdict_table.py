"""A verdict as one `verdicts.csv` row, and the preregistration check that marks edited claims.

Columns (ROW_COLUMNS; the report adds `experiment`, `adjusted_verdict` and `p_adjusted`):

- `claim` (id), `description`, `metric`, `tests` (source | extrapolation), `regime` (the source's
  setting), `source` (the quoted sentence);
- `effect`, `low`, `high`: the mean per-seed difference and its interval **in the claimed
  direction**: for a comparison or threshold claim, positive means "as claimed" (the difference is
  multiplied by +1 when higher is better, −1 when lower is better, and the interval's ends swap
  accordingly), so every `reproduced` row has a positive effect beyond its margin. Equivalence
  claims claim no direction: their effect is the plain difference (value − baseline, or metric −
  reference), and `equivalent` means the interval lies inside ±margin. `effect_sense` says which;
- `sd`, `n`, `method`, `margin`, `at_least`, `verdict`, `reason`, `p`, `mde`, `tost_power`
  (equivalence claims: TOST power at a true difference of 0), `seeds_needed`;
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
from charrnn.tags import CLAIM_LOGGED_BEFORE_RUNS
from charrnn.science.verdicts import Verdict

AS_CLAIMED = "as claimed (positive = the claimed direction)"
PLAIN = "difference (no direction claimed)"
ROW_COLUMNS = ["claim", "description", "metric", "tests", "regime", "source", "effect", "low", "high",
               "effect_sense", "sd", "n", "method", "margin", "at_least", "verdict", "reason", "p", "mde",
               "tost_power", "seeds_needed", "learned", "stable", "budget_note", "preregistered",
               "preregistration", "original_text"]


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
    return {"claim": c.id, "description": c.describe(), "metric": c.metric, "tests": c.tests,
            "regime": c.regime, "source": c.source, "effect": num(effect), "low": num(low),
            "high": num(high), "effect_sense": PLAIN if c.is_equivalence else AS_CLAIMED,
            "sd": num(e.sd), "n": e.n, "method": v.method, "margin": c.margin, "at_least": c.at_least,
            "verdict": v.label, "reason": v.reason, "p": num(v.p), "mde": num(v.mde),
            "tost_power": num(v.tost_power), "seeds_needed": v.seeds_needed, "learned": v.learned,
            "stable": v.stable, "budget_note": v.budget_note, "preregistered": v.preregistered,
            "preregistration": v.preregistration, "original_text": v.original_text}


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
