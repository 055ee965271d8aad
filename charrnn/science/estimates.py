"""The statistics core: arrays of per-seed values in, intervals, p-values and verdict labels out.

Pure functions over numpy arrays (numpy and scipy only: no pandas, no MLflow, no claim parsing),
in the manner of rliable's `get_interval_estimates`. The frame plumbing (which runs form an arm,
pairing by seed, `where:` scoping) lives in `verdicts.py` and hands this module plain numbers.

- `mean_ci`: the mean of n values and its Student-t interval (df = n − 1);
- `Hypothesis`: what a claim asserts about the mean difference d (a direction beyond a margin,
  a claimed size `at_least`, or equivalence within ±margin); `decision_p` / `decide` give each
  decision's p and the label the (1 − α) interval reaches;
- `tost_power`: the exact power of TOST (two one-sided t-tests) by integrating over the sample
  sd (Owen's method), `tost_power_simulated` the same by simulation;
- `holm_p`: Holm's step-down over a family; `smallest_p` / `seeds_to_decide`: the best p a design
  can reach at n seeds after a family of m, before any run;
- `binomial_threshold_p`: an exact one-sided binomial test of an accuracy bar over test items;
- `self_check`: an exact check of values against references within a numerical tolerance;
- `learning_case`: the asymmetric learning check; `trainability_fraction`: the share of a
  learning-rate grid that comes within δ of the best loss (Collins et al.).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
from scipy import integrate
from scipy import stats as sps
from scipy.special import stdtr, stdtrit   # Student-t cdf and inverse cdf

CONFIDENCE = 0.95
ALPHA = 0.05
POWER = 0.80
MAX_SEEDS_SEARCH = 10_000
T_METHOD = "Student-t (df = n − 1)"
REPRODUCED, CONTRADICTED, EQUIVALENT = "reproduced", "contradicted", "equivalent"
UNDERPOWERED, NOT_TESTED = "underpowered", "not tested"
LABELS = (REPRODUCED, CONTRADICTED, EQUIVALENT, UNDERPOWERED, NOT_TESTED)
DECIDED = (REPRODUCED, CONTRADICTED, EQUIVALENT)
PASSED, FAILED_CHECK = "passed", "failed"          # a self-check's two outcomes (outside Holm)
CHECK_LABELS = (PASSED, FAILED_CHECK)


@dataclass(frozen=True)
class Interval:
    """A mean with its CI over `n` values; `low`/`high` are NaN when n < 2. `sd`: the standard
    deviation of the values (ddof = 1); `method`: how the CI was made."""

    mean: float
    low: float
    high: float
    n: int
    sd: float = math.nan
    method: str = T_METHOD

    @property
    def has_ci(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    def excludes_zero(self) -> int:
        """+1 when the whole CI is above 0, -1 when below, 0 when it straddles 0 or is missing."""
        if not self.has_ci:
            return 0
        return 1 if self.low > 0 else -1 if self.high < 0 else 0

    def fmt(self, digits: int = 3) -> str:
        if self.n == 0 or math.isnan(self.mean):
            return "n/a (n=0)"
        if not self.has_ci:
            return f"{self.mean:.{digits}f} (n={self.n}, no CI)"
        if self.sd == 0:
            return f"{self.mean:.{digits}f} (all {self.n} values identical: no spread, no t interval)"
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}] (n={self.n})"


def finite(values: Iterable[float]) -> np.ndarray:
    arr = np.asarray(list(values), dtype=float)
    return arr[np.isfinite(arr)]


def t_half_width(sd: np.ndarray | float, n: int, confidence: float = CONFIDENCE) -> np.ndarray | float:
    """Half-width of the Student-t CI of a mean of n values with standard deviation `sd`."""
    return stdtrit(n - 1, 0.5 + confidence / 2) * sd / math.sqrt(n)


def mean_ci(values: Iterable[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean and Student-t CI (df = n − 1) of the finite `values` (NaN/inf are dropped)."""
    arr = finite(values)
    n = int(arr.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(arr.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, n)
    sd = float(arr.std(ddof=1))
    half = float(t_half_width(sd, n, confidence))
    return Interval(mean, mean - half, mean + half, n, sd)


# --------------------------------------------------------------------------- deciding

@dataclass(frozen=True)
class Hypothesis:
    """What a claim asserts about the mean per-seed difference d. `sign`: +1 when a positive d is
    the claimed direction, −1 when negative; `margin`: the region of practical equivalence;
    `at_least`: a claimed size (reproduced only beyond it); `equivalence`: |d| < margin."""

    margin: float
    sign: int = 1
    equivalence: bool = False
    at_least: float | None = None

    @property
    def bar(self) -> float:
        """The size the interval must clear: the claimed size, else the margin."""
        return self.margin if self.at_least is None else self.at_least

    def decisions(self) -> tuple[str, ...]:
        if self.at_least is not None:
            return REPRODUCED, CONTRADICTED
        return (EQUIVALENT, CONTRADICTED) if self.equivalence else (REPRODUCED, CONTRADICTED, EQUIVALENT)


def region(mean: float, h: Hypothesis) -> str:
    """The label whose region holds `mean` (UNDERPOWERED on a boundary)."""
    m, s = h.margin, h.sign
    if h.at_least is not None:
        gap = s * mean - h.at_least
        return REPRODUCED if gap > 0 else CONTRADICTED if gap < 0 else UNDERPOWERED
    if abs(mean) < m:
        return EQUIVALENT
    if abs(mean) == m or (mean == 0 and m == 0):
        return UNDERPOWERED
    return CONTRADICTED if h.equivalence or s * mean < 0 else REPRODUCED


def sign_test_p(n: int) -> float:
    """Two-sided exact sign-test p when all n seeds lie on one side: 2 · 0.5ⁿ."""
    return min(1.0, 2 * 0.5 ** n)


def _one_sided_p(d: Interval, shift: float, upper: bool) -> float:
    """p of H0 d ≥ shift (upper=False: the data say d < shift) or H0 d ≤ shift (upper=True); sd > 0."""
    t = (d.mean - shift) / (d.sd / math.sqrt(d.n))
    return float(stdtr(d.n - 1, -t) if upper else stdtr(d.n - 1, t))


def decision_p(d: Interval, h: Hypothesis) -> dict[str, float]:
    """Twice the one-sided t-test p of each decision (p < α ⇔ the (1 − α) interval decides it).
    Zero spread (all n seeds identical) has no t interval: the decision the common value implies
    gets the sign test's p over seeds, 2 · 0.5ⁿ, the others 1."""
    if d.sd == 0:
        where = region(d.mean, h)
        return {label: (sign_test_p(d.n) if label == where else 1.0) for label in h.decisions()}
    m, s = h.margin, h.sign
    if h.at_least is not None:              # H0 s·d ≤ k against s·d > k, and the other way round
        k = s * h.at_least
        toward, away = _one_sided_p(d, k, s > 0), _one_sided_p(d, k, s < 0)
        return {REPRODUCED: min(1.0, 2 * toward), CONTRADICTED: min(1.0, 2 * away)}
    beyond_up, beyond_down = _one_sided_p(d, m, True), _one_sided_p(d, -m, False)
    equivalent = max(_one_sided_p(d, -m, True), _one_sided_p(d, m, False))
    if h.equivalence:
        out = {EQUIVALENT: equivalent, CONTRADICTED: min(beyond_up, beyond_down)}
    else:
        toward, away = (beyond_up, beyond_down) if s > 0 else (beyond_down, beyond_up)
        out = {REPRODUCED: toward, CONTRADICTED: away, EQUIVALENT: equivalent}
    return {k: min(1.0, 2 * v) for k, v in out.items()}


def decide(d: Interval, h: Hypothesis, alpha: float = ALPHA) -> tuple[str, float]:
    """The label an interval of per-seed differences (n ≥ 2) gives, and its p."""
    ps = decision_p(d, h)
    label = next((k for k, p in sorted(ps.items(), key=lambda kv: kv[1]) if p < alpha), UNDERPOWERED)
    return label, ps.get(label, min(ps.values()))


# --------------------------------------------------------------------------- power

def _tost_power_one(sd: float, n: int, margin: float, alpha: float, delta: float) -> float:
    """Exact TOST power at n: the (1 − α) t interval lies inside ±margin ⇔ |mean − 0| < margin −
    t·s/√n. Integrated over the sample sd s (s² ~ sd²·χ²(n−1)/(n−1)), the mean normal given s."""
    if n < 2 or not sd > 0:
        return math.nan
    df, se = n - 1, sd / math.sqrt(n)
    crit = float(stdtrit(df, 1 - alpha / 2))
    v_max = df * (margin * math.sqrt(n) / (crit * sd)) ** 2       # beyond it the interval is wider than ±margin

    def inside(v: float) -> float:
        room = margin - crit * sd * math.sqrt(v / df) / math.sqrt(n)
        prob = sps.norm.cdf((room - delta) / se) - sps.norm.cdf((-room - delta) / se)
        return max(prob, 0.0) * sps.chi2.pdf(v, df)

    value, _ = integrate.quad(inside, 0.0, v_max, limit=200)
    return float(min(max(value, 0.0), 1.0))


def tost_power(sd: float, n: np.ndarray | int, margin: float, alpha: float = ALPHA,
               delta: float = 0.0) -> np.ndarray | float:
    """Exact power of TOST (two one-sided t-tests at α/2 each, as the verdict's 1 − α interval) to
    show |d| < margin when the true difference is `delta`, at standard deviation `sd` over n seeds."""
    if np.ndim(n) == 0:
        return _tost_power_one(sd, int(n), margin, alpha, delta)
    return np.array([_tost_power_one(sd, int(k), margin, alpha, delta) for k in np.ravel(n)])


def tost_power_simulated(sd: float, n: int, margin: float, alpha: float = ALPHA, delta: float = 0.0,
                         reps: int = 20_000, seed: int = 0) -> float:
    """The same power by simulation: the share of normal samples whose interval lies inside ±margin."""
    x = np.random.default_rng(seed).normal(delta, sd, size=(reps, n))
    half = t_half_width(x.std(axis=1, ddof=1), n, 1 - alpha)
    mean = x.mean(axis=1)
    return float(np.mean((mean - half > -margin) & (mean + half < margin)))


def fewest_seeds(enough: Callable[[int], bool], start: int = 2) -> int | None:
    """The smallest n in [start, MAX_SEEDS_SEARCH) with `enough(n)` (monotone in n), or None."""
    if not enough(MAX_SEEDS_SEARCH - 1):
        return None
    low, high = start, MAX_SEEDS_SEARCH - 1           # enough(high) holds
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid + 1, high)
    return low


def _t_sum(n: int, alpha: float) -> float:
    return float(stdtrit(n - 1, 1 - alpha / 2) + stdtrit(n - 1, POWER))


def mde(sd: float, n: int, h: Hypothesis, alpha: float = ALPHA) -> float:
    """Minimum detectable effect at 80 % power: bar + (t_{1−α/2} + t_{0.8})·sd/√n."""
    if n < 2 or not math.isfinite(sd):
        return math.nan
    return h.bar + _t_sum(n, alpha) * sd / math.sqrt(n)


def seeds_to_decide(mean: float, sd: float, h: Hypothesis, alpha: float = ALPHA) -> int | None:
    """Seeds that would decide at the observed mean and sd at level α (pass α/m for a Holm family
    of m: its first step): for a direction, the interval's half-width below |mean| − bar; for an
    equivalence, 80 % exact TOST power at a true difference of 0. Zero spread: the seeds the sign
    test needs (2 · 0.5ⁿ < α). None when no number below 10,000 does."""
    if not math.isfinite(sd):
        return None
    if sd == 0:
        return int(math.floor(math.log2(2 / alpha))) + 1
    if h.equivalence:
        return fewest_seeds(lambda k: tost_power(sd, k, h.bar, alpha) >= POWER)
    target = abs(abs(mean) - h.bar)
    if target == 0:
        return None
    return fewest_seeds(lambda k: _t_sum(k, alpha) * sd / math.sqrt(k) <= target)


# --------------------------------------------------------------------------- families

def holm_p(ps: list[float]) -> list[float]:
    """Holm step-down adjusted p-values (NaN stays NaN and is not counted in the family)."""
    order = sorted((i for i, p in enumerate(ps) if math.isfinite(p)), key=lambda i: ps[i])
    adjusted, running = [math.nan] * len(ps), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * ps[i]))
        adjusted[i] = running
    return adjusted


def holm_by_family(ps: list[float], families: list[str | None]) -> list[float]:
    """Holm within each family (rows whose family is None stay NaN: outside every family)."""
    out = [math.nan] * len(ps)
    for family in {f for f in families if f is not None}:
        idx = [i for i, f in enumerate(families) if f == family]
        for i, p in zip(idx, holm_p([ps[i] for i in idx])):
            out[i] = p
    return out


def adjusted_label(label: str, p_adjusted: float, alpha: float = ALPHA) -> str:
    """A decision stands after adjustment when its adjusted p is below α; else underpowered."""
    return UNDERPOWERED if label in DECIDED and not p_adjusted < alpha else label


# --------------------------------------------------------------------------- decidability

SIGN, BINOMIAL, T_PLANNED, T_FREE = "sign test", "exact binomial", "t (planned sd)", "t"


def smallest_p(design: str, n: int, *, h: Hypothesis | None = None, sd: float = math.nan,
               effect: float = math.nan, items: int = 0, bar: float = math.nan) -> float:
    """The smallest (two-sided) p a design can reach at n seeds, before Holm:
    - SIGN: all n seeds on the claimed side, 2 · 0.5ⁿ;
    - BINOMIAL: every one of n · items test items right against a bar, 2 · barⁿⁱᵗᵉᵐˢ;
    - T_PLANNED: the t-test's p at the planned effect and sd (the effect beyond h.bar);
    - T_FREE: with no planning sd a t-test reaches any p at n ≥ 2 (0), none below 2 seeds (1)."""
    if design == SIGN:
        return sign_test_p(n)
    if design == BINOMIAL:
        return min(1.0, 2 * bar ** (n * items))
    if design == T_PLANNED and h is not None and n >= 2 and sd > 0:
        t = (abs(effect) - h.bar) / (sd / math.sqrt(n))
        return float(min(1.0, 2 * stdtr(n - 1, -t)))
    return 0.0 if n >= 2 else 1.0


def decidable_seeds(p_at: Callable[[int], float], family: int, alpha: float = ALPHA) -> int | None:
    """The fewest seeds whose smallest p, times the family size (Holm's first step), is below α."""
    return fewest_seeds(lambda n: family * p_at(n) < alpha, start=1)


# --------------------------------------------------------------------------- exact binomial bar

def binomial_threshold_p(correct: int, total: int, bar: float) -> float:
    """Two-sided-scale p (twice the one-sided) of H0 accuracy ≤ bar against accuracy > bar, from
    `correct` of `total` test items (pooled over seeds): 2 · P(Binomial(total, bar) ≥ correct).
    Items differ in difficulty and seeds in skill: by Hoeffding (1956) a sum of independent
    Bernoulli trials with mean probability ≤ bar has a tail no heavier than this binomial's."""
    return float(min(1.0, 2 * sps.binom.sf(correct - 1, total, bar)))


def binomial_interval(correct: int, total: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Clopper-Pearson interval of an accuracy from `correct` of `total` items."""
    ci = sps.binomtest(int(correct), int(total)).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


# --------------------------------------------------------------------------- self-checks

@dataclass(frozen=True)
class Check:
    """An exact check: every value within `rtol`·|reference| + `atol` of its reference."""

    passed: bool
    worst: float          # the largest |value − reference| over the pairs
    worst_relative: float  # the largest |value − reference| / |reference|
    allowed: float        # the tolerance at the worst pair
    n: int


def self_check(values: np.ndarray, references: np.ndarray, rtol: float, atol: float = 0.0) -> Check:
    """Values against references (same shape): passed when every |v − r| ≤ rtol·|r| + atol."""
    v, r = np.asarray(values, float), np.asarray(references, float)
    ok = np.isfinite(v) & np.isfinite(r)
    v, r = v[ok], r[ok]
    if v.size == 0:
        return Check(False, math.nan, math.nan, math.nan, 0)
    gap = np.abs(v - r)
    allowed = rtol * np.abs(r) + atol
    worst = int(np.argmax(gap - allowed))
    rel = gap / np.where(r == 0, np.nan, np.abs(r))
    return Check(bool((gap <= allowed).all()), float(gap.max()),
                 float(np.nanmax(rel)) if np.isfinite(rel).any() else math.nan, float(allowed[worst]), int(v.size))


# --------------------------------------------------------------------------- learning and trainability

def learning_case(better_learned: bool | None, worse_learned: bool | None) -> tuple[bool, str]:
    """(tested, note) of the asymmetric learning check of a directional comparison. Not tested
    when the arm claimed better did not learn, or neither arm did; an arm claimed worse that did
    not learn while the other did is the claimed effect itself: tested, with a note saying so.
    None: unknown (no baseline logged) counts as learned."""
    better, worse = better_learned is not False, worse_learned is not False
    if not better:
        return False, "the arm claimed better did not learn" if worse else "neither arm learned"
    if not worse:
        return True, "the arm claimed worse did not learn while the other did: that is the claimed effect"
    return True, ""


def trainability_fraction(losses: np.ndarray, delta: float) -> float:
    """The share of learning-rate settings whose loss lies within `delta` of the best one (losses
    of one arm and seed over a learning-rate grid; a non-finite loss, a diverged run, counts as
    outside). NaN when no setting has a finite loss."""
    x = np.asarray(losses, float)
    if x.size == 0 or not np.isfinite(x).any():
        return math.nan
    best = np.nanmin(np.where(np.isfinite(x), x, np.nan))
    return float(np.mean(np.isfinite(x) & (x <= best + delta)))


def log_grid_span(values: Iterable[float]) -> tuple[int, float]:
    """(number of distinct positive values, decades they span)."""
    v = np.unique(finite(values))
    v = v[v > 0]
    return int(v.size), float(np.log10(v.max() / v.min())) if v.size else 0.0
