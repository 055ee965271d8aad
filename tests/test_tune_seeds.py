"""A profile's `tune_seeds: k`: the first k seeds try every tuned value, each other seed trains once at
its arm's chosen value (the judging round), and selection keeps that choice for every seed."""
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
from tests.claim_support import SCOPE

LRS = [0.001, 0.003, 0.01]


def tuned_grid(tmp_path, **profile):
    data = grid_data(axes={"cell": ["vanilla", "gru"]}, seeds=[0, 1, 2, 3], tune={"lr": LRS},
                     profiles={"quick": {"tune_seeds": 2, **profile}, "full": {"steps": 12}})
    return load_grid(write_grid(tmp_path, data))


def test_only_the_tuning_seeds_try_every_value_and_the_others_train_at_their_arms_choice(tmp_path):
    grid = tuned_grid(tmp_path)
    planned = grid.expand("quick")
    assert len(planned) == 2 * 3 * 2 and {s.seed for s in planned} == {0, 1}
    assert grid.judges_after_tuning("quick") and not grid.judges_after_tuning("full")
    assert len(grid.expand("full")) == 2 * 3 * 4                 # the other profile tunes on every seed
    judging = grid.judging_specs("quick", {"cell=gru": (("lr", 0.003),)})
    assert [(s.variant, s.seed, s.tuned) for s in judging] == [("cell=gru", 2, (("lr", 0.003),)),
                                                               ("cell=gru", 3, (("lr", 0.003),))]


@pytest.mark.parametrize("profile, data, message", [
    ({"tune_seeds": 4}, {}, "profiles.quick.tune_seeds: 4: valid: an integer from 2 to 3 (the profile has 4 seeds)"),
    ({"tune_seeds": 1}, {}, "valid: an integer from 2 to 3"),
    ({"tune_seeds": "two"}, {}, "valid: an integer from 2 to 3"),
    ({"tune_seeds": 2}, {"tune": None}, "the grid tunes nothing"),
    ({"tune_seeds": 2}, {"tune": {"lr": LRS, "choice": "per_seed"}}, "with tune.choice per_seed"),
    ({"tune_seeds": 2}, {"claims": [{"source": "test", **SCOPE, "metric": "val_loss", "method": "trainability",
                                     "delta": 0.05, "requires": "any",
                                     "expect": {"cell": "gru", "better_than": "vanilla"}}]},
     "reads every rate of every seed; valid: no tune_seeds"),
])
def test_a_tune_seeds_the_grid_cannot_honour_is_one_line_naming_key_value_and_valid_choices(
        tmp_path, profile, data, message):
    raw = grid_data(axes={"cell": ["vanilla", "gru"]}, seeds=[0, 1, 2, 3], tune={"lr": LRS},
                    profiles={"quick": profile, "full": {}})
    raw.update({k: v for k, v in data.items() if v is not None})
    if data.get("tune", "keep") is None:
        raw.pop("tune")
    with pytest.raises(GridError) as err:
        load_grid(write_grid(tmp_path, raw))
    assert message in str(err.value) and "\n" not in str(err.value)


def synthetic_runs(judging_lr: float | None) -> pd.DataFrame:
    """Seeds 0, 1 at every lr (0.003 best on their mean; seed 1 alone prefers 0.01); seeds 2, 3 at
    `judging_lr` only, with a loss that would win any mean they entered."""
    loss = {(0, 0.001): 2.0, (0, 0.003): 1.5, (0, 0.01): 1.9, (1, 0.001): 2.0, (1, 0.003): 1.7, (1, 0.01): 1.6}
    rows = [{"variant": "cell=gru", "seed": s, "lr": lr, "status": "FINISHED", "final_val_loss": v}
            for (s, lr), v in loss.items()]
    if judging_lr is not None:
        rows += [{"variant": "cell=gru", "seed": s, "lr": judging_lr, "status": "FINISHED", "final_val_loss": 1.0}
                 for s in (2, 3)]
    return pd.DataFrame(rows)


def test_the_judging_seeds_keep_the_choice_the_tuning_seeds_made():
    space = TuneSpace({"lr": LRS})
    before = tuning.select(synthetic_runs(None), space)
    assert set(before["lr"]) == {0.003}
    after = tuning.select(synthetic_runs(0.003), space)
    assert set(after["lr"]) == {0.003} and sorted(after["seed"]) == [0, 1, 2, 3]
    assert after.set_index("seed")["tune_candidates"].to_dict() == {0: 3, 1: 3, 2: 1, 3: 1}


def test_the_page_names_the_seeds_that_tuned_and_those_that_trained_at_the_choice():
    from charrnn.report.tuned import tuning_section

    runs = synthetic_runs(0.003)
    section = tuning_section(runs, tuning.select(runs, TuneSpace({"lr": LRS})), {"lr": LRS}, {"cell=gru": "#000"})
    assert section["tuning_seeds"] == "0, 1" and section["judging_seeds"] == "2, 3"
    every = synthetic_runs(None)
    assert tuning_section(every, tuning.select(every, TuneSpace({"lr": LRS})), {"lr": LRS},
                          {"cell=gru": "#000"})["judging_seeds"] == ""


def test_a_grid_tuned_on_two_seeds_trains_the_others_once_at_the_choice_and_a_rerun_trains_nothing(
        store, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CHARRNN_REPORTS_DIR", str(tmp_path / "reports"))
    data = grid_data(axes={"cell": ["vanilla", "gru"]}, seeds=[0, 1, 2], tune={"lr": LRS},
                     profiles={"quick": {"tune_seeds": 2}, "full": {}})
    path = write_grid(tmp_path, data)
    assert main(["grid", str(path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    kids = children(runs_of("tiny", store))
    for cell in ("vanilla", "gru"):
        lrs = {s: sorted(float(r.params["lr"]) for r in kids if r.params["seed"] == str(s) and r.params["cell"] == cell)
               for s in (0, 1, 2)}
        assert lrs[0] == lrs[1] == LRS and len(lrs[2]) == 1
    assert "judging: seeds 2 train at each arm's chosen values (tuned on seeds 0, 1): 2 runs" in out
    assert "14 runs: 14 finished" in out
    assert main(["grid", str(path), "--no-progress"]) == 0     # replayed from the store: the same runs
    assert "14 runs: 0 finished, 14 skipped" in capsys.readouterr().out
    frame = runs_frame("tiny", Tracker())
    chosen = tuning.select(frame, tune_of(data))
    assert sorted(chosen["seed"].astype(int)) == [0, 0, 1, 1, 2, 2]       # every seed judged, at one lr per arm
    assert (chosen.groupby("variant")["lr"].nunique() == 1).all()
    assert main(["report", "tiny"]) == 0
    page = " ".join((tmp_path / "reports" / "tiny.html").read_text().split())
    assert "Seeds 0, 1 of each arm trained every value of lr" in page and "seeds 2 then trained once, at it" in page
    assert main(["grid", str(path), "--until-decided", "--no-progress"]) == 2
    assert "--until-decided: profile quick sets tune_seeds" in capsys.readouterr().err
