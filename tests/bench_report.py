"""Render-time and size benchmark of a 200-run experiment report. Not collected by pytest.

    .venv/bin/python tests/bench_report.py [OUT_DIR]           # synthetic frames, render only
    .venv/bin/python tests/bench_report.py --store [OUT_DIR]   # through a real MLflow store

40 variants (cell × hidden_size × layers) × 5 seeds, 2,000 train-loss steps and 20 evaluations
per run, samples and predictions for every run. `--store` first writes those runs into a
temporary sqlite store (not timed), then times `charrnn report` end to end: reading runs,
curves and artifacts through `charrnn.science.results`, statistics, figures, HTML.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from claim_support import SCOPE  # noqa: E402
from report_synthetic import PROVENANCE_TAGS, make_experiment, predictions  # noqa: E402

AXES = {"cell": ["gru", "lstm"], "hidden_size": [64, 128, 256, 512, 1024], "layers": [1, 2, 4, 8]}
SEEDS = [0, 1, 2, 3, 4]
STEPS = 2000
CLAIM = {"source": "bench", **SCOPE, "metric": "val_loss", "expect": {"cell": "lstm", "better_than": "gru"}}


def experiment():
    exp = make_experiment("bench200", axes=AXES, seeds=SEEDS, steps=STEPS,
                          effect={"cell": {"lstm": -0.02}, "hidden_size": {1024: -0.1}}, claim=CLAIM)
    assert len(exp.runs) == 200, len(exp.runs)
    return exp


def write_store(exp) -> None:
    """The synthetic experiment as a grid parent run + 200 child runs in the current store."""
    import yaml

    from charrnn.tracking.store import Tracker

    tracker = Tracker()
    grid = {"name": exp.name, "question": exp.question, "claims": [CLAIM], "axes": AXES, "seeds": SEEDS}
    parent = tracker.start_run(exp.name, "grid", {}, tags={"charrnn.role": "grid"}, system_metrics=False)
    parent.log_text(yaml.safe_dump(grid), "grid.yaml")
    parent.end()
    curves = exp.curves.groupby("run_id")
    for _, row in exp.runs.iterrows():
        varied = {a: row[a] for a in AXES}
        run = tracker.start_run(exp.name, row["run_name"], {"task": "tinyshakespeare", **varied, "seed": row["seed"],
                                                            "param_count": row["param_count"]},
                                tags={"charrnn.role": "run", "charrnn.varied": json.dumps(varied), **PROVENANCE_TAGS},
                                parent_run_id=parent.run_id, system_metrics=False)
        rows = curves.get_group(row["run_id"])
        run.log_metric_rows([(m, v, 0, int(s)) for m, s, v in zip(rows["metric"], rows["step"], rows["value"])])
        run.log_metrics({"final_val_loss": row["final_val_loss"], "final_train_loss": row["final_train_loss"],
                         "train_time_s": row["wall_time_s"]}, STEPS)
        run.log_text(f"ROMEO: sample of {row['run_name']}", "samples/sample.txt")
        run.log_json(predictions("ROMEO: to be or not to be, that is the question"), "predictions.json")
        run.end()


def timed_store_report(exp, out: Path) -> tuple[float, Path]:
    os.environ["CHARRNN_RESULTS_DIR"] = str(out / "results")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    t0 = time.perf_counter()
    write_store(exp)
    print(f"store written in {time.perf_counter() - t0:.0f} s (not timed)")
    from charrnn.report.run import render_reports

    t0 = time.perf_counter()
    page, = render_reports([exp.name], out / "reports")
    return time.perf_counter() - t0, page.path


def timed_render(exp, out: Path) -> tuple[float, Path]:
    from charrnn.report.pages import render_experiment

    t0 = time.perf_counter()
    page = render_experiment(exp, out)
    return time.perf_counter() - t0, page.path


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--store"]
    exp = experiment()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args[0] if args else tmp)
        seconds, path = (timed_store_report if "--store" in sys.argv else timed_render)(exp, out)
        size = path.stat().st_size
    print(f"runs: {len(exp.runs)}  curve points: {len(exp.curves):,}")
    print(f"report: {seconds:.2f} s  size: {size / 1e6:.2f} MB  ({path.name})")


if __name__ == "__main__":
    main()
