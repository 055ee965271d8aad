"""The interval over test windows: a paired bootstrap whose width matches theory on synthetic
windows, pairs arms (and seeds) by window, and reproduces the verdict's point estimate."""
import math

import numpy as np
import pandas as pd
import pytest

from charrnn.science.claims import COMPARISON, THRESHOLD, Claim
from charrnn.science.verdicts import judge
from charrnn.science.window_uncertainty import (NEITHER, NO_SEED_INTERVAL, NOT_APPLICABLE, NOT_RECORDED, SEEDS,
                                                WINDOWS, Pair, WindowInterval, Windows, claim_window_interval,
                                                dominant, window_interval)

Z975 = 1.959964
W = 400


def unit_windows(losses) -> Windows:
    """One token per window: the metric is the plain mean of the window losses."""
    losses = np.asarray(losses, dtype=float)
    return Windows(losses, np.ones_like(losses))


def test_half_width_of_one_pair_is_the_normal_theory_of_the_mean_window_difference():
    rng = np.random.default_rng(1)
    base = rng.normal(2.0, 1.0, W)                  # windows differ a lot in difficulty ...
    delta = rng.normal(-0.1, 0.05, W)               # ... the arms differ little, window by window
    found = window_interval([Pair("0", unit_windows(base + delta), unit_windows(base))])
    theory = Z975 * delta.std() / math.sqrt(W)      # the bootstrap's sd of a mean: sd (ddof 0) / √W
    assert found.half_width == pytest.approx(theory, rel=0.06)
    assert found.estimate == pytest.approx(delta.mean())
    # unpaired resampling would see the window difficulty (sd 1): √2 · 1 / 0.05 ≈ 28× wider
    assert found.half_width < 2 * theory


def test_every_seed_resamples_the_same_test_windows():
    """Seeds share the test set: a window hard for one seed's difference is drawn for all, so the
    mean over 4 seeds is no narrower than one seed (independent draws per seed would halve it)."""
    rng = np.random.default_rng(2)
    base, delta = rng.normal(2.0, 1.0, W), rng.normal(0.0, 0.05, W)
    pairs = [Pair(str(s), unit_windows(base + delta + 0.01 * s), unit_windows(base)) for s in range(4)]
    found = window_interval(pairs)
    assert found.half_width == pytest.approx(Z975 * delta.std() / math.sqrt(W), rel=0.06)


def test_windows_of_unequal_length_are_weighted_by_their_tokens():
    value = Windows(np.array([1.0, 30.0]), np.array([1.0, 10.0]))   # means 1 and 3 → 31 / 11
    base = Windows(np.array([2.0, 20.0]), np.array([1.0, 10.0]))    # 22 / 11
    found = window_interval([Pair("0", value, base)], n_boot=200)
    assert found.estimate == pytest.approx(9 / 11)
    assert found.n_windows == 2


def test_a_reference_number_leaves_the_metric_resampled_alone():
    rng = np.random.default_rng(3)
    acc = rng.integers(0, 2, W).astype(float)
    found = window_interval([Pair(str(s), unit_windows(acc), None, 0.5) for s in range(3)])
    assert found.estimate == pytest.approx(acc.mean() - 0.5)
    assert found.half_width == pytest.approx(Z975 * acc.std() / math.sqrt(W), rel=0.06)


def test_the_interval_covers_the_population_effect_at_its_level():
    """Repeated test sets drawn from one population of windows: the 95 % interval over windows covers
    the population's mean difference in about 95 % of them."""
    rng = np.random.default_rng(4)
    population_base, population_delta = rng.gamma(2.0, 1.0, 20_000), rng.normal(0.05, 0.2, 20_000)
    truth, hits, n_sets = population_delta.mean(), 0, 200
    for i in range(n_sets):
        idx = rng.integers(0, population_base.size, 100)
        base = population_base[idx]
        found = window_interval([Pair("0", unit_windows(base + population_delta[idx]), unit_windows(base))],
                                n_boot=1000, seed=i)
        hits += found.low <= truth <= found.high
    assert 0.90 <= hits / n_sets <= 0.99


@pytest.mark.parametrize("seed_half, window_half, expected", [(0.1, 0.05, SEEDS), (0.02, 0.05, WINDOWS),
                                                              (0.0, 0.0, NEITHER)])
def test_dominant_names_the_wider_interval(seed_half, window_half, expected):
    windows = WindowInterval("recorded", 0.0, -window_half, window_half, 10)
    assert dominant(-seed_half, seed_half, windows) == expected


def test_dominant_passes_on_why_there_is_no_comparison():
    assert dominant(-1, 1, WindowInterval(NOT_RECORDED)) == NOT_RECORDED
    assert dominant(math.nan, math.nan, WindowInterval("recorded", 0, -1, 1, 3)) == NO_SEED_INTERVAL


# --------------------------------------------------------------------------- a claim over a runs frame

CLAIM = Claim("concat_vs_add", "test_loss", COMPARISON, "input_combine", "concat", "add", margin=0.01)


def stored_runs(seeds: int = 5) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Runs of both arms with their logged metric and `test_windows.json`, windows of unequal tokens."""
    rng = np.random.default_rng(5)
    tokens = rng.integers(5, 20, 30).astype(float)
    difficulty = rng.normal(2.0, 0.5, 30)
    rows, artifacts = [], {}
    for seed in range(seeds):
        for arm, shift in (("add", 0.0), ("concat", -0.05)):
            losses = (difficulty + shift + rng.normal(0, 0.02, 30) + 0.01 * seed) * tokens
            run_id = f"{arm}{seed}"
            artifacts[run_id] = {"test": {"loss_sum": losses.tolist(), "tokens": tokens.tolist()}}
            rows.append({"run_id": run_id, "input_combine": arm, "seed": str(seed), "status": "FINISHED",
                         "final_test_loss": losses.sum() / tokens.sum()})
    return pd.DataFrame(rows), artifacts


def test_a_claims_window_estimate_is_its_verdicts_effect():
    runs, artifacts = stored_runs()
    found = claim_window_interval(runs, CLAIM, ["input_combine"], artifacts.get)
    assert found.status == "recorded" and found.n_windows == 30
    assert found.estimate == pytest.approx(judge(runs, CLAIM, ["input_combine"]).effect.mean, rel=1e-12)
    assert found.low < found.estimate < found.high


def test_a_run_without_its_windows_makes_the_claim_not_recorded():
    runs, artifacts = stored_runs()
    del artifacts["concat3"]
    assert claim_window_interval(runs, CLAIM, ["input_combine"], artifacts.get).status == NOT_RECORDED


def test_a_metric_not_scored_on_test_windows_is_not_applicable():
    runs, artifacts = stored_runs()
    speed = Claim("speed", "tokens_per_s", COMPARISON, "input_combine", "concat", "add", margin=0.01)
    assert claim_window_interval(runs, speed, ["input_combine"], artifacts.get).status == NOT_APPLICABLE


def test_a_threshold_claim_resamples_each_seeds_windows_against_the_bar():
    runs, artifacts = stored_runs()
    claim = Claim("vs_2", "test_loss", THRESHOLD, None, None, 2.0, margin=0.01)
    found = claim_window_interval(runs, claim, [], artifacts.get)
    assert found.estimate == pytest.approx(judge(runs, claim, []).effect.mean, rel=1e-12)
