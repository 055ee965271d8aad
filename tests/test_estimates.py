"""The statistics core (`charrnn.science.estimates`): arrays in, intervals, p-values and labels out.
Simulations drive the core directly; each test names the mutation it catches."""
import ast
import math
from pathlib import Path

import numpy as np
import pytest

from charrnn.science import estimates as est
from charrnn.science.estimates import Hypothesis

LOWER = Hypothesis(margin=0.01, sign=-1)
SAME = Hypothesis(margin=0.01, equivalence=True)


def test_the_core_imports_neither_pandas_nor_mlflow_nor_the_claim_parser():
    tree = ast.parse(Path(est.__file__).read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert names <= {"__future__", "math", "dataclasses", "typing", "numpy", "scipy"}


def test_the_t_interval_covers_the_true_mean_95_percent_of_the_time_at_n_5():
    """Mutation caught: a normal (z) quantile instead of Student-t (covers ~0.88 at n = 5)."""
    rng = np.random.default_rng(0)
    cover = np.mean([(lambda i: i.low <= 0.3 <= i.high)(est.mean_ci(rng.normal(0.3, 1.0, 5)))
                     for _ in range(4000)])
    assert 0.94 <= cover <= 0.96


@pytest.mark.parametrize("sd,n,margin", [(0.02, 5, 0.02), (0.02, 8, 0.02), (0.02, 5, 0.03), (0.05, 12, 0.05)])
def test_exact_tost_power_lies_within_two_points_of_simulation(sd, n, margin):
    """Mutation caught: the Bonferroni lower bound 2·P(T > t) − 1 (the earlier formula) is 0.12
    below simulation at (0.02, 5, 0.02) and 0.09 at (0.02, 5, 0.03)."""
    exact = est.tost_power(sd, n, margin)
    simulated = est.tost_power_simulated(sd, n, margin, reps=40_000)
    assert abs(exact - simulated) <= 0.02, (exact, simulated)


def test_tost_power_off_zero_matches_simulation_too():
    exact = est.tost_power(0.02, 8, 0.03, delta=0.01)
    assert abs(exact - est.tost_power_simulated(0.02, 8, 0.03, delta=0.01, reps=40_000)) <= 0.02


def test_seeds_needed_grow_with_the_holm_family():
    """`seeds_to_decide` at α/m: a family of 16 needs more seeds than a lone claim."""
    alone = est.seeds_to_decide(-0.03, 0.02, LOWER, 0.05)
    family = est.seeds_to_decide(-0.03, 0.02, LOWER, 0.05 / 16)
    assert alone is not None and family is not None and family > alone
    assert est.seeds_to_decide(0.0, 0.0, LOWER, 0.05 / 5) == 8     # 2·0.5ⁿ < 0.01 from n = 8


def test_holm_within_each_family_differs_from_one_family():
    """Mutation caught: `holm_by_family` ignoring families (one Holm over all rows)."""
    ps = [0.01, 0.02, 0.001, 0.03]
    families = ["source", "source", "extrapolation", "extrapolation"]
    split = est.holm_by_family(ps, families)
    assert split == pytest.approx([0.02, 0.02, 0.002, 0.03])
    assert est.holm_p(ps) == pytest.approx([0.03, 0.04, 0.004, 0.04])
    assert math.isnan(est.holm_by_family([0.01], [None])[0])


def test_smallest_p_of_each_design():
    assert est.smallest_p(est.SIGN, 6) == pytest.approx(2 / 64)
    assert est.smallest_p(est.BINOMIAL, 6, items=100, bar=0.96) == pytest.approx(2 * 0.96 ** 600)
    assert est.smallest_p(est.T_FREE, 2) == 0.0 and est.smallest_p(est.T_FREE, 1) == 1.0
    planned = est.smallest_p(est.T_PLANNED, 5, h=LOWER, sd=0.02, effect=0.05)
    assert 0 < planned < 0.05
    assert est.decidable_seeds(lambda n: est.smallest_p(est.SIGN, n), family=5) == 8


def test_a_binomial_bar_over_pooled_items():
    assert est.binomial_threshold_p(600, 600, 0.96) == pytest.approx(2 * 0.96 ** 600)
    assert est.binomial_threshold_p(96, 100, 0.96) > 0.5
    low, high = est.binomial_interval(100, 100)
    assert 0.96 < low < 1.0 and high == 1.0


def test_a_self_check_tolerance_catches_a_1e_3_perturbation():
    """Mutation caught: a tolerance of 1e-2 (the old equivalence margin) lets 1e-3 pass."""
    ref = np.array([1.8247, 1.8224, 1.8162, 1.8220, 1.8080])
    assert est.self_check(ref + 9e-5, ref, rtol=1e-4).passed
    bad = ref.copy()
    bad[2] += 1e-3
    check = est.self_check(bad, ref, rtol=1e-4)
    assert not check.passed and check.worst == pytest.approx(1e-3)
    assert not est.self_check(np.array([np.nan]), np.array([1.0]), rtol=1e-5).passed


@pytest.mark.parametrize("better,worse,tested,note", [
    (True, True, True, ""),
    (True, False, True, "that is the claimed effect"),
    (False, True, False, "the arm claimed better did not learn"),
    (False, False, False, "neither arm learned"),
    (None, True, True, ""),
])
def test_the_learning_check_on_each_case(better, worse, tested, note):
    """Mutation caught: the symmetric rule (not tested when either arm failed) fails row 2."""
    got = est.learning_case(better, worse)
    assert got[0] is tested and note in got[1] and (note or got[1] == "")


def test_trainability_fraction_on_a_known_grid():
    losses = np.array([3.0, 1.52, 1.50, 1.55, 1.60, np.inf, 4.1])
    assert est.trainability_fraction(losses, 0.05) == pytest.approx(3 / 7)
    assert est.trainability_fraction(losses, 0.2) == pytest.approx(4 / 7)
    assert math.isnan(est.trainability_fraction(np.array([np.nan]), 0.1))
    assert est.log_grid_span([1e-4, 1e-3, 1e-2]) == (3, pytest.approx(2.0))
