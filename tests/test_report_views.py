"""What the pages say, piece by piece: the number formatter, effects in the claimed direction,
the budget views' rows, curves of time-budgeted arms, the cost view's Pareto direction."""
import math

import numpy as np
import pandas as pd

from charrnn import numbers as fmt
from charrnn.report.budget_view import claim_budget, table_rows
from charrnn.report.claim_display import claim_facts, directed, display, forest_figures
from charrnn.report.plots import cost_figure, curve_band, front
from charrnn.report.tables import RunStats
from charrnn.science.budget import Point
from charrnn.science.claims import parse_claims
from charrnn.science.stats import Interval, mean_ci
from report_synthetic import SCOPE, make_curves, make_runs


def claim(expect, metric="val_loss", **extra):
    axes = {"input_combine": ("add", "concat"), "max_time_s": (0.0, 8.0)}
    return parse_claims({"claims": [{"metric": metric, "expect": expect, **SCOPE, **extra}]}, axes)[0]


COMPARISON = {"input_combine": "concat", "better_than": "add"}


def test_numbers_have_three_significant_figures_separators_and_units():
    assert fmt.number(44337.6015) == "44,300" and fmt.number(0.08235) == "0.0824" and fmt.number(-1.19) == "−1.19"
    assert fmt.number(99.96) == "100" and fmt.number(4.78e-8) == "4.78e-8" and fmt.number(0) == "0"
    assert fmt.quantity(1.0, "test_exact_match") == "100 %" and fmt.exact(0.95, "test_exact_match") == "95 %"
    assert fmt.difference(0.916, "log10_tokens_per_s") == "×8.24"
    assert fmt.difference(44337.6, "tokens_per_s") == "44,300 tokens/s"
    assert fmt.p_text(1.5e-5) == "p < 0.001" and fmt.p_text(0.0123) == "p = 0.0123" and fmt.p_text(0.0) == "p < 0.001"
    assert fmt.tick(5.0) == "5" and fmt.tick(10000.0) == "10,000"


def view(c, mean, low, high, verdict="reproduced"):
    return {"id": "c", "experiment": "e", "metric": c.metric, "effect": mean, "low": low, "high": high,
            "margin": c.margin, "verdict": verdict, "adjusted_verdict": verdict, "p": 1e-4, "p_adjusted": 1e-3,
            "mde": 0.02, "seeds_needed": 5, **claim_facts(c)}


def test_lower_is_better_effects_read_positive_as_claimed():
    c = claim(COMPARISON)                                            # lower val_loss claimed
    v = display(view(c, -0.1, -0.12, -0.08))
    assert directed(v) == (0.1, 0.08, 0.12)
    assert v["effect_shown"] == "+0.100 nats/char [0.0800 to 0.120]"
    already = {**view(c, 0.1, 0.08, 0.12), "effect_sense": "as claimed"}   # verdict rows that carry it
    assert directed(already) == (0.1, 0.08, 0.12)


def test_a_threshold_claim_shows_its_value_against_its_bar():
    c = claim({"better_than": 0.95}, metric="test_exact_match")
    v = display(view(c, 0.05, 0.05, 0.05))
    assert v["effect_shown"] == "100 % vs bar 95 % [100 to 100]"


def test_forest_plots_split_margin_claims_from_margin_free_and_threshold_ones():
    rows = [view(claim(COMPARISON), -0.1, -0.12, -0.08),
            view(claim(COMPARISON, metric="tokens_per_s"), 500.0, 400.0, 600.0),
            view(claim({"better_than": 1.9}), -0.1, -0.12, -0.08)]
    figures = forest_figures(rows)
    assert [f.key for f in figures] == ["forest", "forest-units"]


def test_a_self_check_row_has_no_forest_row():
    check = {**view(claim(COMPARISON), 3e-8, 3e-8, 3e-8), "margin": 0.0, "equivalence": True, "family": "self-check"}
    assert [f.key for f in forest_figures([check, view(claim(COMPARISON), -0.1, -0.12, -0.08)])] == ["forest"]


def point(x, mean, n, label="reproduced"):
    return Point(x, Interval(mean, mean - 0.01, mean + 0.01, n, 0.01) if n else mean_ci([]), label)


def test_budget_rows_without_data_have_no_badge_and_held_values_are_one_row():
    c = claim(COMPARISON)
    points = [point(1, math.nan, 0, "underpowered"), point(2, math.nan, 0, "underpowered"),
              point(3, -0.1, 5), point(4, -0.1, 5), point(5, -0.2, 5)]
    rows = table_rows(points, c, "step", -1)
    assert [(r["x"], r["effect"], r["label"]) for r in rows] == [
        ("step 1 – step 2", "no data", ""),
        ("step 3 – step 4", "0.100 nats/char [0.0900 to 0.110]", "reproduced"),
        ("step 5", "0.200 nats/char [0.190 to 0.210]", "reproduced")]


def test_time_budgeted_claims_are_compared_at_equal_time_and_reference_claims_not_along_the_way():
    runs = make_runs({"input_combine": ["add", "concat"]}, [0, 1, 2], {"input_combine": {"concat": -0.1}})
    runs["max_time_s"] = "8.0"
    curves = make_curves(runs)
    times = curves[curves["metric"] == "val_loss"].assign(metric="step_time_ms", value=20.0)
    curves = pd.concat([curves, times], ignore_index=True)
    view_ = claim_budget(runs, curves, claim(COMPARISON), ["input_combine"])
    assert [t["unit"] for t in view_["tables"]] == ["time"]
    assert claim_budget(runs, curves, claim({"better_than": 1.9}), ["input_combine"]) is None


def test_a_trainability_claim_has_no_budget_curve_a_share_of_the_learning_rate_grid_has_no_steps():
    runs = make_runs({"input_combine": ["add", "concat"]}, [0, 1, 2], {"input_combine": {"concat": -0.1}})
    trainability = claim(COMPARISON, method="trainability", delta=0.05, requires="any")
    assert claim_budget(runs, make_curves(runs), claim(COMPARISON), ["input_combine"]) is not None
    assert claim_budget(runs, make_curves(runs), trainability, ["input_combine"]) is None


def test_curves_keep_arms_whose_runs_stop_at_different_steps():
    binned = pd.DataFrame({"run_id": ["a"] * 4 + ["b"] * 3 + ["c"] * 2, "bin": [0, 1, 2, 3, 0, 1, 2, 0, 1],
                           "step": [0, 1, 2, 3, 0, 1, 2, 0, 1], "value": np.arange(9.0)})
    band = curve_band(binned)
    assert band["n"].tolist() == [3, 3, 2] and int(band["n"].max()) == 3


def test_cost_view_front_follows_higher_is_better():
    runs = make_runs({"input_combine": ["add", "concat"]}, [0, 1, 2])
    runs["variant"] = runs["input_combine"]
    runs["final_tokens_per_s"] = np.where(runs["input_combine"] == "concat", 2000.0, 1000.0)
    runs["wall_time_s"] = np.where(runs["input_combine"] == "concat", 5.0, 10.0)   # faster and cheaper
    figure = cost_figure(RunStats(runs), ["add", "concat"], {"add": "#000", "concat": "#111"}, "final_tokens_per_s")
    assert "higher tokens_per_s is better" in figure.caption
    speed = [mean_ci([1000.0] * 3), mean_ci([2000.0] * 3)]          # add, concat
    assert front(np.array([10.0, 5.0]), speed, "final_tokens_per_s").tolist() == [False, True]
    assert front(np.array([10.0, 5.0]), speed, "final_val_loss").tolist() == [True, True]


def test_index_groups_claims_by_what_they_test_source_first():
    from charrnn.report.pages import claim_groups
    rows = [{"id": "a", "tests": "extrapolation"}, {"id": "b", "tests": "source"}, {"id": "c", "tests": "source"}]
    assert [(title, [r["id"] for r in group]) for title, group in claim_groups(rows)] == [
        ("What the source said", ["b", "c"]), ("Our extrapolations", ["a"])]
    assert claim_groups([{"id": "a"}]) == [("", [{"id": "a"}])]
