"""Shared pieces of the grid/runner/results tests: tiny grid files, a pre-built store, queries.

A fresh sqlite store costs ~6 s of schema migrations; `store` copies one built once per session.
"""
from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from claim_support import SCOPE
from charrnn.tracking.store import StoredRun, Tracker

REPO = Path(__file__).resolve().parent.parent
# Tiny and CPU-only: a run is well under a second plus its MLflow writes.
TINY_FIXED = {"hidden_size": 8, "batch_size": 4, "seq_len": 16, "steps": 8, "eval_interval": 4,
              "eval_batches": 1, "sample_length": 20, "device": "cpu"}


def grid_data(**overrides) -> dict:
    """A valid 2-axis x 2-seed grid (8 RunSpecs) as plain data; keyword arguments replace keys."""
    data = {
        "name": "tiny",
        "question": "Does the cell type matter at hidden 8 vs 16?",
        "claims": [{"source": "test", **SCOPE, "metric": "val_loss",
                    "expect": {"cell": "gru", "better_than": "vanilla"}}],
        "task": "tinyshakespeare",
        "fixed": dict(TINY_FIXED),
        "axes": {"cell": ["vanilla", "gru"], "hidden_size": [8, 16]},
        "seeds": [0, 1],
        "profiles": {"quick": {}, "full": {"steps": 12}},
    }
    data["fixed"].pop("hidden_size")
    data.update(overrides)
    return data


def write_grid(directory: Path, data: dict | None = None, name: str = "tiny.yaml", **overrides) -> Path:
    path = Path(directory) / name
    path.write_text(yaml.safe_dump(data if data is not None else grid_data(**overrides), sort_keys=False))
    return path


@pytest.fixture(scope="session")
def empty_store_db(tmp_path_factory) -> Path:
    """An empty, fully migrated mlflow.db, built once per test session."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    Tracker(f"sqlite:///{path}")
    return path


@pytest.fixture
def store(results_dir, empty_store_db) -> Path:
    """`results_dir` with a ready (empty) store in it."""
    results_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(empty_store_db, results_dir / "mlflow.db")
    return results_dir


@functools.lru_cache(maxsize=None)
def tracker_at(db: Path) -> Tracker:
    """One client per store (opening one costs ~1 s of CPU: too much to repeat while polling)."""
    return Tracker(f"sqlite:///{db}")


def runs_of(experiment: str, results_dir: Path) -> list[StoredRun]:
    db = results_dir / "mlflow.db"
    return tracker_at(db).runs(experiment) if db.exists() else []


def children(runs: list[StoredRun]) -> list[StoredRun]:
    return [r for r in runs if r.tag("role") == "run"]


def parents(runs: list[StoredRun]) -> list[StoredRun]:
    return [r for r in runs if r.tag("role") == "grid"]


def heavy_imports(module: str) -> list[str]:
    """Which of torch, mlflow, ray a fresh interpreter has loaded after importing `module`."""
    code = f"import sys, {module}; print(','.join(m for m in ('torch', 'mlflow', 'ray') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def charrnn_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "charrnn", *args]


def run_charrnn(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(charrnn_cmd(*args), capture_output=True, text=True, timeout=timeout, cwd=REPO)


def start_charrnn(*args: str, log: Path) -> subprocess.Popen:
    """Start `charrnn ...` in its own process group (so the whole tree can be killed at once)."""
    out = open(log, "w")
    return subprocess.Popen(charrnn_cmd(*args), stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                            start_new_session=True)


def kill_tree(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def wait_for(condition, timeout: float = 120, every: float = 0.05):
    """Poll `condition()` until it returns something truthy; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s")
