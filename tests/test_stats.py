"""Student-t intervals, value matching, importance and Pareto fronts on synthetic run tables."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from charrnn.science.stats import columns_ci, factors, importance, mean_ci, pareto_front, same_value

METRIC = "final_val_loss"


# --------------------------------------------------------------------------- intervals

def test_interval_of_no_values_is_nan_with_n_zero():
    iv = mean_ci([])
    assert iv.n == 0 and math.isnan(iv.mean) and not iv.has_ci


def test_one_value_gives_a_mean_but_no_interval():
    iv = mean_ci([1.5])
    assert iv.mean == 1.5 and iv.n == 1 and not iv.has_ci
    assert "no CI" in iv.fmt()


def test_identical_values_say_so_instead_of_a_zero_width_interval():
    iv = mean_ci([1.0] * 5)
    assert iv.sd == 0 and iv.fmt(2) == "1.00 (all 5 values identical: no spread, no t interval)"


def test_interval_is_the_student_t_interval_with_n_minus_one_df():
    values = [1.0, 1.2, 0.9]
    iv = mean_ci(values)
    low, high = sps.t.interval(0.95, 2, loc=np.mean(values), scale=sps.sem(values))
    assert (iv.low, iv.high) == pytest.approx((low, high)) and iv.method.startswith("Student-t")
    assert iv.low < min(values) and iv.high > max(values)   # wider than the seeds' range at n = 3
    assert iv.sd == pytest.approx(np.std(values, ddof=1))


def test_constant_values_give_a_zero_width_interval():
    iv = mean_ci([2.0, 2.0, 2.0])
    assert (iv.low, iv.mean, iv.high) == (2.0, 2.0, 2.0)


def test_non_finite_values_are_dropped():
    assert mean_ci([1.0, float("nan"), float("inf"), 3.0]).n == 2


def test_curve_bands_match_the_table_interval_column_by_column():
    matrix = np.array([[1.0, 2.0, 3.0], [1.5, 2.5, 3.0], [2.0, 1.0, 3.0]])
    band = columns_ci(matrix)
    for j in range(3):
        iv = mean_ci(matrix[:, j])
        assert (band["low"][j], band["high"][j]) == pytest.approx((iv.low, iv.high))
    assert list(band["n"]) == [3, 3, 3]


def test_column_interval_of_one_run_has_no_band():
    band = columns_ci(np.array([[1.0, 2.0]]))
    assert band["low"].isna().all() and list(band["mean"]) == [1.0, 2.0]


@pytest.mark.parametrize("a,b,equal", [("512", 512, True), ("0.2", 0.2, True), ("True", True, True),
                                       ("true", "True", True), ("add", "concat", False), ("1", 2, False)])
def test_param_strings_match_typed_yaml_values(a, b, equal):
    assert same_value(a, b) is equal


# --------------------------------------------------------------------------- importance, Pareto

def test_importance_gives_the_effective_axis_the_variance():
    rng = np.random.default_rng(0)
    rows = [{"lr": lr, "cell": cell, "seed": str(s), "status": "FINISHED",
             METRIC: (0.5 if lr == "0.1" else 0.0) + 0.01 * rng.standard_normal()}
            for lr in ("0.1", "0.001") for cell in ("gru", "lstm") for s in range(4)]
    shares = importance(pd.DataFrame(rows), ["lr", "cell"], METRIC)
    assert shares["lr"].mean > 0.95 and shares["cell"].mean < 0.05
    assert shares["lr"].has_ci and shares["lr"].n == 4


def test_zipped_axes_are_one_factor_and_shares_sum_to_at_most_one():
    rng = np.random.default_rng(1)
    rows = [{"cell": cell, "hidden_size": h, "lr": lr, "seed": str(s), "status": "FINISHED",
             METRIC: {"gru": 0.0, "lstm": 0.3, "vanilla": 0.6}[cell] + 0.2 * (lr == "0.1")
             + 0.05 * rng.standard_normal()}
            for cell, h in (("vanilla", 220), ("gru", 124), ("lstm", 106))
            for lr in ("0.1", "0.01") for s in range(3)]
    runs = pd.DataFrame(rows)
    assert factors(runs, ["cell", "hidden_size", "lr"]) == {"cell+hidden_size": ["cell", "hidden_size"],
                                                             "lr": ["lr"]}
    shares = importance(runs, ["cell", "hidden_size", "lr"], METRIC)
    assert set(shares) == {"cell+hidden_size", "lr"}
    assert sum(iv.mean for iv in shares.values()) <= 1.0
    assert shares["cell+hidden_size"].mean > shares["lr"].mean > 0.05


def test_shares_of_an_unbalanced_grid_still_sum_to_at_most_one():
    rng = np.random.default_rng(2)
    rows = [{"a": a, "b": b, "seed": str(s), "status": "FINISHED", METRIC: a + 2 * b + rng.standard_normal()}
            for a in range(3) for b in range(2) for s in range(3)]
    runs = pd.DataFrame(rows).iloc[[0, 1, 2, 3, 5, 8, 9, 12, 13, 15, 16, 17]]   # unequal cells
    shares = importance(runs, ["a", "b"], METRIC)
    assert sum(iv.mean for iv in shares.values()) <= 1.0 + 1e-12


def test_pareto_front_keeps_only_undominated_points():
    costs = [1.0, 2.0, 3.0, 2.5, float("nan")]
    losses = [2.0, 1.5, 1.0, 1.8, 0.5]
    assert list(pareto_front(costs, losses)) == [True, True, True, False, False]
