"""Can a claim's design decide it? Computed before any run (`--dry-run` and grid start).

For each claim, the smallest p its design can reach at the profile's n seeds, times the size of
its Holm family (Holm's first step: a claim can only count on m·p < α), against α:

- `exact binomial` (`method: exact_binomial`): every one of n · items test items right against
  the bar (plus the margin): 2 · barⁿⁱᵗᵉᵐˢ;
- `t (planned sd)` (`plan: {sd, effect}`): the t-test's p at the planned effect and sd;
- `sign test`: a threshold claim on a bounded metric (accuracy, exact match) whose claimed outcome
  is the bound itself: all seeds at 100 % have no spread, and the exact sign test gives 2 · 0.5ⁿ;
- `t`: otherwise; with no planning sd a t-test can reach any p from 2 seeds on.

The family of a claim is its scope (source or extrapolation) over the suite: the claims of every
grid in the grid file's folder judged in this profile (the grids `make ablations` reports
together). Self-checks are exact checks outside Holm. Torch-free, MLflow-free.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from scipy.special import stdtrit

from charrnn import registry
from charrnn.science import estimates
from charrnn.science.claims import EXACT_BINOMIAL, Claim
from charrnn.science.estimates import ALPHA, BINOMIAL, SIGN, T_FREE, T_PLANNED


@dataclass(frozen=True)
class Decidability:
    claim: Claim
    design: str
    n: int
    family: int                 # claims in its Holm family (0: a self-check, outside Holm)
    smallest_p: float           # before Holm
    needed: int | None          # seeds that would decide (None: no number below 10,000)

    @property
    def decidable(self) -> bool:
        return self.family == 0 or self.family * self.smallest_p < ALPHA

    def line(self) -> str:
        c = self.claim
        if self.family == 0:
            return f"  {c.id} [self-check]: exact check within rtol {c.rtol:g}, atol {c.atol:g}; outside Holm"
        after = min(1.0, self.family * self.smallest_p)
        which = "p at the planned effect" if self.design == T_PLANNED else "smallest p"
        head = (f"  {c.id} [{c.family}, family of {self.family}]: {self.design_text()} at {self.n} seeds: {which} "
                f"{self.smallest_p:.3g} × {self.family} = {after:.3g}")
        if c.is_equivalence and c.plan_sd is not None:
            power = estimates.tost_power(c.plan_sd, self.n, c.margin, ALPHA / self.family)
            head += f"; planned exact TOST power at a true difference of 0: {power:.2f}"
        if self.decidable:
            return f"{head} < {ALPHA:g}: decidable"
        need = f"needs >= {self.needed} seeds" if self.needed else "no number of seeds below 10,000 decides it"
        return f"{head}: cannot decide: {need}"

    def design_text(self) -> str:
        c = self.claim
        if self.design == BINOMIAL:
            return f"exact binomial over {c.items} test items per seed, bar {_bar(c):g}"
        if self.design == T_PLANNED:
            return f"t at the planned sd {c.plan_sd:g} and effect {c.plan_effect:g}"
        if self.design == SIGN:
            return "sign test (a bounded metric: seeds at the bound have no spread)"
        if self.n < 2:
            return "t (no interval below 2 seeds)"
        q = float(stdtrit(self.n - 1, 1 - ALPHA / (2 * self.family))) / math.sqrt(self.n)
        bar = "margin" if c.at_least is None else "claimed size"
        return f"t with no planning sd (decides only an effect beyond the {bar} of more than {q:.3g} sd of the seeds)"


def _bar(claim: Claim) -> float:
    return float(claim.baseline) + claim.expected_sign * claim.margin


def design_of(claim: Claim) -> str:
    if claim.method == EXACT_BINOMIAL:
        return BINOMIAL
    if claim.plan_sd is not None:
        return T_PLANNED
    bounded = registry.METRICS[claim.metric].bounds is not None
    if bounded and claim.against_reference and not claim.is_equivalence:
        return SIGN
    return T_FREE


def smallest_p(claim: Claim, n: int) -> float:
    return estimates.smallest_p(design_of(claim), n, h=claim.hypothesis, sd=claim.plan_sd or math.nan,
                                effect=claim.plan_effect if claim.plan_effect is not None else math.nan,
                                items=claim.items, bar=_bar(claim) if claim.against_reference else math.nan)


def family_sizes(claims: Iterable[Claim]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for c in claims:
        if c.family is not None:
            sizes[c.family] = sizes.get(c.family, 0) + 1
    return sizes


def assess(claims: Iterable[Claim], n: int, sizes: dict[str, int]) -> list[Decidability]:
    """Each claim's decidability at n seeds, in families of `sizes` (scope → number of claims)."""
    out = []
    for c in claims:
        if c.family is None:
            out.append(Decidability(c, "exact check", n, 0, math.nan, None))
            continue
        m = max(sizes.get(c.family, 1), 1)
        needed = estimates.decidable_seeds(lambda k, c=c: smallest_p(c, k), m)
        out.append(Decidability(c, design_of(c), n, m, smallest_p(c, n), needed))
    return out


def report(claims: Iterable[Claim], n: int, sizes: dict[str, int], suite: str) -> str:
    """The lines `--dry-run` and grid start print: one per claim, "cannot decide" where it cannot."""
    rows = assess(claims, n, sizes)
    if not rows:
        return ""
    families = ", ".join(f"{f} {k}" for f, k in sorted(sizes.items())) or "none"
    head = (f"decidability before any run (Holm family = a claim's scope over {suite}: {families}; "
            f"α = {ALPHA:g}):")
    return "\n".join([head, *(r.line() for r in rows)])
