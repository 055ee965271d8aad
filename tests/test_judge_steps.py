"""A profile's `judge_steps: N`: under `tune_seeds`, the choice is made on the tuning seeds at the
profile's step cap, the other seeds (fresh: the choice never saw them) train once at it to the longer
cap N, and the claims are judged on those runs alone."""
from __future__ import annotations

import pandas as pd
import pytest
from grid_support import children, empty_store_db, grid_data, runs_of, store, write_grid  # noqa: F401

from charrnn.cli import main
from charrnn.grid.spec import GridError, load_grid
from charrnn.science import tuning
from charrnn.science.results import runs_frame
from charrnn.science.tune_space import TuneSpace, tune_of
from charrnn.tracking.store import Tracker

LRS = [0.001, 0.003, 0.01]
SEEDS = [0, 1, 2, 3, 4, 5, 6]


def judged_grid_data(**profile) -> dict:
    return grid_data(axes={"cell": ["vanilla", "gru"]}, seeds=SEEDS, tune={"lr": LRS},
                     profiles={"quick": {"tune_seeds": 2, "judge_steps": 12, **profile}, "full": {"steps": 12}})


def test_the_judging_seeds_train_to_the_longer_cap_and_alone_count_as_judged(tmp_path):
    grid = load_grid(write_grid(tmp_path, judged_grid_data()))
    assert {s.config.steps for s in grid.expand("quick")} == {8} and {s.seed for s in grid.expand("quick")} == {0, 1}
    judging = grid.judging_specs("quick", {"cell=gru": (("lr", 0.003),)})
    assert [(s.seed, s.config.steps, s.tuned) for s in judging] == [(s, 12, (("lr", 0.003),)) for s in SEEDS[2:]]
    assert grid.judged_seeds_of("quick") == (2, 3, 4, 5, 6) and grid.judged_seeds_of("full") == tuple(SEEDS)


@pytest.mark.parametrize("profile, message", [
    ({"judge_steps": 8}, "profiles.quick.judge_steps: 8: valid: an integer above the profile's steps (8)"),
    ({"judge_steps": "long"}, "valid: an integer above the profile's steps (8)"),
    ({"tune_seeds": 3},
     "profiles.quick.judge_steps: 12: 4 seed(s) left to judge after tune_seeds 3; valid: at least 5"),
])
def test_a_judge_steps_the_grid_cannot_honour_is_one_line_naming_key_value_and_valid_choices(
        tmp_path, profile, message):
    with pytest.raises(GridError) as err:
        load_grid(write_grid(tmp_path, judged_grid_data(**profile)))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_judge_steps_without_tune_seeds_or_with_steps_tuned_is_refused(tmp_path):
    data = grid_data(axes={"cell": ["vanilla", "gru"]}, seeds=SEEDS, tune={"lr": LRS},
                     profiles={"quick": {"judge_steps": 12}, "full": {}})
    with pytest.raises(GridError, match="without tune_seeds there is no judging round; valid: tune_seeds"):
        load_grid(write_grid(tmp_path, data))
    data = judged_grid_data()
    data["fixed"] = {k: v for k, v in data["fixed"].items() if k != "steps"}
    data["axes"] = {"cell": ["vanilla", "gru"], "steps": [6, 8]}
    data["profiles"]["full"] = {}
    with pytest.raises(GridError, match="judge_steps: 12: steps is tuned or varied; valid: a fixed steps"):
        load_grid(write_grid(tmp_path, data))


def synthetic_runs(judging_loss: dict[int, float], status: dict[int, str] | None = None) -> pd.DataFrame:
    """Seeds 0, 1 at every lr to 1000 steps (0.003 best on their mean); seeds 2-6 at 0.003 to 8000."""
    loss = {(0, 0.001): 2.0, (0, 0.003): 1.5, (0, 0.01): 1.9, (1, 0.001): 2.0, (1, 0.003): 1.7, (1, 0.01): 1.6}
    rows = [{"variant": "cell=gru", "seed": s, "lr": lr, "steps": 1000, "status": "FINISHED", "final_val_loss": v}
            for (s, lr), v in loss.items()]
    rows += [{"variant": "cell=gru", "seed": s, "lr": 0.003, "steps": 8000, "status": (status or {}).get(s, "FINISHED"),
              "final_val_loss": v} for s, v in judging_loss.items()]
    return pd.DataFrame(rows)


def test_claims_judge_the_fresh_seeds_at_the_choice_made_on_the_tuning_seeds():
    runs = synthetic_runs({s: 1.2 for s in range(2, 7)})
    judged = tuning.judged_runs(runs, TuneSpace({"lr": LRS}))
    assert sorted(judged["seed"]) == [2, 3, 4, 5, 6] and set(judged["steps"]) == {8000}
    assert set(judged["tuned"]) == {"lr=0.003"} and set(judged["tune_candidates"]) == {1}
    assert judged.attrs["judging"] == ([0, 1], [2, 3, 4, 5, 6], 1000, 8000) and judged.attrs["unselected"] == []


def test_a_failed_judging_run_stays_among_the_judged_and_is_named_unselected():
    runs = synthetic_runs({s: 1.2 for s in range(2, 7)}, status={4: "FAILED"})
    judged = tuning.judged_runs(runs, TuneSpace({"lr": LRS}))
    assert sorted(judged["seed"]) == [2, 3, 4, 5, 6]
    assert judged.attrs["unselected"] == [("cell=gru", 4)]


def test_an_arm_whose_tuning_runs_all_failed_stays_among_the_judged_as_failed():
    runs = synthetic_runs({s: 1.2 for s in range(2, 7)})
    failed = pd.DataFrame([{"variant": "cell=vanilla", "seed": s, "lr": lr, "steps": 1000, "status": "FAILED",
                            "final_val_loss": float("nan")} for s in (0, 1) for lr in LRS])
    judged = tuning.judged_runs(pd.concat([runs, failed], ignore_index=True), TuneSpace({"lr": LRS}))
    lost = judged[judged["variant"] == "cell=vanilla"]
    assert len(lost) == 6 and set(lost["tuned"]) == {"none usable"} and set(lost["status"]) == {"FAILED"}
    assert ("cell=vanilla", 0) in judged.attrs["unselected"]


def test_without_a_longer_cap_the_tuning_seeds_are_judged_as_before():
    runs = synthetic_runs({}).assign(steps=1000)
    assert not tuning.past_tuning_cap(runs, TuneSpace({"lr": LRS})).any()
    assert sorted(tuning.judged_runs(runs, TuneSpace({"lr": LRS}))["seed"]) == [0, 1]


def test_the_page_names_both_caps_and_the_fresh_seeds():
    from charrnn.report.tuned import tuning_section

    runs = synthetic_runs({s: 1.2 for s in range(2, 7)})
    judged = tuning.judged_runs(runs, TuneSpace({"lr": LRS}))
    section = tuning_section(runs, judged, {"lr": LRS}, {"cell=gru": "#000"})
    assert (section["tuning_seeds"], section["judging_seeds"]) == ("0, 1", "2, 3, 4, 5, 6")
    assert (section["tuning_cap"], section["judging_cap"]) == (1000, 8000)


@pytest.mark.slow
def test_a_grid_judged_at_a_longer_cap_trains_the_fresh_seeds_to_it_and_a_rerun_trains_nothing(
        store, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CHARRNN_REPORTS_DIR", str(tmp_path / "reports"))
    path = write_grid(tmp_path, judged_grid_data())
    assert main(["grid", str(path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "judging: seeds 2, 3, 4, 5, 6 train at each arm's chosen values (tuned on seeds 0, 1) to 12 steps" in out
    kids = children(runs_of("tiny", store))
    steps = {(r.params["seed"], r.params["steps"]) for r in kids}
    assert steps == {("0", "8"), ("1", "8")} | {(str(s), "12") for s in SEEDS[2:]}
    assert main(["grid", str(path), "--no-progress"]) == 0     # replayed from the store: the same runs
    assert "22 runs: 0 finished, 22 skipped" in capsys.readouterr().out
    judged = tuning.judged_runs(runs_frame("tiny", Tracker()), tune_of(judged_grid_data()))
    assert sorted(judged["seed"].astype(int)) == sorted(SEEDS[2:] * 2) and set(judged["steps"].astype(int)) == {12}
    assert main(["report", "tiny"]) == 0
    page = " ".join((tmp_path / "reports" / "tiny.html").read_text().split())
    assert "Seeds 2, 3, 4, 5, 6, which the choice never saw, then trained once, at it, to at most 12 steps" in page
