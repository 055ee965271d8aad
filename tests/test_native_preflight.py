"""Backends `loop_native` and `min_native` are checked before any run exists: without a C++ compiler `train` and
`grid` exit 2 with one line and leave the store alone; a failed build is tried once per process."""
from __future__ import annotations


import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch.utils.cpp_extension
from grid_support import write_grid

from charrnn import capabilities
from charrnn.cli import main
from charrnn.rnn import native_rnn
from charrnn.tracking.store import Tracker

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_compiler(tmp_path, monkeypatch):
    """PATH holds no C++ compiler (an empty directory); the process's loop_native answer is forgotten
    before and after."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    capabilities.native_support.cache_clear()
    yield empty
    capabilities.native_support.cache_clear()


@pytest.mark.slow
def test_train_loop_native_without_a_compiler_exits_2_in_one_line_and_creates_no_run(tmp_path, no_compiler):
    results = tmp_path / "results"
    env = {**os.environ, "PYTHONPATH": str(REPO), "CHARRNN_RESULTS_DIR": str(results)}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run([sys.executable, "-m", "charrnn", "train", "backend=loop_native", "cell=gru", "steps=2"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "backend='loop_native': no C++ compiler" in proc.stderr
    assert not results.exists()   # no store, so no run


@pytest.mark.parametrize("backend,cell,fallback",
                         [("loop_native", "gru", "loop_bptt"), ("min_native", "mingru", "loop")])
def test_grid_preflight_refuses_a_native_backend_without_a_compiler(results_dir, tmp_path, no_compiler, capsys,
                                                                    backend, cell, fallback):
    path = write_grid(tmp_path, axes={"cell": [cell]}, seeds=[0], claims=None,
                      fixed={"backend": backend, "hidden_size": 8, "steps": 2, "device": "cpu"})
    assert main(["grid", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"backend='{backend}': no C++ compiler" in err
    assert re.search(rf"\b{fallback}\b", err.split("valid here:")[1])   # a Python fallback is named
    assert not results_dir.exists() or Tracker().runs("tiny") == []


def test_a_failed_build_is_tried_once_per_process(monkeypatch):
    calls = []

    def failing_load(**kwargs):
        calls.append(kwargs["name"])
        raise RuntimeError("Error building extension 'charrnn_native'\nmore compiler output")

    monkeypatch.setattr(torch.utils.cpp_extension, "load", failing_load)
    monkeypatch.setattr(native_rnn, "_BUILT", [])
    for _ in range(3):
        with pytest.raises(native_rnn.NativeBuildError, match="^RuntimeError: Error building extension"):
            native_rnn.ops()
    assert len(calls) == 1
