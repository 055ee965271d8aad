"""`--executor ray` with a RunSpec locked by another process: the driver waits for it, as the
local executor does, instead of ending with that spec untrained (Ray on 127.0.0.1 only)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from grid_support import (REPO, charrnn_cmd, children, empty_store_db, runs_of, store, wait_for,  # noqa: F401
                          write_grid)

from charrnn.grid.locks import lock_path
from charrnn.grid.spec import load_grid

HOLD_AFTER_S = 10   # how long the lock stays held once the driver has deferred the spec
HOLDER = """
import sys
from pathlib import Path
from charrnn.grid.locks import FileLock
lock = FileLock(Path(sys.argv[1]))
assert lock.acquire()
print("held", flush=True)
sys.stdin.read()   # held until the test closes stdin
"""


@pytest.fixture
def ray_env(tmp_path):
    """A driver environment whose fresh local Ray binds 127.0.0.1 only (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
    keeps the loopback node address) and keeps its sessions out of /tmp/ray (short path: unix sockets)."""
    temp = Path(tempfile.mkdtemp(prefix="rd", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0", RAY_TMPDIR=str(temp),
               PYTHONPATH=str(REPO))
    yield env
    shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_ray_driver_waits_for_a_spec_another_process_holds_and_trains_it_once(store, tmp_path, ray_env):
    path = write_grid(tmp_path, axes={"cell": ["vanilla", "gru"]}, seeds=[0], claims=None)
    held = load_grid(path).expand("quick")[0]   # the first: the others are in flight when it is deferred
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_path(store, "tiny", held.identity))],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO, env=ray_env)
    assert holder.stdout.readline().strip() == "held"
    driver = subprocess.Popen(charrnn_cmd("grid", str(path), "--executor", "ray", "--max-parallel", "1",
                                          "--no-progress"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                              env={**ray_env, "CHARRNN_RESULTS_DIR": str(store)})
    try:
        # the driver has passed the held spec once the other spec's run exists; then it holds on
        wait_for(lambda: children(runs_of("tiny", store)), timeout=300, every=0.5)
        time.sleep(HOLD_AFTER_S)
        assert driver.poll() is None, "the driver ended while another process held one of its specs"
        holder.stdin.close()
        out, err = driver.communicate(timeout=300)
    finally:
        for proc in (holder, driver):
            proc.kill()
            proc.wait()
    done = subprocess.CompletedProcess(driver.args, driver.returncode, out, err)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"2 runs: 2 finished, 0 skipped, 0 failed in", done.stdout), done.stdout
    kids = children(runs_of("tiny", store))
    assert sorted(r.identity for r in kids) == sorted(s.identity for s in load_grid(path).expand("quick"))
    assert all(r.status == "FINISHED" for r in kids)
