"""`--executor ray` without an address starts a fresh local Ray, whatever Ray's temp dir says."""
from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path

import pytest
from grid_support import children, empty_store_db, runs_of, store, write_grid  # noqa: F401

from charrnn.grid.executors import run_grid
from charrnn.grid.spec import load_grid


def dead_address() -> str:
    """127.0.0.1:PORT where nothing listens (a port just freed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def stale_ray_dir(monkeypatch):
    """A Ray temp dir (RAY_TMPDIR) whose `ray_current_cluster` names a dead cluster, as a killed
    `ray start` or a crashed test leaves /tmp/ray behind. Short path: Ray puts unix sockets in it."""
    root = Path(tempfile.mkdtemp(prefix="rs-", dir="/tmp"))
    monkeypatch.setenv("RAY_TMPDIR", str(root))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    (root / "ray").mkdir()
    (root / "ray" / "ray_current_cluster").write_text(dead_address() + "\n")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_ray_grid_trains_despite_a_stale_current_cluster_file(store, tmp_path, stale_ray_dir):
    from ray._private.services import canonicalize_bootstrap_address

    stale = (stale_ray_dir / "ray" / "ray_current_cluster").read_text().strip()
    port = stale.rsplit(":", 1)[1]   # where a plain ray.init() would go (127.0.0.1 → this node's IP)
    assert (canonicalize_bootstrap_address(None) or "").endswith(f":{port}")
    grid = load_grid(write_grid(tmp_path, axes={"cell": ["gru"]}, seeds=[0], claims=None))
    session = run_grid(grid, "quick", executor="ray", max_parallel=1, progress=False)
    assert session.counts() == {"finished": 1, "skipped": 0, "failed": 0}
    assert [r.status for r in children(runs_of("tiny", store))] == ["FINISHED"]
