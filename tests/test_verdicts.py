"""Verdicts: calibration by simulation (driving the statistics core, `estimates`, with arrays), the
five labels, manipulation checks, Holm."""
import math

import numpy as np
import pandas as pd
import pytest

from charrnn.science.claims import COMPARISON, EQUAL_TO_REFERENCE, EQUIVALENCE, THRESHOLD, Claim
from charrnn.science import estimates
from charrnn.science.estimates import mean_ci
from charrnn.science.tested import CONVERGED_BOUND
from charrnn.science.verdicts import (CONTRADICTED, EQUIVALENT, NOT_TESTED, REPRODUCED, UNDERPOWERED, differences,
                                      holm, judge, power_numbers)


def decide(interval, claim):
    """The core's decision for a claim's hypothesis (arrays in, a label out)."""
    return estimates.decide(interval, claim.hypothesis)

METRIC = "final_val_loss"
CLAIM = Claim("concat_vs_add", "val_loss", COMPARISON, "input_combine", "concat", "add", margin=0.01)
THRESHOLD_CLAIM = Claim("vs_1.6", "val_loss", THRESHOLD, None, None, 1.6, margin=0.01)


def table(add, concat, status=None, column=METRIC) -> pd.DataFrame:
    """Runs of an add-vs-concat grid: seed i of each arm has the i-th listed value (None = no run)."""
    rows = []
    for arm, values in (("add", add), ("concat", concat)):
        for seed, value in enumerate(values):
            if value is not None:
                rows.append({"input_combine": arm, "seed": str(seed), column: value,
                             "status": (status or {}).get((arm, seed), "FINISHED")})
    return pd.DataFrame(rows)


def run_judge(runs, claim=CLAIM, axes=("input_combine",)):
    return judge(runs, claim, list(axes))


# --------------------------------------------------------------------------- calibration

@pytest.mark.parametrize("n", [3, 5, 10])
def test_simulated_calibration_at_small_n(n):
    """Normal data, 4,000 replicates per n: the 95 % interval covers the true mean 93-97 % of the
    time; a null effect is called reproduced <= 3 %; a true effect equal to the margin is called
    equivalent <= 6 %."""
    rng = np.random.default_rng(20240 + n)
    reps, sd, margin = 4000, 0.05, CLAIM.margin
    covered = false_reproduced = false_equivalent = 0
    for _ in range(reps):
        null = rng.normal(0.0, sd, n)
        iv = mean_ci(null)
        covered += iv.low <= 0.0 <= iv.high
        false_reproduced += decide(iv, CLAIM)[0] == REPRODUCED
        at_margin = rng.normal(margin, sd / 10, n)      # sd small enough that equivalence is reachable
        false_equivalent += decide(mean_ci(at_margin), CLAIM)[0] == EQUIVALENT
    assert 0.93 <= covered / reps <= 0.97
    assert false_reproduced / reps <= 0.03
    assert false_equivalent / reps <= 0.06


@pytest.mark.parametrize("n", [3, 5, 10])
def test_simulated_claimed_size_exactly_true_is_rarely_called_either_way(n):
    """A true effect equal to the claimed size (`at_least`): reproduced ≤ 3 % and contradicted ≤ 3 %
    of 4,000 replicates (each side is a one-sided test at 2.5 %)."""
    rng = np.random.default_rng(30240 + n)
    claim = Claim("by_0.1", "val_loss", COMPARISON, "input_combine", "concat", "add", 0.0, at_least=0.1)
    labels = [decide(mean_ci(rng.normal(-0.1, 0.05, n)), claim)[0] for _ in range(4000)]
    assert labels.count(REPRODUCED) / 4000 <= 0.03 and labels.count(CONTRADICTED) / 4000 <= 0.03
    assert EQUIVALENT not in labels


def test_simulated_true_effect_is_usually_found_at_the_stated_mde():
    """At a true effect equal to the printed MDE, about 80 % of replicates reproduce."""
    rng = np.random.default_rng(7)
    d = mean_ci(rng.normal(0, 0.05, 5))
    mde, _, _ = power_numbers(d, CLAIM, 0.05)
    hits = sum(decide(mean_ci(rng.normal(-mde, d.sd, 5)), CLAIM)[0] == REPRODUCED for _ in range(2000))
    assert 0.70 <= hits / 2000 <= 0.90


# --------------------------------------------------------------------------- labels

def test_clear_win_beyond_the_margin_is_reproduced():
    result = run_judge(table(add=[1.80, 1.82, 1.79, 1.81, 1.80], concat=[1.70, 1.71, 1.69, 1.72, 1.70]))
    assert result.label == REPRODUCED and result.effect.n == 5 and result.effect.high < -CLAIM.margin
    assert result.p < 0.05


def test_clear_loss_is_contradicted():
    result = run_judge(table(add=[1.70, 1.71, 1.69], concat=[1.80, 1.82, 1.79]))
    assert result.label == CONTRADICTED and result.effect.low > CLAIM.margin


def test_a_tiny_difference_inside_the_margin_is_equivalent():
    result = run_judge(table(add=[1.700, 1.710, 1.690, 1.705, 1.695], concat=[1.701, 1.711, 1.691, 1.706, 1.696]))
    assert result.label == EQUIVALENT and -0.01 < result.effect.low and result.effect.high < 0.01


def test_overlapping_arms_are_underpowered_with_an_mde_and_seeds_needed():
    result = run_judge(table(add=[1.70, 1.80, 1.75, 1.72], concat=[1.66, 1.71, 1.70, 1.70]))
    assert result.label == UNDERPOWERED
    assert result.mde > abs(result.effect.mean) and result.seeds_needed > 4
    assert "seeds" in result.mde_text()


def test_one_seed_is_underpowered():
    result = run_judge(table(add=[1.9], concat=[1.1]))
    assert result.label == UNDERPOWERED and "interval needs 2" in result.reason


def test_bit_identical_arms_are_not_tested():
    result = run_judge(table(add=[1.70, 1.71, 1.69], concat=[1.70, 1.71, 1.69]))
    assert result.label == NOT_TESTED and "bit-identical" in result.reason


def test_clipping_that_never_engaged_is_not_tested():
    claim = Claim("clip", "val_loss", COMPARISON, "grad_clip", 5.0, 0.0, margin=0.01)
    runs = table(add=[1.80, 1.81, 1.82], concat=[1.70, 1.715, 1.72])
    runs["grad_clip"] = runs.pop("input_combine").map({"add": 0.0, "concat": 5.0})
    assert "not logged" in judge(runs, claim, ["grad_clip"]).reason
    runs["final_clip_fraction"] = 0.0
    result = judge(runs, claim, ["grad_clip"])
    assert result.label == NOT_TESTED and "never engaged" in result.reason
    runs.loc[runs["grad_clip"] == 5.0, "final_clip_fraction"] = 0.2
    assert judge(runs, claim, ["grad_clip"]).label == REPRODUCED


def test_both_arms_at_the_accuracy_ceiling_are_not_tested():
    claim = Claim("acc", "val_exact_match", COMPARISON, "input_combine", "concat", "add", 0.01, (), True)
    runs = table(add=[1.0, 1.0, 1.0], concat=[1.0, 1.0, 1.0], column="final_val_exact_match")
    result = judge(runs, claim, ["input_combine"])
    assert result.label == NOT_TESTED and "ceiling (1)" in result.reason


def test_an_unlogged_metric_is_not_tested():
    claim = Claim("acc", "val_accuracy", COMPARISON, "input_combine", "concat", "add", 0.01, (), True)
    assert run_judge(table(add=[1.8, 1.8], concat=[1.7, 1.7]), claim).label == NOT_TESTED


def test_equivalence_claim_is_equivalent_or_contradicted():
    claim = Claim("eq", "val_loss", EQUIVALENCE, "input_combine", "concat", "add", margin=0.02)
    close = table(add=[1.70, 1.71, 1.69, 1.70], concat=[1.701, 1.709, 1.692, 1.70])
    far = table(add=[1.70, 1.71, 1.69], concat=[1.80, 1.82, 1.79])
    assert run_judge(close, claim).label == EQUIVALENT
    assert run_judge(far, claim).label == CONTRADICTED


def test_where_restricts_the_judged_runs():
    runs = pd.concat([table(add=[1.80, 1.82, 1.79], concat=[1.70, 1.71, 1.69]).assign(layers=1),
                      table(add=[2.80, 2.81, 2.79], concat=[2.80, 2.81, 2.80]).assign(layers=4)])
    claim = Claim("l1", "val_loss", COMPARISON, "input_combine", "concat", "add", 0.01, (("layers", 1),))
    result = judge(runs, claim, ["input_combine", "layers"])
    assert result.label == REPRODUCED and result.effect.mean == pytest.approx(-0.1033, abs=1e-3)


@pytest.mark.parametrize("losses,label", [([1.55, 1.57, 1.56], REPRODUCED), ([1.65, 1.66, 1.67], CONTRADICTED),
                                          ([1.55, 1.65, 1.60], UNDERPOWERED)])
def test_threshold_verdict_follows_the_interval_of_metric_minus_number(losses, label):
    result = run_judge(table(add=[], concat=losses), THRESHOLD_CLAIM, axes=())
    assert result.label == label and result.effect.n == 3
    assert math.isclose(result.effect.mean, np.mean(losses) - 1.6, abs_tol=1e-12)


@pytest.mark.parametrize("losses,label", [([1.600, 1.602, 1.598, 1.601], EQUIVALENT),
                                          ([1.65, 1.66, 1.67], CONTRADICTED), ([1.55, 1.65, 1.60], UNDERPOWERED)])
def test_equivalence_to_a_number_needs_the_whole_interval_within_the_margin(losses, label):
    claim = Claim("eq_1.6", "val_loss", EQUAL_TO_REFERENCE, None, None, 1.6, margin=0.01)
    assert run_judge(table(add=[], concat=losses), claim, axes=()).label == label


@pytest.mark.parametrize("concat,label", [([1.70, 1.69, 1.705, 1.70], REPRODUCED),      # 0.10 better
                                          ([1.78, 1.781, 1.779, 1.78], CONTRADICTED),  # better, by far less
                                          ([1.70, 1.80, 1.72, 1.78], UNDERPOWERED)])
def test_a_claimed_effect_size_is_reproduced_beyond_it_and_contradicted_when_the_interval_falls_short(
        concat, label):
    claim = Claim("by_0.05", "val_loss", COMPARISON, "input_combine", "concat", "add", 0.0, at_least=0.05)
    result = run_judge(table(add=[1.80, 1.80, 1.80, 1.80], concat=concat), claim)
    assert result.label == label and "claimed effect 0.05" in result.reason


def test_missing_partners_and_failed_runs_are_left_out_and_counted():
    runs = table(add=[1.80, 1.81, None, 1.82, 1.80], concat=[1.70, 1.71, 1.72, None, float("nan")],
                 status={("add", 1): "FAILED"})
    diffs, _, n_unpaired, n_failed = differences(runs, CLAIM, ["input_combine"])
    assert list(diffs.index) == ["0"] and n_failed == 2 and n_unpaired == 4   # seeds 1, 2, 3, 4


def test_an_axis_zipped_with_the_claim_axis_does_not_block_pairing():
    runs = table(add=[1.80, 1.82, 1.79], concat=[1.70, 1.71, 1.69])
    runs["hidden_size"] = runs["input_combine"].map({"add": 220, "concat": 124})  # zip partner
    result = run_judge(runs, axes=("input_combine", "hidden_size"))
    assert result.label == REPRODUCED and result.effect.n == 3


def test_claim_on_an_axis_the_experiment_lacks_is_not_tested():
    claim = Claim("c", "val_loss", COMPARISON, "cell", "gru", "lstm", 0.01)
    assert run_judge(table(add=[1.8, 1.8], concat=[1.7, 1.7]), claim).label == NOT_TESTED


# --------------------------------------------------------------------------- zero spread, references, learning

def test_zero_spread_is_decided_by_the_sign_test_never_p_zero():
    """All seeds identical: no t interval; p is the sign test's 2·0.5ⁿ (5 seeds: 0.0625, not
    decided; 6 seeds: 0.03125, decided) and the reason says so."""
    five = run_judge(table(add=[], concat=[1.5] * 5), THRESHOLD_CLAIM, axes=())
    assert five.label == UNDERPOWERED and five.p == pytest.approx(0.0625) and five.seeds_needed == 6
    assert five.reason.startswith("all 5 seeds identical (-0.1)")
    six = run_judge(table(add=[], concat=[1.5] * 6), THRESHOLD_CLAIM, axes=())
    assert six.label == REPRODUCED and six.p == pytest.approx(0.03125)


def test_per_seed_reference_pairs_each_seed_with_its_own_value():
    """Each seed's run minus that seed's reference: a harness equal to the reference seed by seed
    (a spread of 0.02 across seeds, identical per seed up to 1e-4) is equivalent within ±0.01; a
    seed without a reference counts as unpaired."""
    refs = (("0", 1.80), ("1", 1.82), ("2", 1.79), ("3", 1.81), ("4", 1.80))
    claim = Claim("eq_ref", "val_loss", EQUAL_TO_REFERENCE, None, None, refs, margin=0.01)
    harness = [v + e for (_, v), e in zip(refs, (1e-4, -1e-4, 2e-4, 0.0, -2e-4))] + [1.9]
    verdict = run_judge(table(add=[], concat=harness), claim, axes=())
    assert verdict.label == EQUIVALENT and verdict.effect.n == 5 and verdict.n_unpaired == 1
    assert 0.0 <= verdict.tost_power <= 1.0 and "TOST power" in verdict.mde_text()


def test_an_arm_claimed_worse_that_does_not_learn_is_the_effect_and_is_judged():
    runs = table(add=[2.0, 2.01, 2.02], concat=[1.5, 1.51, 1.52]).assign(baseline_val_loss=1.9)
    verdict = run_judge(runs)
    assert verdict.label == REPRODUCED and verdict.learned == "the arm claimed worse did not learn"
    assert verdict.reason.startswith("input_combine=add did not learn")
    assert "that is the claimed effect" in verdict.reason


def test_an_arm_claimed_better_that_does_not_beat_its_baseline_is_not_tested():
    runs = table(add=[1.5, 1.51, 1.52], concat=[2.0, 2.01, 2.02]).assign(baseline_val_loss=1.9)
    verdict = run_judge(runs)
    assert verdict.label == NOT_TESTED and verdict.learned == "false"
    assert verdict.reason.startswith("the arm claimed better did not learn: input_combine=concat did not learn")
    neither = run_judge(runs.assign(baseline_val_loss=1.0))
    assert neither.label == NOT_TESTED and neither.reason.startswith("neither arm learned")
    learned = run_judge(runs.assign(baseline_val_loss=2.5))
    assert learned.label == CONTRADICTED and learned.learned == "true"
    assert run_judge(table([2.0, 2.1, 2.2], [1.5, 1.55, 1.6])).learned == "baseline not logged"


def test_speed_claims_have_no_learning_check():
    claim = Claim("fast", "tokens_per_s", COMPARISON, "input_combine", "concat", "add", 0.0, (), True)
    runs = table(add=[100.0, 101.0, 99.0], concat=[200.0, 210.0, 190.0], column="final_tokens_per_s")
    assert run_judge(runs, claim).learned == "not applicable"


# --------------------------------------------------------------------------- Holm

def test_holm_keeps_strong_decisions_and_demotes_marginal_ones():
    strong = run_judge(table(add=[1.80, 1.82, 1.79, 1.81, 1.80], concat=[1.70, 1.71, 1.69, 1.72, 1.70]))
    marginal = run_judge(table(add=[1.80, 1.80, 1.80], concat=[1.735, 1.75, 1.765]))
    weak = run_judge(table(add=[1.70, 1.80, 1.75, 1.72], concat=[1.66, 1.71, 1.70, 1.70]))
    untested = run_judge(table(add=[1.7, 1.7], concat=[1.7, 1.7]))
    assert marginal.label == REPRODUCED and 0.025 < marginal.p < 0.05 and strong.p < 0.01
    adjusted = holm([strong, marginal, weak, untested])
    assert [v.adjusted for v in adjusted] == [REPRODUCED, UNDERPOWERED, UNDERPOWERED, NOT_TESTED]
    assert [v.label for v in adjusted] == [REPRODUCED, REPRODUCED, UNDERPOWERED, NOT_TESTED]
    assert adjusted[1].p_adjusted == pytest.approx(max(3 * strong.p, 2 * marginal.p))
    assert math.isnan(adjusted[3].p_adjusted)


# --------------------------------------------------------------------------- convergence

CONVERGED_CLAIM = Claim("conv", "val_loss", COMPARISON, "input_combine", "concat", "add", 0.01, requires="converged")


def test_a_claim_requiring_convergence_is_not_tested_on_runs_that_hit_the_cap():
    runs = table(add=[2.0, 2.01, 2.02, 2.0, 2.01], concat=[1.5, 1.51, 1.52, 1.5, 1.51])
    capped = run_judge(runs.assign(converged=[1, 1, 0, 1, 1, 1, 1, 1, 0, 1]), CONVERGED_CLAIM)
    assert capped.label == NOT_TESTED and capped.converged == "false"
    assert capped.reason == "2 of 10 runs stopped at the step cap before converging"
    done = run_judge(runs.assign(converged=1), CONVERGED_CLAIM)
    assert done.label == REPRODUCED and done.converged == "true"


def test_only_the_better_arm_capped_gives_a_lower_bound_that_can_reproduce_and_nothing_else():
    capped_better = [1, 1, 1, 1, 1, 0, 0, 1, 0, 0]            # add (claimed worse) converged; concat capped
    better = table(add=[2.0, 2.01, 2.02, 2.0, 2.01], concat=[1.5, 1.51, 1.52, 1.5, 1.51])
    v = run_judge(better.assign(converged=capped_better), CONVERGED_CLAIM)
    assert v.label == REPRODUCED and v.converged == CONVERGED_BOUND
    assert v.reason.startswith("4 of 5 runs of the arm claimed better stopped at the step cap")
    assert "lower bound" in v.reason
    worse = table(add=[1.5, 1.51, 1.52, 1.5, 1.51], concat=[2.0, 2.01, 2.02, 2.0, 2.01])
    v = run_judge(worse.assign(converged=capped_better), CONVERGED_CLAIM)
    assert v.label == NOT_TESTED and v.reason.endswith("the bound decides only a reproduced effect, and this one is "
                                                       "contradicted")
    worse_arm_capped = [0, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    assert run_judge(better.assign(converged=worse_arm_capped), CONVERGED_CLAIM).label == NOT_TESTED


def test_convergence_not_logged_cannot_be_checked_and_says_so():
    runs = table(add=[2.0, 2.01, 2.02], concat=[1.5, 1.51, 1.52])
    v = run_judge(runs, CONVERGED_CLAIM)
    assert v.label == REPRODUCED and v.converged == "not logged" and v.reason.startswith("convergence not logged")
    assert run_judge(runs).converged == "not required"
