"""Was a claim tested at all? The checks that make a verdict "not tested": the (asymmetric)
learning check against each run's trivial baseline, the convergence a claim may require, and the
manipulation checks (bit-identical arms, an intervention that never engaged, both arms at the
metric's floor or ceiling). Torch-free; plain pandas frames in.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from charrnn import registry
from charrnn.config import format_value as _text
from charrnn.science import estimates
from charrnn.science.claims import Claim, ClaimKind
from charrnn.science.pairing import _usable, arms

BASELINE_PREFIX = "baseline_"
QUALITY_SUFFIXES = ("loss", "accuracy", "exact_match")
LEARNED_NA, LEARNED_UNKNOWN = "not applicable", "baseline not logged"
LEARNED_WORSE_ONLY = "the arm claimed worse did not learn"


def has_baseline(metric: str) -> bool:
    """Quality metrics (losses, accuracies, exact match) have a trivial baseline each run logs as
    `baseline_<metric>` on the same data (bigram loss of the training split, chance accuracy);
    speed and gap metrics have none."""
    return metric.endswith(QUALITY_SUFFIXES)


def _arm_learned(arm: pd.DataFrame, claim: Claim) -> bool | None:
    """Did the arm's mean beat its runs' mean trivial baseline? None: no usable runs or baseline."""
    column, higher = BASELINE_PREFIX + claim.metric, registry.higher_is_better(claim.metric)
    arm = arm[_usable(arm, claim.column)]
    base = pd.to_numeric(arm[column], errors="coerce")
    if arm.empty or not np.isfinite(base).any():
        return None
    mean, bar = float(pd.to_numeric(arm[claim.column]).mean()), float(base[np.isfinite(base)].mean())
    return mean > bar if higher else mean < bar


def _did_not_learn(name: str, arm: pd.DataFrame, claim: Claim) -> str:
    arm = arm[_usable(arm, claim.column)]
    base = pd.to_numeric(arm[BASELINE_PREFIX + claim.metric], errors="coerce")
    mean, bar = float(pd.to_numeric(arm[claim.column]).mean()), float(base[np.isfinite(base)].mean())
    return f"{name} did not learn ({claim.metric} {mean:.4g} against its trivial baseline {bar:.4g})"


def learning_check(runs: pd.DataFrame, claim: Claim) -> tuple[str, str, str]:
    """(`learned`, failure, note). `learned`: "true" when every judged arm beats its runs' mean
    `baseline_<metric>` in the metric's direction; "false" when the claim cannot be tested for it
    (failure names the arm): the judged runs of a threshold claim, either arm of an equivalence,
    or, for a directional comparison, the arm claimed better or both arms (`estimates.learning_case`);
    LEARNED_WORSE_ONLY when only the arm claimed worse did not learn: the claimed effect itself,
    judged, with a note saying so. "not applicable" for metrics without a baseline, "baseline not
    logged" when runs lack it. The judged run of a tuned arm is its best tuned value on validation,
    so an arm that did not learn there learned at none of its tuned values."""
    if not has_baseline(claim.metric):
        return LEARNED_NA, "", ""
    if BASELINE_PREFIX + claim.metric not in runs:
        return LEARNED_UNKNOWN, "", ""
    if claim.against_reference:
        named = [("the judged runs", runs)]
    else:
        named = [(f"{claim.axis}={_text(level)}", arm) for level, arm in zip((claim.value, claim.baseline),
                                                                            arms(runs, claim))]
    learned = [_arm_learned(arm, claim) for _, arm in named]
    if any(x is None for x in learned):
        return LEARNED_UNKNOWN, "", ""
    if all(learned):
        return "true", "", ""
    failed = [_did_not_learn(name, arm, claim) for (name, arm), ok in zip(named, learned) if not ok]
    if claim.kind is not ClaimKind.COMPARISON:
        return "false", failed[0], ""
    tested, why = estimates.learning_case(learned[0], learned[1])
    if not tested:
        return "false", f"{why}: {'; '.join(failed)}", ""
    return LEARNED_WORSE_ONLY, "", f"{failed[0]}, while {named[0][0]} learned: {why}; "


# --------------------------------------------------------------------------- convergence

CONVERGED_COLUMNS = ("converged", "final_converged")   # a param or a metric, 1 / 0 per run
CONVERGED_NA, CONVERGED_UNKNOWN = "not required", "not logged"


def convergence_check(runs: pd.DataFrame, claim: Claim) -> tuple[str, str, str]:
    """(`converged`, failure, note) of a claim that requires converged runs (`requires: converged`):
    "true" when every judged run stopped by patience; "false" with the failure "not tested: k of n
    runs stopped at the step cap before converging"; "not logged" when the runs do not say (the
    requirement cannot be checked: the note says so and the verdict is a budget-bound result)."""
    if claim.requires != "converged":
        return CONVERGED_NA, "", ""
    judged = runs if claim.against_reference else pd.concat(arms(runs, claim))
    judged = judged[_usable(judged, claim.column)]
    column = next((c for c in CONVERGED_COLUMNS if c in judged), None)
    flags = pd.to_numeric(judged[column], errors="coerce") if column else pd.Series(dtype=float)
    if column is None or flags.isna().all():
        return CONVERGED_UNKNOWN, "", ("convergence not logged: this claim requires converged runs and it cannot "
                                       "be checked, so the verdict is a budget-bound result; ")
    capped = int((flags == 0).sum())
    unknown = int(flags.isna().sum())
    if capped:
        return "false", f"{capped} of {len(flags)} runs stopped at the step cap before converging", ""
    if unknown:
        return CONVERGED_UNKNOWN, "", f"{unknown} of {len(flags)} runs did not log convergence; "
    return "true", "", ""


# --------------------------------------------------------------------------- manipulation checks

def manipulation_failure(runs: pd.DataFrame, claim: Claim, paired: pd.DataFrame) -> str:
    """Why the comparison did not test anything ("" when it did)."""
    if claim.against_reference or paired.empty:
        return ""
    bounds = registry.METRICS[claim.metric].bounds
    values = np.concatenate([paired["value"].to_numpy(), paired["baseline"].to_numpy()])
    for bound, word in zip(bounds or (), ("floor", "ceiling")):
        if np.allclose(values, bound, rtol=0, atol=1e-12):
            return f"both arms at the {claim.metric} {word} ({bound:g}) on every run: no room to differ"
    if (paired["value"].to_numpy() == paired["baseline"].to_numpy()).all():
        return (f"the two arms gave bit-identical {claim.metric} on all {len(paired)} paired runs: "
                "the intervention changed nothing")
    return _not_engaged(runs, claim)


def _active(level: Any) -> bool:
    try:
        return float(level) != 0
    except (TypeError, ValueError):
        return bool(level)


def _not_engaged(runs: pd.DataFrame, claim: Claim) -> str:
    signal = registry.ENGAGEMENT.get(claim.axis or "")
    if signal is None:
        return ""
    levels = [lv for lv in (claim.value, claim.baseline) if _active(lv)]
    active = pd.concat([arm for arm, lv in zip(arms(runs, claim), (claim.value, claim.baseline))
                        if _active(lv)]) if levels else runs.iloc[0:0]
    if signal not in active:
        return f"{signal.removeprefix('final_')} was not logged: cannot show that {claim.axis} ever engaged"
    if not (pd.to_numeric(active[signal], errors="coerce") > 0).any():
        shown = ", ".join(f"{claim.axis}={lv:g}" if isinstance(lv, float) else f"{claim.axis}={lv}"
                          for lv in levels)
        return f"{shown} never engaged ({signal.removeprefix('final_')} = 0 on every run)"
    return ""
