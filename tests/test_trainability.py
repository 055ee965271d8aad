"""Trainability as Collins et al. measured it: per arm and seed, the share of a log-spaced
learning-rate grid whose loss comes within δ of that arm's best, compared between arms by seed."""
import numpy as np
import pandas as pd
import pytest

from charrnn.science import trainability
from charrnn.science.claims import ClaimError, parse_claims
from charrnn.science.verdicts import judge_claims

LRS = list(np.logspace(-4, -1, 8))          # 8 values over 3 decades
GRU_WITHIN, VANILLA_WITHIN = [5, 6, 5, 4, 6], [2, 2, 3, 1, 2]


def claim_raw(**extra) -> dict:
    return {"id": "gru_easier", "tests": "source", "regime": "r", "metric": "val_loss", "requires": "any",
            "expect": {"cell": "gru", "better_than": "vanilla"}, "method": "trainability", "delta": 0.05, **extra}


def claim(**extra):
    (c,) = parse_claims({"claims": [claim_raw(**extra)]}, {"cell": ("gru", "vanilla")})
    return c


def runs(lrs=LRS, gru=GRU_WITHIN, vanilla=VANILLA_WITHIN, failed=()) -> pd.DataFrame:
    """Per seed and arm: `k` learning rates land within 0.05 of the best (1.5 + seed/100), the
    rest 0.3 to 1.0 above it; a (cell, seed, lr index) in `failed` is a FAILED run."""
    rows = []
    for cell, within in (("gru", gru), ("vanilla", vanilla)):
        for seed, k in enumerate(within):
            best = 1.5 + seed / 100
            for i, lr in enumerate(lrs):
                loss = best + (0.01 * i if i < k else 0.3 + 0.1 * i)
                status = "FAILED" if (cell, seed, i) in failed else "FINISHED"
                rows.append({"cell": cell, "seed": str(seed), "lr": lr, "status": status, "final_val_loss": loss,
                             "variant": f"cell={cell}"})
    return pd.DataFrame(rows)


def test_fractions_on_a_synthetic_grid_with_a_known_answer():
    frame = runs()
    gru = trainability.fractions(frame[frame["cell"] == "gru"], claim())
    assert list(gru) == pytest.approx([k / 8 for k in GRU_WITHIN])


def test_a_failed_run_counts_as_outside():
    frame = runs(failed={("gru", 0, 1)})
    gru = trainability.fractions(frame[frame["cell"] == "gru"], claim())
    assert gru.iloc[0] == pytest.approx(4 / 8)


def test_the_claim_judges_the_difference_of_fractions_over_every_tuned_run():
    """Judged although tuning selects one run per arm and seed: trainability reads every run."""
    (v,) = judge_claims(runs(), [claim()], ["cell"], tune={"lr": LRS})
    expected = np.mean(GRU_WITHIN) / 8 - np.mean(VANILLA_WITHIN) / 8
    assert v.label == "reproduced" and v.effect.mean == pytest.approx(expected) and v.effect.n == 5
    assert "within δ = 0.05" in v.reason and "8 learning rates over 3 decades" in v.reason


def test_the_difference_a_trainability_claim_prints_is_of_trainable_fractions_not_losses():
    assert claim().difference() == "trainable_fraction(cell=gru) − trainable_fraction(cell=vanilla)"


def test_equal_trainability_is_not_reproduced():
    (v,) = judge_claims(runs(vanilla=[4, 6, 5, 5, 6]), [claim()], ["cell"])
    assert v.label != "reproduced"


def test_a_narrow_learning_rate_grid_is_not_tested():
    lrs = [1e-3, 3e-3, 1e-2]
    (v,) = judge_claims(runs(lrs=lrs, gru=[2] * 5, vanilla=[1] * 5), [claim()], ["cell"])
    assert v.label == "not tested" and ">= 7 log-spaced values over >= 2 decades" in v.reason


def test_trainability_needs_delta_and_a_comparison():
    with pytest.raises(ClaimError, match="delta"):
        claim(delta=None)
    assert claim().margin == 0.0 and claim().expected_sign == 1


def test_runs_that_hit_the_cap_are_counted_and_named_in_the_reason():
    frame = runs().assign(converged=1)
    frame.loc[frame.index[:3], "converged"] = 0
    (v,) = judge_claims(frame, [claim()], ["cell"])
    assert v.label == "reproduced"
    assert v.reason.startswith("3 of 80 runs stopped at the step cap before converging and count with their loss")


def test_a_trainability_claim_requiring_convergence_is_not_tested_on_capped_runs():
    """No lower-bound reading for fractions: the arm claimed better being capped does not rescue it."""
    frame = runs().assign(converged=[0 if cell == "gru" else 1 for cell in runs()["cell"]])
    (v,) = judge_claims(frame, [claim(requires="converged")], ["cell"])
    assert v.label == "not tested" and v.reason == "40 of 80 runs stopped at the step cap before converging"


def test_the_grid_summary_judges_trainability_on_every_tuned_run(tmp_path, monkeypatch):
    """The parent run's summary (printed at the end of `charrnn grid`) reads every learning rate of a
    trainability claim, as the report does, not the one run tuning selected per arm and seed."""
    from grid_support import grid_data, write_grid

    from charrnn.grid import summary
    from charrnn.grid.spec import load_grid

    raw = claim_raw()
    data = grid_data(claims=[raw], axes={"cell": ["gru", "vanilla"]}, tune={"lr": [float(x) for x in LRS]},
                     tune_bounds={"lr": [float(LRS[0]) / 2, float(LRS[-1]) * 2]}, seeds=[0, 1, 2, 3, 4])
    grid = load_grid(write_grid(tmp_path, data))
    frame = runs().assign(profile="quick", seed=lambda f: f["seed"].astype(int))
    frame.attrs["axes"] = ["cell"]
    monkeypatch.setattr(summary.results, "runs_frame", lambda name, tracker: frame)
    result = summary.grid_summary(grid, "quick", None, {"finished": len(frame)})
    assert "**gru_easier** — reproduced" in result.note and "effect +40.0 pp [" in result.note, result.note
