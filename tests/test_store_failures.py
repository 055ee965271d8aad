"""A store that fails under `charrnn grid`, with either executor: read-only, full, unreachable. Each
ends in one line on stderr naming the cause and the fix (exit 1), after the summary of what was done
so far, and a rerun once the store is fixed finishes the grid with every RunSpec trained exactly once,
leaving no partial file behind. A corrupt store file is one line for every verb that reads it."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from grid_support import REPO, TINY_FIXED, charrnn_cmd, children, empty_store_db, runs_of, write_grid  # noqa: F401

from charrnn.tracking.failures import store_error

GRID = {"axes": {"cell": ["vanilla", "gru"]}, "seeds": [0, 1], "claims": None}   # 4 RunSpecs
EXECUTORS = ["local", "ray"]
HEAD = re.compile(r"(\d+) runs: (\d+) finished, (\d+) skipped, (\d+) failed(?:, (\d+) untrained)?")


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


@pytest.fixture
def tmpfs(tmp_path):
    """A 12 MiB tmpfs at tmp_path/mnt: room for a store, and a disk that can be filled or made
    read-only without touching the machine's. Skipped where this user may not mount."""
    point = tmp_path / "mnt"
    point.mkdir()
    try:
        mount("-t", "tmpfs", "-o", "size=12m", "tmpfs", str(point))
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here ({exc})")
    yield point
    # lazy: this test's own store client may still hold the database open
    subprocess.run(["umount", "-R", "-l", str(point)], check=False, capture_output=True)


def charrnn_in(results: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CHARRNN_RESULTS_DIR": str(results), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run(charrnn_cmd(*args), capture_output=True, text=True, timeout=300, cwd=REPO, env=env)


def grid_cmd(path: Path, results: Path, executor: str = "local") -> subprocess.CompletedProcess:
    return charrnn_in(results, "grid", str(path), "--no-progress", "--executor", executor)


def partial_files(results: Path) -> list[Path]:
    """Temporary files (and their folders) a failed write could leave in the store's artifacts."""
    return sorted(p for p in results.rglob("*") if ".partial" in p.parts or p.name.endswith(".tmp"))


def assert_one_line_failure(done: subprocess.CompletedProcess, cause: str) -> None:
    """Exit 1, one line naming the cause (no traceback), and a summary whose counts add up."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) <= 5 and "Traceback" not in done.stderr, done.stderr
    assert lines[-1].startswith("charrnn: error: ") and cause in lines[-1], done.stderr
    total, *counts = HEAD.search(done.stdout).groups()
    assert sum(int(c or 0) for c in counts) == int(total) == 4, done.stdout


def store_in(directory: Path, template: Path) -> Path:
    results = directory / "results"
    results.mkdir()
    shutil.copy(template, results / "mlflow.db")
    return results


@pytest.mark.slow
@pytest.mark.parametrize("executor", EXECUTORS)
def test_grid_against_a_read_only_store_ends_in_one_line(executor, tmpfs, tmp_path, empty_store_db):
    results = store_in(tmpfs, empty_store_db)
    db = str(results / "mlflow.db")
    mount("--bind", db, db)
    mount("-o", "remount,ro,bind", db)
    done = grid_cmd(write_grid(tmp_path, **GRID), results, executor)
    assert_one_line_failure(done, "the store is read-only")
    assert "make it writable" in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("executor", EXECUTORS)
def test_grid_on_a_full_disk_ends_in_one_line_and_a_rerun_with_room_finishes_it(executor, tmpfs, tmp_path,
                                                                                empty_store_db):
    results = store_in(tmpfs, empty_store_db)
    filler = tmpfs / "filler"
    free = shutil.disk_usage(tmpfs).free
    filler.write_bytes(b"\0" * (free - 160_000))   # room for a run or so, not for four
    path = write_grid(tmp_path, **GRID, fixed={**TINY_FIXED, "steps": 8, "eval_interval": 2})
    done = grid_cmd(path, results, executor)
    assert_one_line_failure(done, "no space left on the disk holding")
    assert partial_files(results) == []   # the failed checkpoint copy is gone, and its folder

    filler.unlink()
    again = grid_cmd(path, results, executor)   # no manual step between the two
    assert again.returncode == 0, again.stdout + again.stderr
    assert partial_files(results) == []
    kids = children(runs_of("tiny", results))
    assert len({r.identity for r in kids}) == 4 and all(r.status == "FINISHED" for r in kids)
    assert len(kids) == 4   # a run killed by the full disk is resumed, not trained a second time


@pytest.mark.parametrize("executor", EXECUTORS)
def test_grid_against_an_unreachable_tracking_server_ends_in_one_line(executor, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")   # discard port: nothing listens
    done = grid_cmd(write_grid(tmp_path, **GRID), tmp_path / "results", executor)
    assert_one_line_failure(done, "the tracking server http://127.0.0.1:9 is unreachable")


def test_errors_that_are_not_the_store_are_not_translated():
    assert store_error(ValueError("hidden_size must be positive"), "sqlite:////x/mlflow.db") is None
    assert store_error(ConnectionError("refused"), "sqlite:////x/mlflow.db") is None   # sqlite: no server


@pytest.mark.parametrize("verb", [["grid", "GRID", "--executor", "local"], ["report"], ["migrate"], ["export", "tiny"]])
def test_a_corrupt_store_file_is_one_line_naming_it_and_what_to_do(verb, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    db = results / "mlflow.db"
    db.write_bytes(b"not a database, but a file of the same name " * 200)
    grid = str(write_grid(tmp_path, **GRID))
    done = charrnn_in(results, *[grid if arg == "GRID" else arg for arg in verb])
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"charrnn: error: the store {db} is not a readable sqlite database (corrupt or not a store): move it aside "
        "and restore a backup of it, or set CHARRNN_RESULTS_DIR to another directory (a new store starts empty), "
        "then run the command again"]
