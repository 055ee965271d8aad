"""Verdicts: exactly one of five per claim, from the Student-t interval of per-seed differences.

With d the per-seed difference (against an arm: metric(value) − metric(baseline), paired by seed;
against a reference: metric − the number, or − that seed's own reference), its 95 % t interval
[low, high] (df = n − 1), the claim's margin m (region of practical equivalence, metric units) and
s = +1 if higher is better else −1:

- `not tested`: the manipulation check failed — an arm did not beat its trivial baseline
  (`baseline_<metric>`, logged by every run: "<arm> did not learn"), the two arms gave
  bit-identical metrics, an intervention that logs its engagement never engaged (e.g. grad_clip
  with clip_fraction 0, or not logged), both arms sit at the metric's floor or ceiling, or the
  metric was not logged;
- `equivalent`: −m < low and high < m (two one-sided t-tests at 2.5 % each, TOST);
- `reproduced`: the interval lies beyond the margin on the claimed side (s·d > m throughout);
  `contradicted`: beyond the margin on the other side (for an equivalence claim: either side);
- a comparison with a claimed size k (`at_least`): `reproduced` when s·d > k throughout,
  `contradicted` when s·d < k throughout (the effect falls short of what the source claims);
- `underpowered`: none of these; the page gives the minimum detectable effect (MDE: the true
  |d| a reproduction would be seen at with 80 % power, m + (t₀.₉₇₅ + t₀.₈₀)·sd/√n) and the seeds
  needed to decide at the observed effect; an equivalence claim gives its TOST power instead.

Zero spread (all n seeds identical) has no t interval: the decision the common value implies gets
the exact sign test's p over seeds, 2 · 0.5ⁿ (so 5 identical seeds decide nothing, 6 do), and
the reason says "all n seeds identical". Each decision has a p-value (twice the one-sided t-test
p, so p < α ⇔ the interval decides); `holm` adjusts them within each family (scope). Torch-free;
plain pandas frames in. `verdict_table.verdict_row` turns a verdict into a verdicts.csv row.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from charrnn.science import estimates, trainability, tuning
from charrnn.config import format_value as _text
from charrnn.science.claims import EXACT_BINOMIAL, TRAINABILITY, Claim
from charrnn.science.estimates import (ALPHA, CONTRADICTED, DECIDED, EQUIVALENT, LABELS, NOT_TESTED,
                                       REPRODUCED, T_METHOD, UNDERPOWERED, Interval, adjusted_label, holm_p,
                                       mean_ci)
from charrnn.science.pairing import arms, differences, scoped  # noqa: F401  (also used through this module)
from charrnn.science.tested import (CONVERGED_BOUND, LEARNED_NA, LEARNED_UNKNOWN, LEARNED_WORSE_ONLY,  # noqa: F401
                                    bound_verdict, capped_note, convergence_check, learning_check,
                                    manipulation_failure)
STABLE_NA = "not applicable"
PREREG_UNKNOWN = "not checked"


@dataclass(frozen=True)
class Verdict:
    claim: Claim
    label: str                  # one of LABELS
    reason: str
    effect: Interval            # mean of the per-seed differences, with its CI
    p: float = math.nan         # p of the decision reached (the smallest one when undecided)
    mde: float = math.nan       # minimum detectable effect at 80 % power (metric units)
    seeds_needed: int | None = None   # seeds to decide at the observed effect (None: not finite)
    n_unpaired: int = 0         # finished runs of either arm whose seed has no partner
    n_failed: int = 0           # runs of either arm not FINISHED or with a non-finite metric
    alpha: float = ALPHA
    adjusted: str = ""          # after Holm over the suite ("" until `holm` ran)
    p_adjusted: float = math.nan
    tost_power: float = math.nan      # equivalence claims: power of TOST at a true difference 0
    learned: str = LEARNED_NA         # "true", "false", LEARNED_NA or LEARNED_UNKNOWN
    stable: str = STABLE_NA           # "true": same label at half the steps; see budget.stability
    budget_note: str = ""             # what a budget-sensitive verdict prints
    preregistered: str = PREREG_UNKNOWN   # "true" or "false"; see verdict_table.preregistration
    preregistration: str = ""         # why not preregistered, e.g. "edited after data"
    original_text: str = ""           # the logged claim text when it differs from the current one
    converged: str = "not required"   # "true", "false", "not logged" or "not required" (convergence_check)
    power_basis: str = ""             # "observed": power and seeds from the observed sd

    @property
    def decided(self) -> bool:
        return self.label in DECIDED

    @property
    def method(self) -> str:
        return f"{self.effect.method}, {100 * (1 - self.alpha):.3g} % CI"

    def mde_text(self) -> str:
        if self.claim.is_equivalence and math.isfinite(self.tost_power):
            need = f"{self.seeds_needed} seeds" if self.seeds_needed else "no finite number of seeds"
            basis = self.power_basis or "observed"
            return (f"exact TOST power {self.tost_power:.2f} at a true difference of 0, {basis} "
                    f"sd (80 % needs {need})")
        if not math.isfinite(self.mde):
            return "n/a"
        need = f"{self.seeds_needed} seeds" if self.seeds_needed else "no finite number of seeds"
        return f"{self.mde:.4g} (decide at the observed effect: {need})"


# --------------------------------------------------------------------------- deciding

def sign_test_p(n: int) -> float:
    return estimates.sign_test_p(n)


def decision_p(d: Interval, claim: Claim) -> dict[str, float]:
    """Each decision's p for `claim` (see `estimates.decision_p`)."""
    return estimates.decision_p(d, claim.hypothesis)


def tost_power(sd: float, n: np.ndarray | int, margin: float, alpha: float = ALPHA) -> np.ndarray | float:
    """Exact TOST power at a true difference of 0 (see `estimates.tost_power`)."""
    return estimates.tost_power(sd, n, margin, alpha)


def power_numbers(d: Interval, claim: Claim, alpha: float) -> tuple[float, int | None, float]:
    """(MDE, seeds needed, TOST power) at level α (α / family size once Holm's family is known).
    MDE at 80 % power: k + (t_{1−α/2} + t_{0.8})·sd/√n with k the claimed size or the margin.
    Seeds needed: to decide at the observed mean (beyond k), or for an equivalence claim to reach
    80 % exact TOST power; None when no number below 10,000 does. Zero spread: the seeds the sign
    test needs (2 · 0.5ⁿ < α)."""
    h = claim.hypothesis
    if d.n < 2 or not math.isfinite(d.sd):
        return math.nan, None, math.nan
    needed = estimates.seeds_to_decide(d.mean, d.sd, h, alpha)
    if d.sd == 0:
        return math.nan, needed, math.nan
    power = float(estimates.tost_power(d.sd, d.n, h.bar, alpha)) if claim.is_equivalence else math.nan
    return estimates.mde(d.sd, d.n, h, alpha), needed, power


def judge(runs: pd.DataFrame, claim: Claim, axes: list[str], alpha: float = ALPHA, looks: int = 1) -> Verdict:
    """The verdict of `claim` over the runs (a frame with status, seed, the axes, final_* and
    baseline_*). `looks`: planned looks of sequential seeding; each look is judged at α / looks
    (Bonferroni over looks), shown as the interval's level and as p × looks. A self-check is an
    exact check (`self_check_verdict`); the rest are decided by the t interval of the per-seed
    differences, or by an exact binomial test over test items (`method: exact_binomial`)."""
    alpha = alpha / looks
    runs = scoped(runs, claim)
    if claim.profiles and "profile" in runs and runs.empty:
        return Verdict(claim, NOT_TESTED, f"judged only on the runs of profile {', '.join(claim.profiles)}: "
                                          "none here", mean_ci([]), alpha=alpha)
    if claim.column not in runs:
        return Verdict(claim, NOT_TESTED, f"{claim.metric} was not logged", mean_ci([]), alpha=alpha)
    if not claim.against_reference and claim.axis not in runs:
        return Verdict(claim, NOT_TESTED, f"axis {claim.axis!r} is not in this experiment", mean_ci([]),
                       alpha=alpha)
    if not claim.against_reference:
        missing = [f"{claim.axis}={_text(lv)}" for lv, arm in zip((claim.value, claim.baseline), arms(runs, claim))
                   if arm.empty]
        if missing:
            return Verdict(claim, NOT_TESTED, f"no runs of {' or '.join(missing)} here", mean_ci([]), alpha=alpha)
    if claim.method == TRAINABILITY:
        converged, capped, note = convergence_check(runs, claim)
        if capped:
            return Verdict(claim, NOT_TESTED, capped, mean_ci([]), alpha=alpha, converged=converged)
        note = note or capped_note(runs, claim)
        return trainability_verdict(runs, claim, alpha, note, converged=converged)
    diffs, paired, n_unpaired, n_failed = differences(runs, claim, axes)
    d = mean_ci(diffs.to_numpy(), 1 - alpha)
    extra = _missing_note(n_unpaired, n_failed)
    if claim.is_self_check:
        return self_check_verdict(claim, diffs, paired, d, extra, n_unpaired=n_unpaired, n_failed=n_failed,
                                  alpha=alpha)
    learned, not_learned, learn_note = learning_check(runs, claim)
    converged, capped, converge_note = convergence_check(runs, claim)
    common = {"n_unpaired": n_unpaired, "n_failed": n_failed, "alpha": alpha, "learned": learned,
              "converged": converged}
    failure = not_learned or capped or manipulation_failure(runs, claim, paired)
    if failure:
        return Verdict(claim, NOT_TESTED, failure + extra, d, **common)
    notes = learn_note + converge_note
    if claim.method == EXACT_BINOMIAL:
        return binomial_verdict(claim, diffs, alpha, looks, notes, extra, common)
    if d.n < 2:
        return Verdict(claim, UNDERPOWERED, f"{notes}{d.n} usable seed(s): an interval needs 2{extra}", d, **common)
    label, p = decide(d, claim, alpha)
    if converged == CONVERGED_BOUND:
        keep, bound_failure = bound_verdict(label, REPRODUCED, converge_note)
        if not keep:
            return Verdict(claim, NOT_TESTED, learn_note + bound_failure + extra, d, **common)
    mde, needed, power = power_numbers(d, claim, alpha)
    p = min(1.0, p * looks)          # on the scale of the suite's α (Holm compares it with ALPHA)
    reason = notes + _zero_spread_note(d) + _reason(label, claim) + extra
    return Verdict(claim, label, reason, d, p, mde, needed, tost_power=power, power_basis="observed", **common)


def trainability_verdict(runs: pd.DataFrame, claim: Claim, alpha: float, note: str, **common: Any) -> Verdict:
    """A trainability claim over every tuned run of its arms: per seed, each arm's share of the
    learning-rate grid within δ of its best (`trainability`), value − baseline, Student-t."""
    problem, diffs, what = trainability.differences(*arms(runs, claim), claim)
    if problem:
        return Verdict(claim, NOT_TESTED, problem, mean_ci([]), alpha=alpha, **common)
    d = mean_ci(diffs.to_numpy(), 1 - alpha)
    d = replace(d, method=f"{d.method}, over trainable fractions")
    if d.n < 2:
        return Verdict(claim, UNDERPOWERED, f"{note}{what}{d.n} paired seed(s): an interval needs 2", d, alpha=alpha,
                       **common)
    label, p = decide(d, claim, alpha)
    mde, needed, _ = power_numbers(d, claim, alpha)
    reason = note + what + _zero_spread_note(d) + _reason(label, claim)
    return Verdict(claim, label, reason, d, p, mde, needed, alpha=alpha, power_basis="observed", **common)


def self_check_verdict(claim: Claim, diffs: pd.Series, paired: pd.DataFrame, d: Interval, extra: str,
                       **common: Any) -> Verdict:
    """A self-check: passed when every seed's value lies within rtol·|reference| + atol of its
    reference (the other arm's value, or the reference number); no p, outside Holm."""
    if claim.against_reference:
        refs = np.asarray(claim.reference_of(diffs.index), dtype=float) * np.ones(len(diffs))
        values = diffs.to_numpy() + refs
    else:
        values, refs = paired["value"].to_numpy(), paired["baseline"].to_numpy()
    check = estimates.self_check(values, refs, claim.rtol, claim.atol)
    tolerance = f"rtol {claim.rtol:g}, atol {claim.atol:g}"
    if check.n == 0:
        return Verdict(claim, NOT_TESTED, f"no paired values to check{extra}", d, **common)
    word = "within" if check.passed else "beyond"
    reason = (f"largest |difference| {check.worst:.3g} (relative {check.worst_relative:.3g}) over {check.n} "
              f"value(s), {word} the tolerance ({tolerance}: {check.allowed:.3g} at that value){extra}")
    label = estimates.PASSED if check.passed else estimates.FAILED_CHECK
    return Verdict(claim, label, reason, d, **common)


def binomial_verdict(claim: Claim, diffs: pd.Series, alpha: float, looks: int, notes: str, extra: str,
                     common: dict[str, Any]) -> Verdict:
    """A threshold on accuracy judged by an exact binomial test over the test items of every seed,
    pooled: K correct of n·items against the bar (beyond the margin, either side). The interval is
    Clopper-Pearson's for the pooled accuracy, minus the bar."""
    bar, n = float(claim.baseline), len(diffs)
    correct = int(np.rint((diffs.to_numpy() + bar) * claim.items).sum())
    total = n * claim.items
    if n == 0:
        return Verdict(claim, UNDERPOWERED, f"{notes}no usable seed{extra}", mean_ci([]), **common)
    low, high = estimates.binomial_interval(correct, total, 1 - alpha)
    s, m = claim.expected_sign, claim.margin
    toward = estimates.binomial_threshold_p(correct, total, bar + s * m) if s > 0 else \
        estimates.binomial_threshold_p(total - correct, total, 1 - (bar + s * m))
    away = estimates.binomial_threshold_p(total - correct, total, 1 - (bar - s * m)) if s > 0 else \
        estimates.binomial_threshold_p(correct, total, bar - s * m)
    ps = {REPRODUCED: toward, CONTRADICTED: away}
    label = next((k for k, p in sorted(ps.items(), key=lambda kv: kv[1]) if p < alpha), UNDERPOWERED)
    p = min(1.0, ps.get(label, min(ps.values())) * looks)
    effect = Interval(correct / total - bar, low - bar, high - bar, n, float(diffs.std(ddof=1)) if n > 1 else math.nan,
                      method=f"exact binomial over {claim.items} test items × {n} seeds (Clopper-Pearson)")
    reason = (f"{notes}{correct} of {total} test items right ({claim.items} per seed × {n} seeds), exact binomial "
              f"test against the bar {bar:g}{'+' if s > 0 else '−'}{m:g}: " + _reason(label, claim) + extra)
    return Verdict(claim, label, reason, effect, p, power_basis="", **common)


def judge_claims(runs: pd.DataFrame, claims: tuple[Claim, ...] | list[Claim], axes: list[str],
                 tune: tuning.Tune | None = None, alpha: float = ALPHA, looks: int = 1,
                 every_run: pd.DataFrame | None = None) -> list[Verdict]:
    """Every claim's verdict. A grid that tunes nuisance keys (`tune:`) is judged on the run
    selected on validation per (variant, seed) (`tuning.judged_runs`): best against best; a
    trainability claim on every tuned run (`every_run`, default `runs`)."""
    judged = tuning.judged_runs(runs, tune or {})
    every = runs if every_run is None else every_run
    return [judge(every if claim.method == TRAINABILITY else judged, claim, axes, alpha, looks) for claim in claims]


def decide(d: Interval, claim: Claim, alpha: float = ALPHA) -> tuple[str, float]:
    """The label an interval of per-seed differences (n ≥ 2) gives `claim`, and its p."""
    return estimates.decide(d, claim.hypothesis, alpha)


def _zero_spread_note(d: Interval) -> str:
    if d.sd != 0:
        return ""
    return (f"all {d.n} seeds identical ({d.mean:.4g}): no spread for a t interval, decided by the sign "
            f"test over seeds (p = {sign_test_p(d.n):.3g}); ")


def _reason(label: str, claim: Claim) -> str:
    if claim.at_least is not None:
        k = f"{claim.at_least:g}"
        return {REPRODUCED: f"the interval lies beyond the claimed effect {k} on the claimed side",
                CONTRADICTED: f"the whole interval falls short of the claimed effect {k}",
                UNDERPOWERED: f"the interval contains the claimed effect {k}: too few seeds to tell"}[label]
    m = f"±{claim.margin:g}"
    return {
        REPRODUCED: f"the interval lies beyond the margin {m} on the claimed side",
        CONTRADICTED: f"the interval lies beyond the margin {m} on the "
                      f"{'wrong' if not claim.is_equivalence else 'far'} side",
        EQUIVALENT: f"the whole interval lies within the margin {m} (TOST)",
        UNDERPOWERED: f"the interval overlaps the margin {m} without lying inside it: too few seeds "
                      "for this effect",
    }[label]


def _missing_note(n_unpaired: int, n_failed: int) -> str:
    notes = [f"{n_failed} failed run(s) excluded" if n_failed else "",
             f"{n_unpaired} run(s) without a partner seed" if n_unpaired else ""]
    notes = [n for n in notes if n]
    return f" ({'; '.join(notes)})" if notes else ""


# --------------------------------------------------------------------------- suite level

def holm(verdicts: list[Verdict], alpha: float = ALPHA) -> list[Verdict]:
    """Holm's step-down within each family, the claim's scope, over the claims that were tested
    (not-tested claims have no p; a self-check keeps its verdict, outside every family)."""
    families = [v.claim.family if v.label != NOT_TESTED and math.isfinite(v.p) else None for v in verdicts]
    ps = estimates.holm_by_family([v.p if f else math.nan for v, f in zip(verdicts, families)], families)
    return [replace(v, adjusted=adjusted_label(v.label, p, alpha) if f else v.label, p_adjusted=p)
            for v, p, f in zip(verdicts, ps, families)]


__all__ = ["ALPHA", "DECIDED", "LABELS", "T_METHOD", "Verdict", "holm", "holm_p", "judge", "judge_claims"]
