"""`charrnn grid A.yaml B.yaml`: several grid files in one process, on one executor, every file
checked before any run."""
from __future__ import annotations

import pytest
from grid_support import children, grid_data, empty_store_db, runs_of, store, write_grid  # noqa: F401

from charrnn.cli import main
from charrnn.grid import executors, local_ray


def two_grids(tmp_path):
    """Two one-arm grid files with their own names (experiments), 2 runs each."""
    first = write_grid(tmp_path, grid_data(axes={"cell": ["gru"]}, claims=None), name="first.yaml")
    second = write_grid(tmp_path, grid_data(name="tiny_second", axes={"cell": ["vanilla"]}, claims=None),
                        name="second.yaml")
    return str(first), str(second)


def test_several_grid_files_train_each_into_its_own_experiment(tmp_path, store, capsys):
    first, second = two_grids(tmp_path)
    assert main(["grid", first, second, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"== {first} (grid 1 of 2)" in out and f"== {second} (grid 2 of 2)" in out
    assert [r.status for r in children(runs_of("tiny", store))] == ["FINISHED"] * 2
    assert [r.status for r in children(runs_of("tiny_second", store))] == ["FINISHED"] * 2


def test_a_bad_later_grid_file_exits_2_before_the_first_trains(tmp_path, results_dir, capsys):
    first = write_grid(tmp_path, name="first.yaml", axes={"cell": ["gru"]}, claims=None)
    bad = write_grid(tmp_path, name="bad.yaml", axes={"cell": ["nosuchcell"]}, claims=None)
    assert main(["grid", str(first), str(bad), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("charrnn: error: ") and "nosuchcell" in err and len(err.splitlines()) == 1
    assert not results_dir.exists()


def test_the_process_start_up_is_charged_to_the_first_grid_only(monkeypatch):
    monkeypatch.setattr(executors, "_process_charged", [])
    assert executors.process_seconds() > 0
    assert executors.process_seconds() == 0.0


@pytest.mark.slow
def test_several_grid_files_on_ray_start_one_local_ray(tmp_path, store, monkeypatch):
    starts = []

    def counted(**kwargs):
        starts.append(kwargs)
        return local_ray.start_local_ray(**kwargs)

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(executors, "start_local_ray", counted)
    first, second = two_grids(tmp_path)
    assert main(["grid", first, second, "--executor", "ray", "--max-parallel", "1", "--no-progress"]) == 0
    assert len(starts) == 1
    assert [r.status for r in children(runs_of("tiny_second", store))] == ["FINISHED"] * 2
    import ray
    assert not ray.is_initialized()   # the shared Ray is shut down after the last grid
