"""Budget views: the claim's effect at every evaluation step and at equal wall-clock time."""
from __future__ import annotations

import pandas as pd
import pytest

from charrnn.science.verdicts import judge
from claim_support import SCOPE
from charrnn.science import budget
from charrnn.science.claims import parse_claims

AXES = {"cell": ("vanilla", "gru")}


def claim(**over):
    raw = {**SCOPE, "metric": "val_loss", "expect": {"cell": "gru", "better_than": "vanilla"}, **over}
    return parse_claims({"claims": [raw]}, AXES)[0]


def frames(seeds=(0, 1, 2, 3, 4), gru_ms=20.0, vanilla_ms=10.0):
    """gru: lower loss per step but twice as slow per step; evals every 100 steps; gru's slope
    varies by seed (mean 1.6 over seeds 0-4) so the per-seed differences have a spread."""
    runs, curves = [], []
    for cell, ms, slope in (("vanilla", vanilla_ms, 1.0), ("gru", gru_ms, 1.6)):
        for seed in seeds:
            rid = f"{cell}-{seed}"
            runs.append({"run_id": rid, "cell": cell, "seed": seed, "status": "FINISHED",
                         "variant": f"cell={cell}", "final_val_loss": 0.0})
            for step in (99, 199, 299, 399):
                spread = 0.02 * (seed - 2) if cell == "gru" else 0.0
                loss = 4.0 - (slope + spread) * (step + 1) / 400 + 0.01 * seed
                curves += [{"run_id": rid, "metric": "val_loss", "step": step, "value": loss},
                           {"run_id": rid, "metric": "step_time_ms", "step": step, "value": ms}]
    return pd.DataFrame(runs), pd.DataFrame(curves)


def test_effect_over_steps_pairs_seeds_at_every_evaluation():
    runs, curves = frames()
    points = budget.effect_over_steps(runs, curves, claim(), ["cell"])
    assert [p.x for p in points] == [99, 199, 299, 399]
    assert [round(p.effect.mean, 6) for p in points] == [-0.15, -0.3, -0.45, -0.6]
    assert all(p.effect.n == 5 and p.label == "reproduced" for p in points)


def test_elapsed_time_sums_step_times_between_evaluations():
    _, curves = frames()
    clock = budget.elapsed_seconds(curves, ["gru-0"])
    assert clock["elapsed_s"].round(6).tolist() == [2.0, 4.0, 6.0, 8.0]


def test_equal_time_reads_each_arm_at_the_same_elapsed_seconds():
    runs, curves = frames()
    points = budget.equal_time(runs, curves, claim(), ["cell"], points=3)
    # vanilla runs end at 4 s, gru's first eval is at 2 s: the grid is 2..4 s
    assert [p.x for p in points] == [2.0, 3.0, 4.0]
    # at 4 s: gru has done 200 steps (loss 3.2), vanilla 400 steps (loss 3.0): vanilla wins
    assert points[-1].effect.mean == pytest.approx(0.2)
    assert points[-1].label == "contradicted"
    assert budget.flips(points)[0][0] == 2.0


def test_a_test_metric_is_followed_on_its_val_curve_and_thresholds_have_no_equal_time_view():
    runs, curves = frames()
    assert budget.curve_metric(claim(metric="test_loss")) == "val_loss"
    threshold = parse_claims({"claims": [{**SCOPE, "metric": "val_loss", "expect": {"better_than": 3.5}}]}, AXES)[0]
    assert budget.equal_time(runs, curves, threshold, ["cell"]) == []
    over = budget.effect_over_steps(runs, curves, threshold, ["cell"])
    assert over[-1].effect.n == 5


def test_table_rows_keeps_the_last_point():
    runs, curves = frames()
    points = budget.effect_over_steps(runs, curves, claim(), ["cell"])
    assert budget.table_rows(points, 2)[-1].x == 399


def test_a_verdict_equal_at_half_and_final_steps_is_stable():
    runs, curves = frames()
    verdict = budget.with_stability([judge(runs, claim(), ["cell"])], runs, curves, ["cell"])[0]
    assert (verdict.stable, verdict.budget_note) == ("true", "")


def test_a_verdict_that_changes_after_half_the_steps_is_budget_sensitive():
    """The arms only part after step 199: underpowered at half the steps (199 of 399), reproduced
    at the end."""
    runs, curves = frames()
    early = curves["step"] <= 199
    curves.loc[early & (curves["metric"] == "val_loss"), "value"] = 4.0 + 0.003 * curves["run_id"].str[-1].astype(int)
    stable, note = budget.stability(budget.effect_over_steps(runs, curves, claim(), ["cell"]))
    assert stable == "false"
    assert note == "budget-sensitive: underpowered at step 199 (half the steps), reproduced at step 399"


def test_stability_needs_two_evaluations():
    runs, curves = frames()
    last = curves[curves["step"] == 399]
    assert budget.stability(budget.effect_over_steps(runs, last, claim(), ["cell"])) == ("not applicable", "")



def test_equality_to_final_reference_values_has_no_budget_stability():
    runs, curves = frames()
    reference = parse_claims({"claims": [{**SCOPE, "metric": "val_loss", "margin": 0.5,
                                          "expect": {"equivalent_to": 2.5}}]}, AXES)[0]
    verdict = budget.with_stability([judge(runs, reference, ["cell"])], runs, curves, ["cell"])[0]
    assert (verdict.stable, verdict.budget_note) == (budget.STABLE_NA, "")


def test_a_log10_claim_follows_the_log10_of_its_curve():
    runs, curves = frames()
    speed = curves[curves["metric"] == "step_time_ms"].assign(metric="tokens_per_s")
    speed["value"] = 1e4 * (1 + (speed["run_id"].str.startswith("gru")))      # gru twice as fast
    fast = claim(metric="log10_tokens_per_s")
    (last,) = budget.effect_over_steps(runs, pd.concat([curves, speed]), fast, ["cell"])[-1:]
    assert last.effect.mean == pytest.approx(0.30103, abs=1e-4)                # log10(2), not 10,000
