"""What MLflow shows of a grid: the parent run carries the claims (metrics, verdict tags, arms table,
note starting with the verdicts) and the corpus as a dataset input, ended runs carry no bookkeeping
tags, params that do not apply to the task or the cell are not logged, and an invocation that trains
nothing leaves no new parent run."""
from __future__ import annotations

import json

import pytest

from grid_support import TINY_FIXED, children, empty_store_db, grid_data, parents, runs_of, store, write_grid  # noqa: F401

from charrnn import registry
from charrnn.cli import main
from charrnn.config import make_config
from charrnn.grid.summary import claim_metric_name
from charrnn.run.runner import applicable_params
from charrnn.science.verdicts import LABELS
from charrnn.tags import ARMS_TABLE, BOOKKEEPING_TAGS, NOTE_TAG, OWNER_PID_TAG, REPORT_ARTIFACT_DIR, verdict_tag
from charrnn.tasks.corpus_sources import CORPORA
from charrnn.tracking.store import Tracker

QUESTION = "Does a GRU beat a vanilla RNN at hidden 8?"


def small_grid(tmp_path):
    data = grid_data(question=QUESTION, axes={"cell": ["vanilla", "gru"]},
                     fixed={**TINY_FIXED, "arith_digits": 3})
    return write_grid(tmp_path, data)


def test_the_parent_run_carries_the_claims_and_ended_runs_no_bookkeeping(store, tmp_path, capsys):
    path = small_grid(tmp_path)
    assert main(["grid", str(path), "--no-progress"]) == 0
    runs = runs_of("tiny", store)
    (parent,), kids = parents(runs), children(runs)
    name = claim_metric_name("cell=gru_vs_vanilla", "")
    assert name == "claim.cell_gru_vs_vanilla."              # `=` is no metric-name character
    low, effect, high = (parent.metrics[name + part] for part in ("low", "effect", "high"))
    assert low < effect < high

    tracker = Tracker()
    arms = json.loads(tracker.artifact_text(parent.run_id, ARMS_TABLE))
    rows = [dict(zip(arms["columns"], row)) for row in arms["data"]]
    assert {(r["arm"], r["metric"], r["n"]) for r in rows} == {("cell=vanilla", "val_loss", 2),
                                                                ("cell=gru", "val_loss", 2)}
    assert all(r["low"] <= r["mean"] <= r["high"] for r in rows)

    note = parent.tags[NOTE_TAG]
    assert QUESTION in note and "cell=gru_vs_vanilla" in note and f"{REPORT_ARTIFACT_DIR}/tiny.html" in note
    verdict = parent.tags[verdict_tag("cell=gru_vs_vanilla")]
    assert verdict in LABELS and note.startswith(f"- **cell=gru_vs_vanilla** — {verdict}")   # verdicts first
    assert parent.name.startswith("quick: 4 trained")

    [dataset] = tracker.client.get_run(parent.run_id).inputs.dataset_inputs
    assert dataset.dataset.name == "tinyshakespeare"
    assert CORPORA["tinyshakespeare"].sha256.startswith(dataset.dataset.digest)
    assert {t.key: t.value for t in dataset.tags}["mlflow.data.context"] == "training"
    assert all([d.dataset.digest for d in tracker.client.get_run(k.run_id).inputs.dataset_inputs]
               == [dataset.dataset.digest] for k in kids)

    for run in [parent, *kids]:
        assert run.status == "FINISHED" and not set(BOOKKEEPING_TAGS) & set(run.tags), run.name
    assert all("arith_digits" not in r.params and "bitflip_bits" not in r.params and "path" not in r.params
               and r.params["task"] == "tinyshakespeare" for r in kids)

    for kid in kids:                            # only the params that apply to the run's cell
        cell = kid.params["cell"]
        assert ("forget_bias" in kid.params) == (cell == "lstm"), kid.name
        assert ("activation" in kid.params) == ("input_combine" in kid.params) == (cell == "vanilla"), kid.name
        assert "residual_mode" not in kid.params and "charrnn.step_graph" not in kid.tags
    assert list(store.rglob("checkpoint")) and not list(store.rglob(".partial*"))   # no staging left behind

    capsys.readouterr()
    assert main(["grid", str(path), "--no-progress"]) == 0
    assert [p.run_id for p in parents(runs_of("tiny", store))] == [parent.run_id]
    assert "nothing to train: no new parent run" in capsys.readouterr().out


def test_a_run_ended_for_a_dead_owner_loses_its_owner_tags(store):
    tracker = Tracker()
    run = tracker.start_run("owned", "r", params={}, tags={OWNER_PID_TAG: "7"}, system_metrics=False)
    tracker.terminate(run.run_id, "KILLED", note="owner died")
    assert OWNER_PID_TAG not in tracker.run(run.run_id).tags


def test_task_specific_keys_are_logged_only_for_their_task():
    assert "arith_digits" in make_config({"task": "arithmetic"}).params()
    params = make_config({"task": "tinyshakespeare"}).params()
    assert not {"arith_digits", "arith_ops", "bitflip_bits", "path"} & set(params)
    assert set(registry.TASK_KEYS) <= set(make_config({}).to_dict())     # names of real keys


def test_keys_of_another_cell_or_an_unused_option_are_not_logged():
    gru = applicable_params(make_config({"cell": "gru"}))
    assert not {"forget_bias", "activation", "input_combine", "residual_mode"} & set(gru)
    lstm = applicable_params(make_config({"cell": "lstm", "residual": True, "layers": 2}))
    assert {"forget_bias", "residual_mode"} <= set(lstm) and "activation" not in lstm
    assert {"activation", "input_combine"} <= set(applicable_params(make_config({"cell": "vanilla"})))


@pytest.mark.slow
def test_a_rerun_with_every_run_finished_loads_no_torch(store, tmp_path):
    """A rerun that trains nothing reads the store and returns: neither torch nor the executors load."""
    import subprocess
    import sys

    path = small_grid(tmp_path)
    assert main(["grid", str(path), "--no-progress"]) == 0
    code = ("import sys; from charrnn.cli import main; status = main(['grid', sys.argv[1], '--no-progress']); "
            "print('loaded:', ','.join(m for m in ('torch', 'ray', 'charrnn.grid.executors') if m in sys.modules)); "
            "sys.exit(status)")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "nothing to train" in done.stdout and "loaded: \n" in done.stdout
