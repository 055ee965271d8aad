"""`charrnn bench` runs the kernel suite shipped inside the package, from any directory."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from charrnn.bench.suite import SUITE

REPO = Path(__file__).resolve().parent.parent


def test_the_suite_ships_inside_the_package():
    assert SUITE.is_dir() and SUITE.parent.name == "bench" and (SUITE / "conftest.py").is_file()
    assert REPO / "tests" not in SUITE.parents


@pytest.mark.slow
def test_console_bench_from_another_directory_writes_a_pytest_benchmark_json(tmp_path):
    results = tmp_path / "results"
    env = {**os.environ, "PYTHONPATH": str(REPO), "CHARRNN_RESULTS_DIR": str(results)}
    env.pop("MLFLOW_TRACKING_URI", None)
    charrnn = Path(sys.executable).parent / "charrnn"   # the console script of this environment
    select = "test_layer and gru-h16-b4-t8-l1-fp32-fwd_bwd and (fused or loop_bptt) and not compiled"
    proc = subprocess.run([str(charrnn), "bench", "--profile", "test", "-k", select, "--no-mlflow"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (path,) = (results / "benchmarks").glob("*.json")
    data = json.loads(path.read_text())
    assert {b["extra_info"]["backend"] for b in data["benchmarks"]} == {"fused", "loop_bptt"}
    assert all(b["stats"]["median"] > 0 for b in data["benchmarks"])
    assert data["machine_info"]["charrnn"]["profile"] == "test"
