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
from charrnn.science.claim_options import TRAINABILITY
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
CONVERGED_BOUND = "better arm capped"   # only the arm claimed better hit the cap: its effect is a lower bound


def _flags(runs: pd.DataFrame, claim: Claim) -> pd.Series | None:
    """Each usable run's converged flag (1 / 0 / NaN); None when no run logs one."""
    runs = runs[_usable(runs, claim.column)]
    column = next((c for c in CONVERGED_COLUMNS if c in runs), None)
    flags = pd.to_numeric(runs[column], errors="coerce") if column else pd.Series(dtype=float)
    return None if column is None or flags.isna().all() else flags


def convergence_check(runs: pd.DataFrame, claim: Claim) -> tuple[str, str, str]:
    """(`converged`, failure, note) of a claim that requires converged runs (`requires: converged`):
    "true" when every judged run stopped by patience; "false" with the failure "not tested: k of n
    runs stopped at the step cap before converging"; "not logged" when the runs do not say (the
    requirement cannot be checked: the note says so and the verdict is a budget-bound result).
    CONVERGED_BOUND for a directional comparison whose capped runs are all in the arm claimed
    better while every run of the other arm converged: the capped arm's metric is read at its
    best-validation checkpoint, which more steps can only improve, so the measured effect is a
    lower bound of the converged one. Such a claim can be reproduced, nothing else (`bound_verdict`)."""
    if claim.requires != "converged":
        return CONVERGED_NA, "", ""
    named = [runs] if claim.against_reference else list(arms(runs, claim))
    flags = [_flags(part, claim) for part in named]
    if any(f is None for f in flags):
        return CONVERGED_UNKNOWN, "", ("convergence not logged: this claim requires converged runs and it cannot "
                                       "be checked, so the verdict is a budget-bound result; ")
    every = pd.concat(flags)
    capped, unknown = int((every == 0).sum()), int(every.isna().sum())
    failure = f"{capped} of {len(every)} runs stopped at the step cap before converging"
    if capped and _only_better_arm_capped(claim, flags):
        return CONVERGED_BOUND, "", (f"{capped} of {len(flags[0])} runs of the arm claimed better stopped at the "
                                     "step cap while every run of the other arm converged: more steps could only "
                                     "lower the capped arm's best-validation loss, so the effect is a lower bound; ")
    if capped:
        return "false", failure, ""
    if unknown:
        return CONVERGED_UNKNOWN, "", f"{unknown} of {len(every)} runs did not log convergence; "
    return "true", "", ""


def capped_note(runs: pd.DataFrame, claim: Claim) -> str:
    """For a claim judged on runs some of which hit the step cap without requiring convergence (a
    trainability claim over a learning-rate grid): how many, read at their cap ("" when none)."""
    parts = [_flags(part, claim) for part in ([runs] if claim.against_reference else arms(runs, claim))]
    flags = pd.concat([f for f in parts if f is not None]) if any(f is not None for f in parts) else None
    capped = 0 if flags is None else int((flags == 0).sum())
    return (f"{capped} of {len(flags)} runs stopped at the step cap before converging and count with their loss at "
            "the cap (a budget-bound reading); ") if capped else ""


def _only_better_arm_capped(claim: Claim, flags: list[pd.Series]) -> bool:
    """A directional comparison of two arms whose capped runs are all in the arm claimed better
    (the value arm), every run of the other arm converged, on a held-out loss read at the
    best-validation checkpoint (val_* or test_*; a training loss there has no such bound).
    Not a trainability claim: its fractions over a learning-rate grid have no such monotone bound."""
    if (claim.against_reference or claim.is_equivalence or claim.kind is not ClaimKind.COMPARISON or len(flags) != 2
            or claim.method == TRAINABILITY):
        return False
    better, worse = flags
    held_out_loss = claim.metric.startswith(("val_", "test_")) and claim.metric.endswith("loss")
    return bool((better == 0).any() and (worse == 1).all() and held_out_loss)


def bound_verdict(label: str, reproduced: str, capped_note: str) -> tuple[bool, str]:
    """(keep the label, failure) for a CONVERGED_BOUND claim: a lower bound of the effect decides
    only in the claimed direction, so any other label reads not tested."""
    if label == reproduced:
        return True, ""
    return False, (capped_note.rstrip("; ") + f"; the bound decides only a reproduced effect, and this one is "
                   f"{label}")


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
