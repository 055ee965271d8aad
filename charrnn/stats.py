"""Statistics for the report: bootstrap CIs over seeds, paired differences, verdicts, importance.

Everything works on plain pandas frames (one row per run) so it is testable without MLflow.
Intervals are percentile bootstrap 95 % CIs from `scipy.stats.bootstrap` with a fixed generator, so
a report is reproducible; the percentile method (not BCa) because BCa is undefined on constant
data and unstable at 3-5 seeds. Fewer than two values give no interval (`Interval.low` is NaN).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd
from scipy import stats as sps

from .config import is_finite_number

CONFIDENCE = 0.95
N_RESAMPLES = 2000
BAND_RESAMPLES = 1000           # per-step bands of learning curves: drawn, not read off, and many
IMPORTANCE_RESAMPLES = 500
RNG_SEED = 0
FEW_SEEDS = 3                   # below this a verdict carries a caution (REFERENCES: ≥ 3 seeds)
FINISHED = "FINISHED"
REPRODUCED, CONTRADICTED, INCONCLUSIVE = "reproduced", "contradicted", "inconclusive"


def _rng() -> np.random.Generator:
    return np.random.default_rng(RNG_SEED)


@dataclass(frozen=True)
class Interval:
    """A mean with its bootstrap CI over `n` values; `low`/`high` are NaN when n < 2."""

    mean: float
    low: float
    high: float
    n: int

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
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}] (n={self.n})"


def _finite(values: Iterable[float]) -> np.ndarray:
    arr = np.asarray(list(values), dtype=float)
    return arr[np.isfinite(arr)]


def bootstrap_ci(values: Iterable[float]) -> Interval:
    """Mean and percentile-bootstrap 95 % CI of the finite `values` (NaN/inf are dropped)."""
    arr = _finite(values)
    if arr.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(arr.mean())
    if arr.size < 2:
        return Interval(mean, math.nan, math.nan, int(arr.size))
    if np.ptp(arr) == 0:
        return Interval(mean, mean, mean, int(arr.size))
    res = sps.bootstrap((arr,), np.mean, confidence_level=CONFIDENCE, n_resamples=N_RESAMPLES,
                        method="percentile", rng=_rng())
    ci = res.confidence_interval
    return Interval(mean, float(ci.low), float(ci.high), int(arr.size))


def bootstrap_columns(matrix: np.ndarray) -> pd.DataFrame:
    """Per-column mean and CI of a (runs × points) matrix without NaN: one vectorised bootstrap."""
    n = matrix.shape[0]
    mean = matrix.mean(axis=0)
    if n < 2:
        nan = np.full_like(mean, np.nan)
        return pd.DataFrame({"mean": mean, "low": nan, "high": nan, "n": n})
    res = sps.bootstrap((matrix,), np.mean, axis=0, confidence_level=CONFIDENCE,
                        n_resamples=BAND_RESAMPLES, method="percentile", rng=_rng())
    low, high = (np.where(np.ptp(matrix, axis=0) == 0, mean, bound)
                 for bound in (res.confidence_interval.low, res.confidence_interval.high))
    return pd.DataFrame({"mean": mean, "low": low, "high": high, "n": n})


# --------------------------------------------------------------------------- value matching

def same_value(a: Any, b: Any) -> bool:
    """MLflow params are strings; grid YAML values are typed. `"512" == 512`, `"True" == true`."""
    if isinstance(a, bool) or isinstance(b, bool) or str(a).lower() in ("true", "false"):
        return str(a).lower() == str(b).lower()
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    except (TypeError, ValueError):
        return str(a) == str(b)


def matches(column: pd.Series, value: Any) -> pd.Series:
    return column.map(lambda v: same_value(v, value)).astype(bool)


# --------------------------------------------------------------------------- claims and verdicts

@dataclass(frozen=True)
class Claim:
    """A grid file's `claim:` on `metric`, in one of two forms:

    - comparison, `expect: {axis: value, better_than: baseline}`: the variant with `axis=value`
      beats the one with `axis=baseline`, paired by seed;
    - threshold, `expect: {better_than: 1.60}` (`axis` is None): the grid's runs beat a reference
      number, e.g. a published loss.
    """

    axis: str | None
    value: Any
    baseline: Any
    metric: str = "val_loss"
    higher_is_better: bool = False
    source: str = ""

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "Claim":
        expect = dict(spec.get("expect") or {})
        baseline = expect.pop("better_than", None)
        if len(expect) > 1 or baseline is None or (not expect and not is_finite_number(baseline)):
            raise ValueError(f"claim.expect={spec.get('expect')!r}: want {{AXIS: VALUE, better_than: "
                             "BASELINE}} or {better_than: NUMBER}")
        (axis, value), = expect.items() if expect else ((None, None),)
        return cls(axis=None if axis is None else str(axis), value=value,
                   baseline=baseline if expect else float(baseline),
                   metric=str(spec.get("metric", "val_loss")),
                   higher_is_better=bool(spec.get("higher_is_better", False)),
                   source=str(spec.get("source", "")))

    @property
    def is_threshold(self) -> bool:
        return self.axis is None

    @property
    def expected_sign(self) -> int:
        """Sign of (value − baseline) on the metric if the claim holds."""
        return 1 if self.higher_is_better else -1

    def describe(self) -> str:
        word = "higher" if self.higher_is_better else "lower"
        if self.is_threshold:
            return f"{self.metric} is {word} than {self.baseline:g}"
        return (f"{self.axis}={self.value} gives {word} {self.metric} "
                f"than {self.axis}={self.baseline}")

    def difference(self) -> str:
        """The quantity the verdict's interval is about."""
        m = self.metric
        if self.is_threshold:
            return f"{m} − {self.baseline:g}"
        return f"{m}({self.axis}={self.value}) − {m}({self.axis}={self.baseline})"

    def pairing(self) -> str:
        """How runs become the per-seed values the interval is drawn from."""
        return "per seed, mean over the grid's variants" if self.is_threshold else "paired by seed"


@dataclass(frozen=True)
class Verdict:
    label: str                  # reproduced | contradicted | inconclusive
    reason: str
    effect: Interval            # mean over seeds of metric(value) − metric(baseline), with CI
    n_unpaired: int = 0         # finished runs of either arm whose seed has no partner
    n_failed: int = 0           # runs of either arm not FINISHED or with a non-finite metric


def _arm(runs: pd.DataFrame, claim: Claim, level: Any, metric_col: str) -> tuple[pd.DataFrame, int]:
    """Usable runs of one arm of the claim, and how many of its runs were unusable."""
    rows = runs[matches(runs[claim.axis], level)] if claim.axis in runs else runs.iloc[0:0]
    ok = (rows["status"] == FINISHED) & np.isfinite(pd.to_numeric(rows[metric_col], errors="coerce"))
    return rows[ok], int((~ok).sum())


def _moves_with(runs: pd.DataFrame, axis: str, claim_axis: str) -> bool:
    """True when `axis` takes one value per level of `claim_axis` (a `zip:` partner, e.g. hidden
    size paired with cell for equal parameter counts): it cannot be matched across arms."""
    return bool((runs.astype({axis: str}).groupby(claim_axis)[axis].nunique() <= 1).all())


def paired_differences(runs: pd.DataFrame, claim: Claim, metric_col: str,
                       axes: list[str]) -> tuple[pd.Series, int, int]:
    """Per-seed metric(value) − metric(baseline), matched on seed and every other varied axis
    (then averaged over those other axes so each seed counts once). Returns the differences by
    seed, the number of unpaired finished runs and the number of failed runs."""
    keys = [a for a in axes if a != claim.axis and a in runs
            and not _moves_with(runs, a, claim.axis)] + ["seed"]
    arms = [_arm(runs, claim, level, metric_col) for level in (claim.value, claim.baseline)]
    n_failed = arms[0][1] + arms[1][1]
    means = [arm.assign(_m=pd.to_numeric(arm[metric_col]))
             .astype({k: str for k in keys}).groupby(keys)["_m"].mean() for arm, _ in arms]
    joined = pd.concat(means, axis=1, keys=["value", "baseline"], join="outer")
    paired = joined.dropna()
    n_unpaired = int(joined.notna().sum().sum() - 2 * len(paired))
    diffs = (paired["value"] - paired["baseline"]).groupby(level="seed").mean()
    return diffs, n_unpaired, n_failed


def threshold_differences(runs: pd.DataFrame, claim: Claim, metric_col: str) -> tuple[pd.Series, int, int]:
    """Per-seed metric − threshold over the finished runs (averaged over variants so each seed
    counts once); the number of unpaired runs (always 0) and of failed runs."""
    ok = (runs["status"] == FINISHED) & np.isfinite(pd.to_numeric(runs[metric_col], errors="coerce"))
    values = pd.to_numeric(runs.loc[ok, metric_col]).groupby(runs.loc[ok, "seed"].astype(str)).mean()
    return values - float(claim.baseline), 0, int((~ok).sum())


def verdict(runs: pd.DataFrame, claim: Claim, metric_col: str, axes: list[str]) -> Verdict:
    """reproduced / contradicted / inconclusive from the CI of the paired difference."""
    if claim.is_threshold:
        diffs, n_unpaired, n_failed = threshold_differences(runs, claim, metric_col)
    elif claim.axis not in runs:
        return Verdict(INCONCLUSIVE, f"axis {claim.axis!r} is not in this experiment",
                       bootstrap_ci([]))
    else:
        diffs, n_unpaired, n_failed = paired_differences(runs, claim, metric_col, axes)
    effect = bootstrap_ci(diffs.to_numpy())
    extra = _missing_note(n_unpaired, n_failed)
    if effect.n < 2:
        return Verdict(INCONCLUSIVE, f"too few seeds: {effect.n} paired{extra}", effect,
                       n_unpaired, n_failed)
    side = effect.excludes_zero()
    kind = "difference from the threshold" if claim.is_threshold else "paired difference"
    if side == claim.expected_sign:
        label, reason = REPRODUCED, f"the CI of the {kind} excludes 0 in the expected direction"
    elif side == -claim.expected_sign:
        label, reason = CONTRADICTED, f"the CI of the {kind} excludes 0 in the opposite direction"
    else:
        label, reason = INCONCLUSIVE, f"the CI of the {kind} includes 0"
    if effect.n < FEW_SEEDS:
        extra += f"; only {effect.n} seeds: the bootstrap CI of so few values is little more than their range"
    return Verdict(label, reason + extra, effect, n_unpaired, n_failed)


def _missing_note(n_unpaired: int, n_failed: int) -> str:
    notes = [f"{n_failed} failed run(s) excluded" if n_failed else "",
             f"{n_unpaired} run(s) without a partner seed" if n_unpaired else ""]
    notes = [n for n in notes if n]
    return f" ({'; '.join(notes)})" if notes else ""


# --------------------------------------------------------------------------- importance

def _variance_shares(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Main-effect share of variance per axis: Var_l(mean of level l) / Var(all), run-weighted.
    `codes` is (runs × axes) of integer level ids."""
    total = values.var()
    if not np.isfinite(total) or total == 0:
        return np.zeros(codes.shape[1])
    grand = values.mean()
    shares = []
    for col in codes.T:
        counts = np.bincount(col)
        sums = np.bincount(col, weights=values)
        used = counts > 0
        level_means = sums[used] / counts[used]
        shares.append(float((counts[used] * (level_means - grand) ** 2).sum() / values.size / total))
    return np.asarray(shares)


def importance(runs: pd.DataFrame, axes: list[str], metric_col: str) -> dict[str, Interval]:
    """fANOVA-style main effects: each axis's share of the metric's variance over finished runs,
    with a CI from resampling seeds (a seed's runs stay together). Shares of a balanced grid sum
    to at most 1; the rest is interactions and seed noise."""
    finished = runs[(runs["status"] == FINISHED)]
    values = pd.to_numeric(finished[metric_col], errors="coerce")
    finished, values = finished[np.isfinite(values)], values[np.isfinite(values)].to_numpy()
    if len(values) == 0:
        return {a: bootstrap_ci([]) for a in axes}
    codes = np.stack([pd.factorize(finished[a].astype(str))[0] for a in axes], axis=1)
    seeds = finished["seed"].astype(str).to_numpy()
    point = _variance_shares(values, codes)
    groups = [np.flatnonzero(seeds == s) for s in pd.unique(seeds)]
    if len(groups) < 2:
        return {a: Interval(float(p), math.nan, math.nan, 1) for a, p in zip(axes, point)}

    def statistic(seed_idx: np.ndarray) -> np.ndarray:
        rows = np.concatenate([groups[int(i)] for i in seed_idx])
        return _variance_shares(values[rows], codes[rows])

    res = sps.bootstrap((np.arange(len(groups)),), statistic, vectorized=False,
                        confidence_level=CONFIDENCE, n_resamples=IMPORTANCE_RESAMPLES,
                        method="percentile", rng=_rng())
    low, high = np.atleast_1d(res.confidence_interval.low), np.atleast_1d(res.confidence_interval.high)
    return {a: Interval(float(p), float(lo), float(hi), len(groups))
            for a, p, lo, hi in zip(axes, point, low, high)}


def pareto_front(costs: np.ndarray, losses: np.ndarray) -> np.ndarray:
    """Boolean mask of points no other point beats in both cost and loss (both minimised)."""
    costs, losses = np.asarray(costs, float), np.asarray(losses, float)
    ok = np.isfinite(costs) & np.isfinite(losses)
    front = np.zeros(len(costs), dtype=bool)
    for i in np.flatnonzero(ok):
        dominated = ok & (costs <= costs[i]) & (losses <= losses[i]) & (
            (costs < costs[i]) | (losses < losses[i]))
        front[i] = not dominated.any()
    return front
