"""`charrnn bench` and `charrnn bench-table`: the kernel suite (charrnn/bench/timed, shipped with
the package) under pytest-benchmark → JSON in results/benchmarks/, the text table, one MLflow run
in `kernels`. Runs from any directory: the suite is found beside this module.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from charrnn.bench.cases import profile_named
from charrnn.bench.results import best_custom, format_table, read_results, table_rows
from charrnn.bench.workloads import bench_device, device_name
from charrnn.paths import results_dir

SUITE = Path(__file__).resolve().parent / "timed"   # the pytest-benchmark files of the suite
KERNEL_TABLE = "kernels.json"   # the MLflow table of one bench run: a row per case


# --------------------------------------------------------------------------- the bench command

def output_path(results: Path, device: torch.device, now: datetime | None = None) -> Path:
    """results/benchmarks/<host>-<device>-<timestamp>.json"""
    now = now or datetime.now(timezone.utc)
    name = device_name(device) if device.type == "cuda" else device.type
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    host = re.sub(r"[^A-Za-z0-9.-]+", "-", socket.gethostname())
    return results / "benchmarks" / f"{host}-{slug}-{now:%Y%m%dT%H%M%SZ}.json"


def pytest_command(profile: str, json_path: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", str(SUITE), "-q", "-p", "no:cacheprovider",
            "--benchmark-enable", "--benchmark-only", f"--bench-profile={profile}",
            f"--benchmark-json={json_path}", "--benchmark-columns=median,iqr,rounds",
            "--benchmark-sort=name", *extra]


def run_suite(profile: str, json_path: Path, extra: list[str], timeout_s: float | None = None) -> tuple[int, float]:
    """The suite as a subprocess → (exit code, wall seconds); 124 when it ran past `timeout_s`.
    Cold compiles: inductor's on-disk caches off, so compile_s is what a first run pays."""
    env = {**os.environ, "TORCHINDUCTOR_FORCE_DISABLE_CACHES": "1"}
    start = time.perf_counter()
    try:
        code = subprocess.run(pytest_command(profile, json_path, extra), env=env, timeout=timeout_s).returncode
    except subprocess.TimeoutExpired:
        code = 124
    return code, time.perf_counter() - start


def log_to_mlflow(json_path: Path, profile: str, wall_s: float, exit_code: int) -> str:
    """One run in experiment `kernels`: the JSON as artifact, every row as one MLflow table
    (`kernels.json`, the UI's table view), the text table, and as metrics only the headline:
    best custom / fused per shape."""
    from charrnn.tracking.store import Tracker

    data = read_results(json_path)
    rows = table_rows(data)
    device = data["machine_info"].get("charrnn", {})
    run = Tracker().start_run(
        "kernels", f"bench-{profile}-{device.get('device', 'unknown')}",
        params={"profile": profile, "benchmarks": len(rows), "skipped": len(data.get("skipped", [])),
                **device}, tags={"charrnn.kind": "bench"}, system_metrics=False)
    run.log_artifact(json_path, "benchmarks")
    run.log_text(format_table(data), "summary.txt")
    run.log_table(rows, KERNEL_TABLE)
    metrics = {"wall_s": wall_s, "pytest_exit_code": float(exit_code)}
    metrics |= {f"best_over_fused.{shape}": ratio for shape, (_, ratio) in best_custom(rows).items()}
    run.log_metrics({re.sub(r"[^\w\-. :/]", "_", k): v for k, v in metrics.items()}, step=0)
    run.end("FINISHED" if exit_code == 0 else "FAILED",
            failure=None if exit_code == 0 else f"pytest exit code {exit_code}")
    return run.run_id


def run_bench(profile: str, extra: list[str], mlflow: bool = True) -> int:
    """`charrnn bench`: the suite under pytest-benchmark → JSON, table, MLflow run `kernels`."""
    profile_named(profile)  # ConfigError listing the valid profiles
    json_path = output_path(results_dir(), bench_device())
    json_path.parent.mkdir(parents=True, exist_ok=True)
    code, wall_s = run_suite(profile, json_path, extra)
    if not json_path.exists():
        print(f"charrnn bench: pytest exited {code} and wrote no JSON", file=sys.stderr)
        return code or 1
    print(format_table(read_results(json_path)))
    print(f"\nJSON: {json_path}\nwall time: {wall_s:.0f} s")
    if mlflow:
        print(f"MLflow run (experiment kernels): {log_to_mlflow(json_path, profile, wall_s, code)}")
    return code
