"""Bootstrap CIs, paired differences and verdicts on synthetic run tables."""
import math

import numpy as np
import pandas as pd
import pytest

from charrnn.stats import (CONTRADICTED, INCONCLUSIVE, REPRODUCED, Claim, bootstrap_ci, bootstrap_columns,
                           importance, paired_differences, pareto_front, same_value, verdict)

CLAIM = Claim(axis="input_combine", value="concat", baseline="add", metric="val_loss")
METRIC = "final_val_loss"


def table(add: list[float], concat: list[float], status: dict[tuple[str, int], str] | None = None) -> pd.DataFrame:
    """Runs of an add-vs-concat grid: seed i of each arm has the i-th listed loss (None = no run)."""
    rows = []
    for arm, losses in (("add", add), ("concat", concat)):
        for seed, loss in enumerate(losses):
            if loss is not None:
                rows.append({"input_combine": arm, "seed": str(seed), METRIC: loss,
                             "status": (status or {}).get((arm, seed), "FINISHED")})
    return pd.DataFrame(rows)


def judge(runs: pd.DataFrame, claim: Claim = CLAIM, axes=("input_combine",)):
    return verdict(runs, claim, METRIC, list(axes))


# --------------------------------------------------------------------------- intervals

def test_interval_of_no_values_is_nan_with_n_zero():
    iv = bootstrap_ci([])
    assert iv.n == 0 and math.isnan(iv.mean) and not iv.has_ci


def test_one_value_gives_a_mean_but_no_interval():
    iv = bootstrap_ci([1.5])
    assert iv.mean == 1.5 and iv.n == 1 and not iv.has_ci
    assert "no CI" in iv.fmt()


def test_interval_brackets_the_mean_and_is_reproducible():
    values = [1.0, 1.2, 0.9, 1.1, 1.05]
    a, b = bootstrap_ci(values), bootstrap_ci(values)
    assert a == b
    assert a.low <= a.mean <= a.high and a.n == 5
    assert min(values) <= a.low and a.high <= max(values)


def test_constant_values_give_a_zero_width_interval():
    iv = bootstrap_ci([2.0, 2.0, 2.0])
    assert (iv.low, iv.mean, iv.high) == (2.0, 2.0, 2.0)


def test_non_finite_values_are_dropped():
    assert bootstrap_ci([1.0, float("nan"), float("inf"), 3.0]).n == 2


def test_column_bootstrap_matches_per_column_shape():
    matrix = np.array([[1.0, 2.0, 5.0], [1.2, 2.0, 6.0], [0.8, 2.0, 7.0]])
    band = bootstrap_columns(matrix)
    assert list(band["n"]) == [3, 3, 3]
    assert np.allclose(band["mean"], [1.0, 2.0, 6.0])
    assert band.loc[1, "low"] == band.loc[1, "high"] == 2.0
    assert (band["low"] <= band["mean"]).all() and (band["mean"] <= band["high"]).all()


def test_column_bootstrap_of_one_run_has_no_band():
    band = bootstrap_columns(np.array([[1.0, 2.0]]))
    assert band["low"].isna().all() and list(band["mean"]) == [1.0, 2.0]


# --------------------------------------------------------------------------- claims

def test_claim_is_read_from_the_grid_yaml_block():
    claim = Claim.from_spec({"source": "seed 002", "metric": "val_loss",
                             "expect": {"input_combine": "concat", "better_than": "add"}})
    assert (claim.axis, claim.value, claim.baseline, claim.expected_sign) == ("input_combine", "concat", "add", -1)
    assert "lower val_loss" in claim.describe()


def test_claim_higher_is_better_flips_the_expected_sign():
    claim = Claim.from_spec({"metric": "val_accuracy", "higher_is_better": True,
                             "expect": {"hidden_init": "zero", "better_than": "epoch_zero"}})
    assert claim.expected_sign == 1


@pytest.mark.parametrize("expect", [{}, {"input_combine": "concat"}, {"a": 1, "b": 2, "better_than": 3},
                                    {"better_than": "add"}, {"better_than": float("nan")}])
def test_malformed_claim_is_rejected(expect):
    with pytest.raises(ValueError, match="better_than"):
        Claim.from_spec({"expect": expect})


THRESHOLD = Claim.from_spec({"metric": "val_loss", "expect": {"better_than": 1.6}})


def test_threshold_claim_has_no_axis_and_names_the_number():
    assert THRESHOLD.is_threshold and THRESHOLD.baseline == 1.6
    assert THRESHOLD.describe() == "val_loss is lower than 1.6"
    assert THRESHOLD.difference() == "val_loss − 1.6"


@pytest.mark.parametrize("losses,label", [([1.55, 1.57, 1.56], REPRODUCED), ([1.65, 1.63, 1.70], CONTRADICTED),
                                          ([1.55, 1.65, 1.60], INCONCLUSIVE)])
def test_threshold_verdict_follows_the_ci_of_loss_minus_threshold(losses, label):
    runs = table(add=[], concat=losses)
    result = judge(runs, THRESHOLD, axes=())
    assert result.label == label and result.effect.n == 3
    assert math.isclose(result.effect.mean, np.mean(losses) - 1.6, abs_tol=1e-12)
    assert "difference from the threshold" in result.reason


def test_threshold_verdict_averages_variants_per_seed_and_excludes_failed_runs():
    runs = table(add=[1.50, 1.50, 1.50], concat=[1.58, 1.58, None], status={("add", 2): "FAILED"})
    result = judge(runs, THRESHOLD)
    assert result.effect.n == 2 and result.n_failed == 1
    assert math.isclose(result.effect.mean, 1.54 - 1.6)


@pytest.mark.parametrize("a,b,equal", [("512", 512, True), ("0.2", 0.2, True), ("True", True, True),
                                       ("true", "True", True), ("add", "concat", False), ("1", 2, False)])
def test_param_strings_match_typed_yaml_values(a, b, equal):
    assert same_value(a, b) is equal


# --------------------------------------------------------------------------- verdicts

def test_clear_win_is_reproduced():
    result = judge(table(add=[1.80, 1.82, 1.79, 1.81], concat=[1.70, 1.71, 1.69, 1.72]))
    assert result.label == REPRODUCED
    assert result.effect.n == 4 and result.effect.high < 0


def test_clear_loss_is_contradicted():
    result = judge(table(add=[1.70, 1.71, 1.69], concat=[1.80, 1.82, 1.79]))
    assert result.label == CONTRADICTED and result.effect.low > 0


def test_overlapping_arms_are_inconclusive():
    result = judge(table(add=[1.70, 1.80, 1.75, 1.72], concat=[1.78, 1.71, 1.74, 1.76]))
    assert result.label == INCONCLUSIVE and "includes 0" in result.reason
    assert result.effect.low < 0 < result.effect.high


def test_one_seed_is_inconclusive_with_too_few_seeds():
    result = judge(table(add=[1.9], concat=[1.1]))
    assert result.label == INCONCLUSIVE and "too few seeds" in result.reason
    assert result.effect.n == 1 and not result.effect.has_ci


def test_missing_partner_runs_are_left_out_and_counted():
    # seed 2 has no add run, seed 3 no concat run: two pairs remain
    result = judge(table(add=[1.80, 1.81, None, 1.82], concat=[1.70, 1.71, 1.72, None]))
    assert result.effect.n == 2 and result.n_unpaired == 2
    assert result.label == REPRODUCED and "without a partner seed" in result.reason


def test_no_runs_of_one_arm_is_too_few_seeds():
    result = judge(table(add=[], concat=[1.70, 1.71, 1.72]))
    assert result.label == INCONCLUSIVE and "too few seeds" in result.reason and result.n_unpaired == 3


def test_failed_runs_are_excluded_and_counted():
    runs = table(add=[1.80, 1.81, 1.82], concat=[1.70, float("nan"), 1.72], status={("add", 2): "FAILED"})
    result = judge(runs)
    diffs, _, n_failed = paired_differences(runs, CLAIM, METRIC, ["input_combine"])
    assert n_failed == 2 and list(diffs.index) == ["0"]
    assert result.label == INCONCLUSIVE and "too few seeds" in result.reason and "2 failed" in result.reason


def test_failed_runs_do_not_sway_a_clear_result():
    runs = table(add=[1.80, 1.81, 1.82, 1.80], concat=[1.70, 1.71, 1.72, 9.0], status={("concat", 3): "FAILED"})
    result = judge(runs)
    assert result.label == REPRODUCED and result.n_failed == 1 and result.effect.n == 3


def test_pairs_match_the_other_axes_and_count_each_seed_once():
    rows = [{"input_combine": arm, "hidden_size": h, "seed": s, METRIC: 2.0 - 0.1 * (arm == "concat") - int(h) / 1000,
             "status": "FINISHED"} for arm in ("add", "concat") for h in ("64", "128") for s in ("0", "1", "2")]
    runs = pd.DataFrame(rows)
    diffs, unpaired, _ = paired_differences(runs, CLAIM, METRIC, ["input_combine", "hidden_size"])
    assert len(diffs) == 3 and unpaired == 0 and np.allclose(diffs, -0.1)
    assert judge(runs, axes=("input_combine", "hidden_size")).label == REPRODUCED


def test_numeric_claim_values_match_string_params():
    claim = Claim(axis="hidden_size", value=512, baseline=128)
    rows = [{"hidden_size": h, "seed": str(s), METRIC: loss + 0.001 * s, "status": "FINISHED"}
            for h, loss in (("128", 1.9), ("512", 1.6)) for s in range(3)]
    assert verdict(pd.DataFrame(rows), claim, METRIC, ["hidden_size"]).label == REPRODUCED


def test_claim_on_an_axis_the_experiment_lacks_is_inconclusive():
    result = judge(table(add=[1.8, 1.8], concat=[1.7, 1.7]), claim=Claim(axis="cell", value="gru", baseline="lstm"))
    assert result.label == INCONCLUSIVE and "not in this experiment" in result.reason


def test_higher_is_better_claim_reproduced_on_accuracy():
    claim = Claim(axis="input_combine", value="concat", baseline="add", metric="val_accuracy", higher_is_better=True)
    result = judge(table(add=[0.80, 0.81, 0.82], concat=[0.95, 0.96, 0.97]), claim=claim)
    assert result.label == REPRODUCED


# --------------------------------------------------------------------------- importance, Pareto

def test_importance_gives_the_effective_axis_the_variance():
    rng = np.random.default_rng(0)
    rows = [{"lr": lr, "cell": cell, "seed": str(s), "status": "FINISHED",
             METRIC: (0.5 if lr == "0.1" else 0.0) + 0.01 * rng.standard_normal()}
            for lr in ("0.1", "0.001") for cell in ("gru", "lstm") for s in range(4)]
    shares = importance(pd.DataFrame(rows), ["lr", "cell"], METRIC)
    assert shares["lr"].mean > 0.95 and shares["cell"].mean < 0.05
    assert shares["lr"].has_ci and shares["lr"].n == 4


def test_pareto_front_keeps_only_undominated_points():
    costs = [1.0, 2.0, 3.0, 2.5, float("nan")]
    losses = [2.0, 1.5, 1.0, 1.8, 0.5]
    assert list(pareto_front(costs, losses)) == [True, True, True, False, False]


def test_an_axis_zipped_with_the_claim_axis_does_not_block_pairing():
    runs = table(add=[1.80, 1.82, 1.79], concat=[1.70, 1.71, 1.69])
    runs["hidden_size"] = runs["input_combine"].map({"add": 220, "concat": 124})  # zip partner
    result = judge(runs, axes=("input_combine", "hidden_size"))
    assert result.label == REPRODUCED and result.effect.n == 3


def test_an_independent_second_axis_is_still_matched():
    runs = pd.concat([table(add=[1.80, 1.82, 1.79], concat=[1.70, 1.71, 1.69]).assign(layers=1),
                      table(add=[2.80, 2.82, 2.79], concat=[2.70, 2.71, 2.69]).assign(layers=2)])
    result = judge(runs, axes=("input_combine", "layers"))
    assert result.label == REPRODUCED and result.effect.n == 3
    assert result.effect.mean == pytest.approx(-0.1033, abs=1e-3)
