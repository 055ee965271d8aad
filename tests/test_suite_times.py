"""The times file is written from what the runs recorded: which runs trained beside another
(overlapping wall-clock intervals), and of them, which a speed claim judges (sweep arms included)."""
import pandas as pd
from grid_support import grid_data, write_grid

from charrnn.grid.spec import load_grid
from charrnn.grid.suite_times import main, suite_times
from charrnn.science.concurrency import beside_counts
from claim_support import SCOPE

T0 = pd.Timestamp("2026-01-01T00:00:00Z")


def at(start_s: float, end_s: float | None) -> dict:
    return {"start_time": T0 + pd.Timedelta(seconds=start_s),
            "end_time": None if end_s is None else T0 + pd.Timedelta(seconds=end_s)}


def test_runs_whose_intervals_overlap_trained_beside_each_other_and_touching_ends_do_not():
    runs = pd.DataFrame([at(0, 10), at(5, 12), at(12, 20), at(30, 31), at(30.5, None)])
    assert beside_counts(runs).tolist() == [1, 1, 0, 1, 1]    # the unfinished run runs until the last end


def speed_grid(tmp_path):
    speed = {"source": "test", **SCOPE, "metric": "tokens_per_s", "where": {"hidden_size": 16},
             "expect": {"cell": "gru", "better_than": "vanilla"}}
    return load_grid(write_grid(tmp_path, grid_data(claims=[speed], axes={"cell": ["vanilla", "gru", "lstm"],
                                                                            "hidden_size": [8, 16]})))


def runs_of(rows) -> pd.DataFrame:
    return pd.DataFrame([{"experiment": "tiny", "cell": c, "hidden_size": h, "lr": 0.003, **at(s, e)}
                         for c, h, s, e in rows])


def test_a_sweep_arm_that_trained_beside_another_run_is_counted_against_the_speed_claims(tmp_path):
    grid = speed_grid(tmp_path)
    frame = runs_of([("vanilla", 16, 0, 10), ("gru", 16, 10, 20), ("lstm", 16, 20, 30), ("lstm", 8, 25, 40)])
    line, total = suite_times(frame, {"tiny": grid})
    assert line.startswith("tiny") and " 40 s" in line
    assert "4 runs; 2 trained beside another run; speed claims judge 3: 1 of them trained beside another run" in line
    assert "3 of them judged by speed claims" in total
    alone = runs_of([("vanilla", 16, 0, 10), ("gru", 16, 10, 20), ("lstm", 16, 20, 30), ("lstm", 8, 30, 40)])
    assert "speed claims judge 3: each trained alone" in suite_times(alone, {"tiny": grid})[0]


def test_the_times_file_keeps_its_header_and_names_a_tuning_extension(tmp_path):
    data = grid_data(axes={"cell": ["vanilla", "gru"]}, tune={"lr": [0.001, 0.003, 0.01]})
    grid = load_grid(write_grid(tmp_path, data))
    csv = tmp_path / "suite.csv"
    pd.DataFrame([{"experiment": "tiny", "cell": "gru", "lr": lr, **at(i, i + 1)}
                  for i, lr in enumerate([0.001, 0.003, 0.01, 0.03])]).to_csv(csv, index=False)
    out = tmp_path / "times.txt"
    out.write_text("# the setting, by hand\nold line\n")
    assert main([str(csv), "--grids", str(tmp_path), "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "# the setting, by hand" and "old line" not in lines
    assert "tuning extension: lr + 0.03" in lines[1] and grid.name == "tiny"
