"""`charrnn grid` end to end: a tuned choice at the edge of its axis grows the axis within the
grid's bound and trains the new runs in the same invocation; every run logs its baselines."""
from __future__ import annotations

import json

import pytest
from grid_support import children, empty_store_db, grid_data, parents, runs_of, store, write_grid  # noqa: F401

from charrnn.cli import main
from tests.claim_support import SCOPE
from charrnn.grid.executors import run_grid
from charrnn.grid.spec import load_grid
from charrnn.science import tune_space, tuning
from charrnn.science.results import runs_frame
from charrnn.tags import EXCLUSIVE, SPEED_TAG, TUNE_TRIED_TAG
from charrnn.tracking.store import Tracker

LRS = [0.001, 0.003, 0.01]   # 8 Adam steps: the largest learning rate gets furthest (val, same batches)


def test_an_edge_choice_trains_one_step_beyond_up_to_the_bound_in_the_same_invocation(store, tmp_path, capsys):
    data = grid_data(axes={}, seeds=[0], tune={"lr": LRS}, tune_bounds={"lr": [0.001, 0.03]}, order_seed=5,
                     claims=[{"source": "test", **SCOPE, "metric": "val_loss", "expect": {"better_than": 5.0}}])
    path = write_grid(tmp_path, data)
    assert main(["grid", str(path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    kids = children(runs_of("tiny", store))
    tried = sorted(float(r.params["lr"]) for r in kids)
    assert tried[:3] == LRS and tried[3:] == [0.03] and all(r.status == "FINISHED" for r in kids)
    assert "its arm's axis grew (lr + 0.03): 1 more runs" in out and "4 runs: 4 finished" in out
    (parent,) = parents(runs_of("tiny", store))
    assert json.loads(parent.tags[TUNE_TRIED_TAG]) == {"lr": [*LRS, 0.03]}
    assert parent.params["order_seed"] == "5"
    assert {r.tags[SPEED_TAG] for r in kids} == {"serial"}

    frame = runs_frame("tiny", Tracker())
    assert (frame["baseline_val_loss"] > 2.0).all() and (frame["baseline_val_loss"] < 3.5).all()
    chosen = tuning.select(frame, tune_space.tune_of(json.loads(json.dumps(data))))
    assert chosen["tune_planned"].tolist() == [4]
    assert chosen["tune_at_bound"].tolist() == chosen["tune_at_edge"].tolist()   # never at an open edge
    assert "choices at an edge of the axis, 1 of them at the grid's bound" in out or "lies inside" in out

    assert main(["grid", str(path), "--no-progress"]) == 0     # replayed from the store: nothing new
    assert "4 runs: 0 finished, 4 skipped" in capsys.readouterr().out


@pytest.mark.slow
def test_ray_trains_a_speed_grid_one_run_at_a_time_and_extends_its_tuning(store, tmp_path):
    import ray

    speed = {"source": "test", **SCOPE, "metric": "tokens_per_s", "expect": {"better_than": 1.0}}
    data = grid_data(axes={}, seeds=[0], tune={"lr": LRS}, tune_bounds={"lr": [0.001, 0.03]}, claims=[speed])
    grid = load_grid(write_grid(tmp_path, data))
    ray.init(address="local", num_cpus=2, include_dashboard=False)   # room for two runs at once
    try:
        session = run_grid(grid, "quick", executor="ray", progress=False)
    finally:
        ray.shutdown()
    assert session.counts() == {"finished": 4, "skipped": 0, "failed": 0}    # 3 + the run at lr=0.03
    kids = sorted(children(runs_of("tiny", store)), key=lambda r: r.start_time)
    assert {r.tags[SPEED_TAG] for r in kids} == {EXCLUSIVE}
    assert all(later.start_time >= earlier.end_time for earlier, later in zip(kids, kids[1:]))  # never two at once
