"""`--runs-per-gpu N`: the Ray executor packs N runs on each GPU (1/N of it each), on CPU with
Ray's logical GPU resources."""
from __future__ import annotations

import threading

import pytest
from grid_support import children, empty_store_db, runs_of, store, write_grid  # noqa: F401

from charrnn.cli import main
from charrnn.grid import executors
from charrnn.grid.executors import run_grid
from charrnn.grid.spec import load_grid


@pytest.mark.parametrize("cluster, runs_per_gpu, expected", [
    ({"CPU": 16.0, "GPU": 2.0}, 4, (2, 0.25, 8)),
    ({"CPU": 2.0, "GPU": 1.0}, 4, (0.5, 0.25, 4)),     # more tasks than CPUs: half a CPU each
    ({"CPU": 4.0}, 4, (1, 0.0, 4)),                    # no GPU: one run per CPU, as before
])
def test_runs_per_gpu_packs_fractions_of_each_gpu(cluster, runs_per_gpu, expected):
    assert executors.task_resources(cluster, None, runs_per_gpu) == expected


def test_runs_per_gpu_with_the_local_executor_is_bad_input(tmp_path, capsys):
    path = write_grid(tmp_path)
    assert main(["grid", str(path), "--runs-per-gpu", "4", "--no-progress"]) == 2
    assert "--runs-per-gpu=4: the local executor trains one run at a time" in capsys.readouterr().err


@pytest.fixture
def one_logical_gpu(monkeypatch):
    """A local Ray on 127.0.0.1 with 2 CPUs and 1 logical GPU (no device behind it)."""
    import ray

    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")   # keep 127.0.0.1 as the node address
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False,
             _node_ip_address="127.0.0.1", log_to_driver=False)
    yield ray
    ray.shutdown()


class GpuWatch(threading.Thread):
    """Samples the cluster's free GPU while the grid runs: the least seen is what ran at once."""

    def __init__(self, ray):
        super().__init__(daemon=True)
        self.ray, self.least, self.done = ray, 1.0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):
            self.least = min(self.least, self.ray.available_resources().get("GPU", 0.0))


@pytest.mark.slow
def test_four_runs_share_one_gpu_at_once_and_each_finishes_once(store, tmp_path, one_logical_gpu):
    grid = load_grid(write_grid(tmp_path, axes={"cell": ["vanilla", "gru"]}, seeds=[0, 1], claims=None))
    watch = GpuWatch(one_logical_gpu)
    watch.start()
    session = run_grid(grid, "quick", executor="ray", runs_per_gpu=4, progress=False)
    watch.done.set()
    watch.join()
    assert watch.least == 0.0   # 4 x 0.25 GPU held together: four runs at once
    assert session.counts() == {"finished": 4, "skipped": 0, "failed": 0}
    runs = children(runs_of("tiny", store))
    assert sorted(r.status for r in runs) == ["FINISHED"] * 4
    assert len({r.identity for r in runs}) == 4          # one run per spec: none trained twice
