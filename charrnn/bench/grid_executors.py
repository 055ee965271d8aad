"""Grid wall time: `--executor ray` with 2 workers vs `--executor local`, same grid, same machine.

    python -m charrnn.bench.grid_executors [--steps 200] [--repeats 2] [--out FILE.json]

Runs `charrnn grid` end to end twice as subprocesses (process start, Ray start-up and every MLflow
write included), each into its own copy of an empty store (schema creation excluded from both),
checks that both give identical final metrics, and prints the wall times and the ratio of the
best of each. A script rather than a pytest test: it takes minutes, and `make test` must stay fast.
Run it on an otherwise idle machine (the load average before each run is recorded): with other
processes competing for the cores, torch's default of one intra-op thread per core makes the
local executor's small-model steps many times slower, which would inflate the ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from charrnn.paths import results_dir, write_atomic



def grid_file(directory: Path, steps: int) -> Path:
    """8 compute-bound runs: GRU/LSTM x hidden 64/96 x 2 seeds."""
    data = {"name": "executor_bench", "question": "How long does the grid take?", "task": "tinyshakespeare",
            "fixed": {"batch_size": 32, "seq_len": 64, "steps": steps, "eval_interval": max(1, steps // 3),
                      "eval_batches": 2, "sample_length": 50, "device": "cpu"},
            "axes": {"cell": ["gru", "lstm"], "hidden_size": [64, 96]}, "seeds": [0, 1],
            "profiles": {"quick": {}, "full": {}}}
    path = directory / "executor_bench.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def empty_store(directory: Path) -> Path:
    from charrnn.tracking.store import Tracker

    db = directory / "template" / "mlflow.db"
    db.parent.mkdir(parents=True)
    Tracker(f"sqlite:///{db}")
    return db


def timed_grid(path: Path, template: Path, results: Path, *extra: str) -> tuple[float, dict[str, float]]:
    results.mkdir(parents=True)
    shutil.copy(template, results / "mlflow.db")
    env = {**os.environ, "CHARRNN_RESULTS_DIR": str(results), "TQDM_DISABLE": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "charrnn", "grid", str(path), "--no-progress", *extra],
                   check=True, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    export = results / "runs.csv"
    subprocess.run([sys.executable, "-m", "charrnn", "export", "executor_bench", "--out", str(export)],
                   check=True, env=env, capture_output=True)
    import pandas as pd
    frame = pd.read_csv(export)
    return wall, dict(zip(frame["identity"], frame["final_val_loss"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved local/ray pairs; best of each")
    parser.add_argument("--out", default=str(results_dir() / "benchmarks" / "grid_executors.json"))
    args = parser.parse_args()
    walls: dict[str, list[float]] = {"local": [], "ray": []}
    load: dict[str, list[float]] = {"local": [], "ray": []}
    finals: dict[str, dict[str, float]] = {}
    executors = {"local": (), "ray": ("--executor", "ray", "--max-parallel", "2")}
    with tempfile.TemporaryDirectory(prefix="charrnn-executor-bench-") as tmp:
        tmp = Path(tmp)
        path, template = grid_file(tmp, args.steps), empty_store(tmp)
        for rep in range(args.repeats):
            for name, extra in executors.items():
                load[name].append(round(os.getloadavg()[0], 2))
                wall, finals[name] = timed_grid(path, template, tmp / f"{name}-{rep}", *extra)
                walls[name].append(round(wall, 2))
    result = {"runs": len(finals["local"]), "steps": args.steps, "cpus": os.cpu_count(),
              "local_wall_s": walls["local"], "ray_2_workers_wall_s": walls["ray"],
              "speedup_best_of": round(min(walls["local"]) / min(walls["ray"]), 3),
              "identical_final_val_loss": finals["local"] == finals["ray"],
              "load_average_before": load}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out, json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
