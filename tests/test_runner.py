"""`charrnn grid` end to end: layout in MLflow, idempotency, resume after kills, concurrency,
failure isolation, and the Ray executor matching the local one."""
from __future__ import annotations

import math
from types import MappingProxyType

import pytest
from grid_support import (TINY_FIXED, children, empty_store_db, grid_data, heavy_imports,  # noqa: F401
                          kill_tree, parents, run_charrnn, runs_of, start_charrnn, store, tracker_at,
                          wait_for, write_grid)

import charrnn.grid.executors as executors
import charrnn.run.runner as runner
from charrnn.cli import main
from charrnn.grid.spec import load_grid
from charrnn.grid.locks import FileLock, lock_path
from charrnn.grid.session import HOST, NEW, RESUME, SKIP, GridSession, decide
from charrnn.paths import results_dir
from charrnn.tracking.store import StoredRun, Tracker
from charrnn.run.train import Trainer
from charrnn.grid.worker import QueueRun


def uninterrupted_final(cfg) -> dict[str, float]:
    return Trainer(cfg, progress=False).fit().final


def by_name(runs):
    return {r.name: r for r in runs}


def by_metric(runs):
    return {r.run_id: r.metrics["final_val_loss"] for r in runs}


# --------------------------------------------------------------------------- layout, idempotency

@pytest.mark.slow
def test_grid_trains_eight_children_under_one_parent_then_skips_all_eight(store, tmp_path, capsys):
    path = write_grid(tmp_path)
    assert main(["grid", str(path), "--no-progress"]) == 0
    first = capsys.readouterr().out
    assert "8 finished, 0 skipped, 0 failed" in first
    runs = runs_of("tiny", store)
    (parent,), kids = parents(runs), children(runs)
    assert len(kids) == 8 and all(r.status == "FINISHED" for r in kids)
    assert {r.parent_run_id for r in kids} == {parent.run_id}
    assert len({r.identity for r in kids}) == 8
    assert parent.status == "FINISHED" and parent.tag("grid") == "tiny" and parent.tag("profile") == "quick"
    run = by_name(kids)["cell=gru,hidden_size=16,seed=1"]
    assert (run.tag("grid"), run.tag("profile"), run.tag("variant")) == ("tiny", "quick", "cell=gru,hidden_size=16")
    assert run.params["cell"] == "gru" and run.params["hidden_size"] == "16" and int(run.params["param_count"]) > 0
    assert "final_val_loss" in run.metrics
    assert Tracker().artifact_text(parent.run_id, "grid.yaml") == path.read_text()

    assert main(["grid", str(path), "--no-progress"]) == 0
    again = capsys.readouterr().out
    assert "0 finished, 8 skipped, 0 failed" in again and "every run is already FINISHED" in again
    assert "nothing to train: no new parent run" in again
    runs = runs_of("tiny", store)
    assert len(children(runs)) == 8 and len(parents(runs)) == 1


def test_dry_run_reports_store_status_without_writing(store, tmp_path, capsys):
    path = write_grid(tmp_path, axes={"cell": ["gru"]}, seeds=[0], claims=None)
    assert main(["grid", str(path), "--no-progress"]) == 0
    before = len(runs_of("tiny", store))
    assert main(["grid", str(path), "--dry-run", "--profile", "full"]) == 0
    assert main(["grid", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "FINISHED  skip" in out and "-      train" in out
    assert len(runs_of("tiny", store)) == before


# --------------------------------------------------------------------------- failure isolation

DIVERGING = {"cell": "vanilla", "backend": "loop", "activation": "identity", "optimizer": "sgd",
             "grad_clip": 0, "steps": 30, "eval_interval": 10}


def test_diverging_variant_fails_with_reason_while_the_others_finish(store, tmp_path, capsys):
    path = write_grid(tmp_path, axes={"lr": [1e6, 0.01]}, seeds=[0, 1], claims=None,
                      fixed={**TINY_FIXED, **DIVERGING})
    assert main(["grid", str(path), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "2 finished, 0 skipped, 2 failed" in out and "diverged at step" in out
    kids = by_name(children(runs_of("tiny", store)))
    for seed in (0, 1):
        assert kids[f"lr=1e+06,seed={seed}"].status == "FAILED"
        assert kids[f"lr=1e+06,seed={seed}"].tag("failure").startswith("diverged at step ")
        assert kids[f"lr=0.01,seed={seed}"].status == "FINISHED"
    assert parents(runs_of("tiny", store))[0].status == "FAILED"

    assert main(["grid", str(path), "--no-progress", "--no-rerun-failed"]) == 0
    assert "0 finished, 4 skipped, 0 failed" in capsys.readouterr().out
    assert main(["grid", str(path), "--no-progress"]) == 1  # re-runs (resumes) the failed ones
    assert "0 finished, 2 skipped, 2 failed" in capsys.readouterr().out
    assert len(children(runs_of("tiny", store))) == 4


def test_exception_inside_training_fails_only_that_run(store, tmp_path, monkeypatch, capsys):
    original = Trainer.fit

    def fit(self):
        if self.cfg.cell == "lstm":
            raise RuntimeError("CUDA out of memory (simulated)")
        return original(self)

    monkeypatch.setattr(Trainer, "fit", fit)
    path = write_grid(tmp_path, axes={"cell": ["lstm", "gru"]}, seeds=[0], claims=None)
    assert main(["grid", str(path), "--no-progress"]) == 1
    kids = by_name(children(runs_of("tiny", store)))
    assert kids["cell=lstm,seed=0"].status == "FAILED"
    assert kids["cell=lstm,seed=0"].tag("failure") == "RuntimeError: CUDA out of memory (simulated)"
    assert kids["cell=gru,seed=0"].status == "FINISHED"


# --------------------------------------------------------------------------- resume (in process)

class InterruptingRun:
    """Wraps a run; raises KeyboardInterrupt (like Ctrl-C) right after a chosen call."""

    def __init__(self, run, method: str, nth: int):
        self._run, self._method, self._left = run, method, nth

    def __getattr__(self, name):
        attr = getattr(self._run, name)
        if name != self._method:
            return attr

        def call(*args, **kwargs):
            attr(*args, **kwargs)
            self._left -= 1
            if self._left == 0:
                raise KeyboardInterrupt

        return call


def interrupt_second_run(monkeypatch, method: str, nth: int) -> None:
    """Patch the executor so that its second run is interrupted after `nth` calls of `method`."""
    calls = []
    original = runner.train_run

    def train_run(cfg, run, resume=None, progress=True, clock=None):
        calls.append(cfg)
        if len(calls) == 2:
            run = InterruptingRun(run, method, nth)
        return original(cfg, run, resume, progress, clock)

    monkeypatch.setattr(runner, "train_run", train_run)   # the executor imports it when a run trains


RESUME_GRID = {"axes": {"cell": ["vanilla", "gru"]}, "seeds": [0], "claims": None,
               "fixed": {**TINY_FIXED, "steps": 10, "eval_interval": 4}}  # checkpoints at 4, 8, 10


def interrupted_grid(tmp_path, method: str, nth: int):
    path = write_grid(tmp_path, **RESUME_GRID)
    with pytest.MonkeyPatch.context() as patch:
        interrupt_second_run(patch, method, nth)
        assert main(["grid", str(path), "--no-progress"]) == 130
    return path


def test_interrupted_run_resumes_from_its_checkpoint_and_matches_an_uninterrupted_run(
        store, tmp_path, capsys):
    path = interrupted_grid(tmp_path, "log_artifact", 2)  # killed after the step-8 checkpoint
    runs = runs_of("tiny", store)
    assert parents(runs)[0].status == "KILLED"
    assert by_name(children(runs))["cell=gru,seed=0"].status == "KILLED"

    assert main(["grid", str(path), "--no-progress"]) == 0
    assert "KILLED earlier; resumed from step 8" in capsys.readouterr().out
    runs = runs_of("tiny", store)
    kids = children(runs)
    assert len(kids) == 2 and all(r.status == "FINISHED" for r in kids)
    assert not [r for r in runs if r.status == "RUNNING"]
    resumed = by_name(kids)["cell=gru,seed=0"]
    assert resumed.tag("resumed_from_step") == "8" and "failure" not in resumed.tags
    expected = uninterrupted_final(load_grid(path).expand("quick")[1].config)
    assert resumed.metrics["final_val_loss"] == expected["final_val_loss"]
    assert resumed.metrics["final_train_loss"] == pytest.approx(expected["final_train_loss"], rel=1e-12)
    steps = [s for s, _, _ in Tracker().metric_history(resumed.run_id, "train_loss")]
    assert sorted(steps) == list(range(10))


def test_a_run_resumed_behind_its_last_logged_step_logs_each_step_once(store, tmp_path):
    # interrupted after the train losses of steps 8 and 9: ending KILLED flushes them, but the
    # checkpoint it resumes from is the one of step 8
    path = interrupted_grid(tmp_path, "log_metrics", 12)
    killed = by_name(children(runs_of("tiny", store)))["cell=gru,seed=0"]
    assert [s for s, _, _ in Tracker().metric_history(killed.run_id, "train_loss")] == list(range(10))

    assert main(["grid", str(path), "--no-progress"]) == 0
    resumed = by_name(children(runs_of("tiny", store)))["cell=gru,seed=0"]
    assert resumed.status == "FINISHED" and resumed.tag("resumed_from_step") == "8"
    for key in ("train_loss", "grad_norm", "val_loss", "final_val_loss"):
        steps = [s for s, _, _ in Tracker().metric_history(resumed.run_id, key)]
        assert len(steps) == len(set(steps)), (key, steps)
    assert sorted(s for s, _, _ in Tracker().metric_history(resumed.run_id, "train_loss")) == list(range(10))
    expected = uninterrupted_final(load_grid(path).expand("quick")[1].config)
    assert resumed.metrics["final_val_loss"] == expected["final_val_loss"]
    assert resumed.metrics["final_train_loss"] == pytest.approx(expected["final_train_loss"], rel=1e-12)


def test_run_killed_while_logging_its_outputs_is_evaluated_again(store, tmp_path):
    path = interrupted_grid(tmp_path, "log_text", 3)  # 2 provenance files, then the sample
    assert main(["grid", str(path), "--no-progress"]) == 0
    resumed = by_name(children(runs_of("tiny", store)))["cell=gru,seed=0"]
    assert resumed.status == "FINISHED" and resumed.tag("resumed_from_step") == "10"
    expected = uninterrupted_final(load_grid(path).expand("quick")[1].config)
    assert resumed.metrics["final_val_loss"] == expected["final_val_loss"]
    assert resumed.metrics["final_train_loss"] == pytest.approx(expected["final_train_loss"], rel=1e-12)


def test_unreadable_checkpoint_restarts_the_run_from_step_zero(store, tmp_path):
    path = interrupted_grid(tmp_path, "log_artifact", 1)
    killed = by_name(children(runs_of("tiny", store)))["cell=gru,seed=0"]
    (ckpt,) = store.glob(f"mlartifacts/tiny/{killed.run_id}/artifacts/checkpoint/checkpoint.pt")
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # as if killed mid-upload
    assert main(["grid", str(path), "--no-progress"]) == 0
    resumed = by_name(children(runs_of("tiny", store)))["cell=gru,seed=0"]
    assert resumed.status == "FINISHED" and resumed.tag("resumed_from_step") == "0"
    assert "checkpoint unreadable" in resumed.tag("resume_note")
    expected = uninterrupted_final(load_grid(path).expand("quick")[1].config)
    assert resumed.metrics["final_val_loss"] == expected["final_val_loss"]


# --------------------------------------------------------------------------- decisions, reaping

def stored(status: str, start: int = 1, end: int | None = 5, **tags) -> StoredRun:
    return StoredRun(f"id-{status}-{start}", "r", status, start, end,
                     MappingProxyType({f"charrnn.{k}": v for k, v in tags.items()}),
                     MappingProxyType({}), MappingProxyType({}))


def never_alive(run):
    return False


@pytest.mark.parametrize("runs, rerun, alive, action, note", [
    ([], True, never_alive, NEW, ""),
    ([stored("FAILED"), stored("FINISHED", 2)], True, never_alive, SKIP, "already FINISHED"),
    ([stored("FAILED")], True, never_alive, RESUME, "FAILED earlier"),
    ([stored("FAILED")], False, never_alive, SKIP, "not re-run"),
    ([stored("KILLED")], False, never_alive, RESUME, "KILLED earlier"),
    ([stored("RUNNING", end=None)], True, never_alive, RESUME, "owner died"),
    ([stored("RUNNING", end=None, owner_pid="7")], True, lambda r: True, SKIP, "RUNNING, owned by pid 7"),
    ([stored("FAILED", end=50)], True, never_alive, SKIP, "FAILED by another invocation"),
])
def test_decide_what_to_do_with_a_run_spec(runs, rerun, alive, action, note):
    decision = decide(runs, rerun, since_ms=10, alive=alive)
    assert decision.action == action and note in decision.note


def test_running_run_is_reaped_only_once_its_owner_lock_is_free(store, tmp_path):
    grid = load_grid(write_grid(tmp_path, axes={"cell": ["gru"]}, seeds=[0], claims=None))
    spec, tracker = grid.expand("quick")[0], Tracker()
    orphan = tracker.start_run("tiny", spec.run_name, {}, system_metrics=False, tags={
        "charrnn.role": "run", "charrnn.identity": spec.identity, "charrnn.owner_host": HOST})
    session = GridSession(tracker, grid, "quick", (spec,), progress=False)
    with FileLock(lock_path(results_dir(), "tiny", spec.identity)):
        assert session.reap() == []
    assert tracker.run(orphan.run_id).status == "RUNNING"
    assert session.reap() == [orphan.run_id]
    assert tracker.run(orphan.run_id).status == "KILLED"


def test_queue_run_messages_replay_onto_the_real_run(store, tmp_path):
    tracker = Tracker()
    run = tracker.start_run("q", "r", {}, system_metrics=False)
    sent = []
    remote = QueueRun(run.run_id, type("Q", (), {"put": staticmethod(sent.append)})(), flush_every=3)
    remote.log_params({"a": 1})
    remote.set_tags({"charrnn.x": "y"})
    for step in range(4):
        remote.log_metrics({"train_loss": 1.0 / (step + 1)}, step)
    (tmp_path / "ckpt.pt").write_bytes(b"weights")
    remote.log_artifact(tmp_path / "ckpt.pt", "checkpoint")
    remote.log_json({"k": [1]}, "predictions.json")
    remote.end("FINISHED")
    for run_id, method, args in sent:
        executors.apply_message(run if run_id == run.run_id else None, method, args)
    stored_run = tracker.run(run.run_id)
    assert stored_run.status == "FINISHED" and stored_run.params == {"a": "1"} and stored_run.tag("x") == "y"
    assert [s for s, _, _ in tracker.metric_history(run.run_id, "train_loss")] == [0, 1, 2, 3]
    assert tracker.artifact_text(run.run_id, "predictions.json").replace(" ", "").replace("\n", "") == '{"k":[1]}'
    assert (tracker.download(run.run_id, "checkpoint/ckpt.pt", tmp_path / "dl")).read_bytes() == b"weights"


def test_ray_worker_code_never_imports_mlflow():
    """Workers write only through the driver's queue: they cannot even reach the store."""
    assert heavy_imports("charrnn.grid.worker") == ["torch"]


@pytest.mark.parametrize("cluster, max_parallel, expected", [
    ({"CPU": 2.0}, None, (1, 0.0, 2)),
    ({"CPU": 16.0}, 4, (4, 0.0, 4)),
    ({"CPU": 16.0, "GPU": 2.0}, None, (8, 1.0, 2)),
    ({"CPU": 8.0, "GPU": 1.0}, 4, (2, 0.25, 4)),
])
def test_ray_task_resources_split_the_cluster(cluster, max_parallel, expected):
    assert executors.task_resources(cluster, max_parallel) == expected


# --------------------------------------------------------------------------- processes (slow)

KILL_GRID = {"axes": {"cell": ["vanilla", "gru", "lstm"]}, "seeds": [0], "claims": None,
             "fixed": {"hidden_size": 16, "batch_size": 8, "seq_len": 16, "steps": 150, "eval_interval": 10,
                       "eval_batches": 1, "sample_length": 20, "device": "cpu"}}


def checkpointed_running_child(store):
    """Once a child has FINISHED: a RUNNING child with a checkpoint on disk and most steps to go."""
    kids = children(runs_of("tiny", store))
    if not any(r.status == "FINISHED" for r in kids):
        return None
    for run in kids:
        if run.status == "RUNNING" and list(store.glob(f"mlartifacts/tiny/{run.run_id}/artifacts/checkpoint/*")):
            history = tracker_at(store / "mlflow.db").metric_history(run.run_id, "val_loss")
            if history and max(s for s, _, _ in history) < 90:
                return run
    return None


@pytest.mark.slow
def test_sigkill_of_the_process_tree_then_rerun_ends_with_one_finished_run_per_spec(store, tmp_path):
    path = write_grid(tmp_path, **KILL_GRID)
    proc = start_charrnn("grid", str(path), "--no-progress", log=tmp_path / "first.log")
    victim = wait_for(lambda: checkpointed_running_child(store), timeout=240)
    kill_tree(proc)
    runs = runs_of("tiny", store)
    assert {r.status for r in runs if r.run_id in (victim.run_id, parents(runs)[0].run_id)} == {"RUNNING"}
    finished_before = {r.run_id: r.metrics["final_val_loss"] for r in children(runs) if r.status == "FINISHED"}

    done = run_charrnn("grid", str(path), "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    runs = runs_of("tiny", store)
    kids = children(runs)
    assert len(kids) == 3 and all(r.status == "FINISHED" for r in kids)
    assert len({r.identity for r in kids}) == 3
    assert not [r for r in runs if r.status == "RUNNING"]
    assert [p.status for p in parents(runs)] == ["KILLED", "FINISHED"]
    assert {k: v for k, v in by_metric(kids).items() if k in finished_before} == finished_before
    resumed = next(r for r in kids if r.run_id == victim.run_id)
    assert int(resumed.tag("resumed_from_step")) >= 10
    spec = next(s for s in load_grid(path).expand("quick") if s.identity == resumed.identity)
    assert resumed.metrics["final_val_loss"] == uninterrupted_final(spec.config)["final_val_loss"]


@pytest.mark.slow
def test_two_concurrent_grid_processes_never_train_a_run_spec_twice(results_dir, tmp_path):
    # A fresh store on purpose: the two processes also race to create it.
    fixed = {**grid_data()["fixed"], "steps": 40, "eval_interval": 20}
    path = write_grid(tmp_path, fixed=fixed)
    procs = [start_charrnn("grid", str(path), "--no-progress", log=tmp_path / f"p{i}.log") for i in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    logs = [(tmp_path / f"p{i}.log").read_text() for i in range(2)]
    trained = sum(log.count("\nfinished ") for log in logs)
    assert trained == 8, logs
    runs = runs_of("tiny", results_dir)
    kids = children(runs)
    assert len(kids) == 8 and len({r.identity for r in kids}) == 8
    assert all(r.status == "FINISHED" for r in kids)
    for run in kids:  # trained once: one loss per step, never replayed
        steps = [s for s, _, _ in Tracker().metric_history(run.run_id, "train_loss")]
        assert sorted(steps) == list(range(40))
    assert [p.status for p in parents(runs)] == ["FINISHED", "FINISHED"]


@pytest.mark.slow
def test_ray_executor_gives_the_same_final_metrics_as_local(store, tmp_path, monkeypatch, empty_store_db):
    import ray

    grid = load_grid(write_grid(tmp_path))
    local = executors.run_grid(grid, "quick", progress=False)
    local_final = {r.spec.identity: r.final for r in local.results}

    other = tmp_path / "ray-results"
    other.mkdir()
    other.joinpath("mlflow.db").write_bytes(empty_store_db.read_bytes())
    monkeypatch.setenv("CHARRNN_RESULTS_DIR", str(other))
    ray.init(address="local", num_cpus=2, include_dashboard=False)  # the 2-CPU local Ray of the issue
    try:
        ray_session = executors.run_grid(grid, "quick", executor="ray", progress=False)
    finally:
        ray.shutdown()
    assert ray_session.counts() == {"finished": 8, "skipped": 0, "failed": 0}
    ray_final = {r.spec.identity: r.final for r in ray_session.results}
    keys = ("final_val_loss", "final_train_loss")
    assert {h: {k: f[k] for k in keys} for h, f in ray_final.items()} == \
        {h: {k: f[k] for k in keys} for h, f in local_final.items()}
    kids = children(runs_of("tiny", other))
    assert len(kids) == 8 and all(r.status == "FINISHED" for r in kids)
    assert all(math.isfinite(r.metrics["final_val_loss"]) for r in kids)
    assert all(list(other.glob(f"mlartifacts/tiny/{r.run_id}/artifacts/checkpoint/checkpoint.pt")) for r in kids)
    stored_final = {r.identity: r.metrics["final_val_loss"] for r in kids}
    assert stored_final == {h: f["final_val_loss"] for h, f in local_final.items()}
