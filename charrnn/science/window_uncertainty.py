"""Test-set uncertainty: an interval over test windows beside a claim's interval over seeds.

A verdict's interval covers seeds only: every run of a task scores the same fixed test windows
(e.g. 20,480 characters; 100 items for bitflip), so the luck of which text or items the test split
holds is shared by every seed and never shows in their spread. Each run logs its per-window sums
(`test_windows.json`: loss sum and tokens, correct tokens, exact matches and rows per window), and
this module resamples the windows.

Bootstrap: a replicate draws W window indices with replacement (as counts) and recomputes each
run's metric as the ratio of its resampled sums (loss: Σ loss / Σ tokens, the token-weighted mean
the run logged). Runs that scored the same windows (equal token counts, window by window) share
each replicate's draw: both arms of a seed pair are paired by window, and every seed sees the same
resampled test set, as it sees the same real one. The replicate's effect is the claim's point
estimate — per seed the mean of the value − baseline differences (or value − reference), then the
mean over seeds — so the percentile interval of the replicates reflects test-set sampling alone,
with the trained models held fixed. `dominant` says which half-width is larger: the seed
interval's ("seeds") or the window interval's ("test windows"). Windows are treated as independent
draws from the text: overlapping windows (a test split shorter than eval_batches × batch_size ×
seq_len) are correlated and make the interval too narrow.

Arrays in, intervals out; numpy only (no torch, no MLflow). The report reads the artifacts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd

from charrnn.science.stats import FINISHED
from charrnn.science.verdicts import arms, scoped

N_BOOT = 4000
BOOT_SEED = 0
SEEDS, WINDOWS = "seeds", "test windows"
# zero width: every window and seed scores alike (e.g. 100 % exact match), where resampling sees no
# test-set uncertainty although a finite test set has some (an exact binomial bound shows it)
NEITHER = "neither (zero width: every seed and test window scores alike)"
NOT_RECORDED = "not recorded"          # a judged run lacks its window sums (a store older than them)
NOT_APPLICABLE = "not applicable"      # the claim's metric is not a mean over test windows
NO_SEED_INTERVAL = "no seed interval"
COLUMNS = ["window_low", "window_high", "dominant_uncertainty"]   # verdicts.csv; claimed direction
# metric suffix → (numerator, denominator) of the window sums
RATIOS = {"loss": ("loss_sum", "tokens"), "accuracy": ("correct", "tokens"), "exact_match": ("exact", "rows")}


@dataclass(frozen=True)
class Windows:
    """One run's sums per test window, (W,) each; its metric is Σ numerator / Σ denominator."""
    numerator: np.ndarray
    denominator: np.ndarray

    @property
    def layout(self) -> bytes:
        """Runs with equal layouts scored the same windows: they share a bootstrap draw."""
        return np.ascontiguousarray(self.denominator, dtype=np.float64).tobytes()

    def metric(self, counts: np.ndarray | None = None) -> np.ndarray | float:
        """The metric, or per replicate under window counts (R, W) → (R,)."""
        if counts is None:
            return float(self.numerator.sum() / self.denominator.sum())
        return (counts @ self.numerator) / np.maximum(counts @ self.denominator, 1e-300)


@dataclass(frozen=True)
class Pair:
    """One paired comparison of a seed: the value arm's windows against the baseline arm's, or
    against a fixed reference number (`baseline` None)."""
    seed: str
    value: Windows
    baseline: Windows | None = None
    reference: float = 0.0


@dataclass(frozen=True)
class WindowInterval:
    """The effect's interval over test windows (value − baseline, as the seed interval's effect)."""
    status: str                     # "recorded", NOT_RECORDED or NOT_APPLICABLE
    estimate: float = math.nan      # the point estimate on the recorded windows (= the seed mean)
    low: float = math.nan
    high: float = math.nan
    n_windows: int = 0

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def window_sums(metric: str, logged: dict[str, Any] | None) -> Windows | None:
    """A run's windows of `metric` from its parsed `test_windows.json`; None when not recorded."""
    suffix = next((s for s in RATIOS if metric.endswith("_" + s)), None)
    split = metric.removesuffix(f"_{suffix}")
    if suffix is None or not isinstance(logged, dict) or not isinstance(logged.get(split), dict):
        return None
    num, den = (np.asarray(logged[split][key], dtype=np.float64) for key in RATIOS[suffix])
    return Windows(num, den) if num.size and num.shape == den.shape and den.sum() > 0 else None


def is_window_metric(metric: str) -> bool:
    """Test metrics are means over the test windows (test_loss, test_own_accuracy, ...)."""
    return metric.startswith("test_") and metric.endswith(tuple(RATIOS))


def _draws(pairs: list[Pair], n_boot: int, rng: np.random.Generator) -> dict[bytes, np.ndarray]:
    """One (R, W) count matrix per window layout: each replicate resamples W windows with replacement."""
    runs = [w for p in pairs for w in (p.value, p.baseline) if w is not None]
    layouts = dict.fromkeys(sorted({w.layout for w in runs}))
    for layout in layouts:
        n = len(np.frombuffer(layout, dtype=np.float64))
        layouts[layout] = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)  # (R, W)
    return layouts


def _effect(pairs: list[Pair], metric_of: Callable[[Windows], Any]) -> Any:
    """Mean over seeds of each seed's mean difference (the seed interval's point estimate)."""
    per_seed: dict[str, list[Any]] = {}
    for p in pairs:
        other = metric_of(p.baseline) if p.baseline is not None else p.reference
        per_seed.setdefault(p.seed, []).append(metric_of(p.value) - other)
    return np.mean([np.mean(d, axis=0) for d in per_seed.values()], axis=0)


def window_interval(pairs: list[Pair], confidence: float = 0.95, n_boot: int = N_BOOT,
                    seed: int = BOOT_SEED) -> WindowInterval:
    """The percentile bootstrap interval of the claim's effect over test windows (module doc)."""
    if not pairs:
        return WindowInterval(NOT_RECORDED)
    draws = _draws(pairs, n_boot, np.random.default_rng(seed))
    replicates = _effect(pairs, lambda w: w.metric(draws[w.layout]))                                  # (R,)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return WindowInterval("recorded", float(_effect(pairs, Windows.metric)), float(low), float(high),
                          max(p.value.numerator.size for p in pairs))


def dominant(seed_low: float, seed_high: float, windows: WindowInterval) -> str:
    """Which interval is wider: SEEDS, WINDOWS, NEITHER, or why there is no comparison."""
    if windows.status != "recorded":
        return windows.status
    if not (math.isfinite(seed_low) and math.isfinite(seed_high)):
        return NO_SEED_INTERVAL
    seed_half = (seed_high - seed_low) / 2
    if seed_half == windows.half_width == 0:
        return NEITHER
    return SEEDS if seed_half >= windows.half_width else WINDOWS


# --------------------------------------------------------------------------- a claim's pairs

def _usable(runs: pd.DataFrame, column: str) -> pd.DataFrame:
    """The finished runs with a finite metric: those the verdict judges."""
    return runs[(runs["status"] == FINISHED) & np.isfinite(pd.to_numeric(runs[column], errors="coerce"))]


def _paired_keys(runs: pd.DataFrame, axis: str, axes: Iterable[str]) -> list[str]:
    """The keys a seed pair is matched on, as the verdict pairs them: seed and every other varied
    axis that does not move with the claim's axis (a `zip:` partner)."""
    others = [a for a in axes if a != axis and a in runs
              and not (runs.astype({a: str}).groupby(axis)[a].nunique() <= 1).all()]
    return others + ["seed"]


def claim_pairs(runs: pd.DataFrame, claim: Any, axes: list[str],
                windows_of: Callable[[str], dict[str, Any] | None]) -> list[Pair] | str:
    """The pairs of `claim` over `runs` (the frame its verdict judged: run_id, status, seed, axes,
    final_*), with each run's windows from `windows_of(run_id)` (the parsed artifact, or None);
    or NOT_APPLICABLE / NOT_RECORDED."""
    if not is_window_metric(claim.metric):
        return NOT_APPLICABLE
    runs = scoped(runs, claim)
    if claim.column not in runs or (not claim.against_reference and claim.axis not in runs):
        return NOT_RECORDED

    def windows(run_id: str) -> Windows:
        found = window_sums(claim.metric, windows_of(run_id))
        if found is None:
            raise LookupError(run_id)
        return found

    try:
        if claim.against_reference:
            ok = _usable(runs, claim.column)
            seeds = ok["seed"].astype(str)
            refs = np.broadcast_to(np.asarray(claim.reference_of(seeds), dtype=float), (len(ok),))
            pairs = [Pair(s, windows(r), None, float(ref)) for s, r, ref in zip(seeds, ok["run_id"], refs)
                     if math.isfinite(ref)]
        else:
            keys = _paired_keys(runs, claim.axis, axes)
            sides = [_usable(arm, claim.column).astype({k: str for k in keys}).set_index(keys)["run_id"]
                     for arm in arms(runs, claim)]
            sides = [side[~side.index.duplicated(keep="first")] for side in sides]
            joined = pd.concat(sides, axis=1, keys=["value", "baseline"], join="inner")
            pairs = [Pair(str(idx[-1] if isinstance(idx, tuple) else idx), windows(v), windows(b))
                     for idx, v, b in zip(joined.index, joined["value"], joined["baseline"])]
    except LookupError:
        return NOT_RECORDED
    return pairs or NOT_RECORDED


def claim_window_interval(runs: pd.DataFrame, claim: Any, axes: list[str],
                          windows_of: Callable[[str], dict[str, Any] | None],
                          confidence: float = 0.95) -> WindowInterval:
    """`claim_pairs` then `window_interval`: the claim's interval over test windows."""
    pairs = claim_pairs(runs, claim, axes, windows_of)
    return WindowInterval(pairs) if isinstance(pairs, str) else window_interval(pairs, confidence)
