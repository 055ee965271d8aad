"""Scale-out end to end: grid drivers on a 2-node Ray cluster (127.0.0.1, token auth) writing to an
MLflow tracking server. Many writers at once, failure isolation, and a worker node dying mid-run."""
from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

import pandas as pd
import pytest
import torch
from cluster_support import REPO, LocalCluster, TrackingServer
from grid_support import TINY_FIXED, children, empty_store_db, grid_data, parents, wait_for, write_grid  # noqa: F401

from charrnn.cli import main
from charrnn.grid.spec import load_grid
from charrnn.tags import FAILURE_TAG, NODE_LOST_TAG, NODE_TAG
from charrnn.tracking.store import Tracker
from charrnn.tracking.ui import UI_DEFAULT_VIEW_SCRIPT
from charrnn.run.train import Trainer

pytestmark = pytest.mark.slow
CPUS_PER_NODE = 2
GRID_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def scale_out(tmp_path_factory, empty_store_db):
    """(tracking server, 2-node cluster, results dir), started side by side, both stopped at the end."""
    root = tmp_path_factory.mktemp("scale-out")
    server = TrackingServer(root / "server-results", root / "server.log", empty_store_db)
    cluster = LocalCluster(CPUS_PER_NODE, root / "cluster.log")
    try:
        yield server.wait_ready(), cluster.wait_ready(), root
    finally:
        cluster.stop()
        server.stop()


def driver_env(server: TrackingServer, cluster: LocalCluster, results) -> dict[str, str]:
    return {**cluster.env, "MLFLOW_TRACKING_URI": server.uri, "RAY_ADDRESS": cluster.address,
            "CHARRNN_RESULTS_DIR": str(results), "TQDM_DISABLE": "1"}


def start_grid(env: dict, path, *flags: str, log, code: str | None = None) -> subprocess.Popen:
    """`charrnn grid PATH --executor ray` as a driver process (or `code` run with those arguments)."""
    head = [sys.executable, "-c", code, "grid"] if code else [sys.executable, "-m", "charrnn", "grid"]
    return subprocess.Popen([*head, str(path), "--executor", "ray", "--no-progress", *flags], cwd=REPO,
                            env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def finish(proc: subprocess.Popen, log) -> tuple[int, str]:
    try:
        code = proc.wait(timeout=GRID_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    return code, log.read_text()


def test_the_tracking_servers_ui_opens_on_the_model_training_views(scale_out):
    server, _, _ = scale_out
    with urllib.request.urlopen(f"{server.uri}/", timeout=10) as reply:
        assert UI_DEFAULT_VIEW_SCRIPT in reply.read().decode()


def test_two_grid_drivers_and_four_ray_workers_on_one_server_train_each_spec_once(scale_out):
    server, cluster, root = scale_out
    path = write_grid(root, grid_data(name="writers"), name="writers.yaml")       # 8 RunSpecs
    env = driver_env(server, cluster, root / "results")
    logs = [root / f"writers{i}.log" for i in range(2)]
    # 4 CPUs in the cluster, --max-parallel 4: one CPU per task, four tasks at once over both drivers
    procs = [start_grid(env, path, "--max-parallel", "4", log=log) for log in logs]
    outputs = [finish(proc, log) for proc, log in zip(procs, logs)]
    assert [code for code, _ in outputs] == [0, 0], outputs
    texts = [text for _, text in outputs] + [(root / "server.log").read_text()]
    assert not [t for t in texts if "database is locked" in t]
    assert sum(text.count("\nfinished ") for _, text in outputs) == 8
    tracker = Tracker(server.uri)
    runs = tracker.runs("writers")
    kids = children(runs)
    assert len(kids) == 8 and len({r.identity for r in kids}) == 8
    assert all(r.status == "FINISHED" for r in kids)
    for run in kids:  # trained once: one loss per step, never replayed
        steps = [s for s, _, _ in tracker.metric_history(run.run_id, "train_loss")]
        assert sorted(steps) == list(range(TINY_FIXED["steps"]))
    assert [p.status for p in parents(runs)] == ["FINISHED", "FINISHED"]


# The driver with one variant's worker sabotaged: __main__ functions reach Ray workers by value.
FAULTY_DRIVER = """
import os, signal, sys
from charrnn.grid import worker
from charrnn.cli import main

def faulty_task(cfg, run_id, resume, queue, threads):
    if cfg.cell == "gru":
        raise RuntimeError("injected failure in the gru worker")
    if cfg.cell == "lstm":
        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would
    return train_task(cfg, run_id, resume, queue, threads)

train_task = worker.train_task
worker.train_task = faulty_task   # the executor imports it when it submits the first run
sys.exit(main(sys.argv[1:]))
"""


def test_a_raising_or_killed_worker_fails_only_its_run_with_the_reason(scale_out):
    server, cluster, root = scale_out
    data = grid_data(name="faults", claims=None, seeds=[0], axes={"cell": ["vanilla", "gru", "lstm"]},
                     fixed=TINY_FIXED)
    path = write_grid(root, data, name="faults.yaml")
    log = root / "faults.log"
    code, text = finish(start_grid(driver_env(server, cluster, root / "results"), path, log=log,
                                   code=FAULTY_DRIVER), log)
    assert code == 1, text
    runs = Tracker(server.uri).runs("faults")
    status = {r.name: (r.status, r.tags.get(FAILURE_TAG, "")) for r in children(runs)}
    assert status["cell=vanilla,seed=0"] == ("FINISHED", "")
    assert status["cell=gru,seed=0"][0] == "FAILED"
    assert "injected failure in the gru worker" in status["cell=gru,seed=0"][1]
    assert status["cell=lstm,seed=0"][0] == "FAILED"
    assert "WorkerCrashedError" in status["cell=lstm,seed=0"][1]
    assert [p.status for p in parents(runs)] == ["FAILED"]


NODE_LOSS_FIXED = {"hidden_size": 64, "batch_size": 16, "seq_len": 32, "steps": 600, "eval_interval": 50,
                   "eval_batches": 2, "sample_length": 20, "device": "cpu"}


def run_on(tracker: Tracker, node_id: str):
    """The RUNNING run training on `node_id` (its worker tags it at start), if any yet."""
    runs = children(tracker.runs("node_loss"))
    return next((r for r in runs if r.status == "RUNNING" and r.tags.get(NODE_TAG) == node_id), None)


def past_first_checkpoint(tracker: Tracker, run_id: str) -> int | None:
    """The last stored step once the run has a checkpoint and most of its steps still to go."""
    top = max((s for s, _, _ in tracker.metric_history(run_id, "train_loss")), default=-1)
    if top >= NODE_LOSS_FIXED["steps"] - 3 * NODE_LOSS_FIXED["eval_interval"]:
        raise AssertionError(f"the run reached step {top} before the node could be removed")
    return top if top >= NODE_LOSS_FIXED["eval_interval"] else None


def test_run_on_a_removed_worker_node_resumes_from_its_checkpoint_on_the_other_node(scale_out):
    server, cluster, root = scale_out
    data = grid_data(name="node_loss", claims=None, seeds=[0], axes={"cell": ["vanilla", "gru"]},
                     fixed=NODE_LOSS_FIXED)
    path = write_grid(root, data, name="node_loss.yaml")
    log = root / "node_loss.log"
    # --max-parallel 2: each task takes a whole node's 2 CPUs, so one run trains on each node
    proc = start_grid(driver_env(server, cluster, root / "results"), path, "--max-parallel", "2", log=log)
    tracker = Tracker(server.uri)
    try:
        victim = wait_for(lambda: run_on(tracker, cluster.worker_node_id), timeout=GRID_TIMEOUT_S, every=0.1)
        wait_for(lambda: past_first_checkpoint(tracker, victim.run_id), timeout=GRID_TIMEOUT_S, every=0.05)
    except AssertionError as err:
        proc.kill()
        raise AssertionError(f"{err}\n{log.read_text()[-3000:]}") from None
    removed_ms = int(time.time() * 1000)
    # the store lags the workers (the driver replays their messages): was the run still training?
    assert "ray::train_task" in cluster.remove_worker_node(), "the run had ended before its node died"
    code, text = finish(proc, log)
    assert code == 0, text

    kids = children(tracker.runs("node_loss"))
    assert len(kids) == 2 and all(r.status == "FINISHED" for r in kids), text
    moved = [r for r in kids if NODE_LOST_TAG in r.tags]
    assert len(moved) == 1, (victim.run_id, [dict(r.tags) for r in kids], text[-6000:])
    moved = moved[0]
    assert moved.run_id == victim.run_id and moved.tags[NODE_TAG] == cluster.head_node_id
    assert "node" in moved.tags[NODE_LOST_TAG].lower()
    resumed_from = int(moved.tag("resumed_from_step"))
    assert resumed_from >= NODE_LOSS_FIXED["eval_interval"]
    history = tracker.metric_history(moved.run_id, "train_loss")
    before = [step for step, _, ts in history if ts < removed_ms]
    after = [step for step, _, ts in history if ts >= removed_ms]
    # the second node started at the checkpoint, at or before the last step the first one had stored,
    # and logged from the first step not stored yet (steps the first node had stored are not logged twice)
    assert before and resumed_from <= max(before) + 1
    assert after and min(after) == max(resumed_from, max(before) + 1)
    assert sorted(step for step, _, _ in history) == list(range(NODE_LOSS_FIXED["steps"]))   # each step once
    assert f"resumed from step {resumed_from}" in text

    spec = next(s for s in load_grid(path).expand("quick") if s.identity == moved.identity)
    threads = torch.get_num_threads()
    torch.set_num_threads(CPUS_PER_NODE)  # as in the Ray task
    try:
        expected = Trainer(spec.config, progress=False).fit().final
    finally:
        torch.set_num_threads(threads)
    assert moved.metrics["final_val_loss"] == expected["final_val_loss"]
    assert moved.metrics["final_train_loss"] == pytest.approx(expected["final_train_loss"], rel=1e-12)


def test_train_grid_sample_report_and_export_work_against_the_tracking_server(scale_out, tmp_path, monkeypatch,
                                                                               capsys):
    server, _, _ = scale_out
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    monkeypatch.setenv("CHARRNN_RESULTS_DIR", str(tmp_path / "results"))  # locks and exports only
    tiny = [f"{k}={v}" for k, v in TINY_FIXED.items()]
    assert main(["train", *tiny, "--experiment", "via_server", "--no-progress"]) == 0
    run_id = capsys.readouterr().out.split("run_id: ")[1].split()[0]
    assert main(["sample", run_id, "--length", "20"]) == 0  # its checkpoint comes from the server
    assert len(capsys.readouterr().out.strip()) >= 20

    data = grid_data(name="served", seeds=[0, 1], axes={"cell": ["vanilla", "gru"]}, fixed=TINY_FIXED)
    path = write_grid(tmp_path, data, name="served.yaml")
    assert main(["grid", str(path), "--no-progress"]) == 0
    assert main(["report", "served", "--out", str(tmp_path / "reports")]) == 0
    page = (tmp_path / "reports" / "served.html").read_text()
    assert "served" in page
    assert main(["export", "served", "--out", str(tmp_path / "served.csv")]) == 0
    table = pd.read_csv(tmp_path / "served.csv")
    assert len(table) == 4 and table["final_val_loss"].notna().all()
    stored = list((server.results / "mlartifacts").rglob("checkpoint.pt"))
    assert len(stored) >= 5  # every run's checkpoint sits in the server's artifact store
    assert not list((tmp_path / "results").rglob("checkpoint.pt"))
