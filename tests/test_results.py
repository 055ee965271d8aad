"""results.py: experiment → tidy runs table and long-form curves; `charrnn export`."""
import shutil

import pandas as pd
import pytest
from grid_support import TINY_FIXED, empty_store_db, heavy_imports, store, write_grid  # noqa: F401

from charrnn.science import results
from charrnn.cli import main
from charrnn.grid.executors import run_grid
from charrnn.grid.spec import load_grid
from charrnn.tracking.store import Tracker

DIVERGING = {"cell": "vanilla", "backend": "loop", "activation": "identity", "optimizer": "sgd",
             "grad_clip": 0, "steps": 30, "eval_interval": 10}


@pytest.fixture(scope="module")
def grid_store(tmp_path_factory, empty_store_db):
    """A store holding one invocation of a 2 x 2 grid with one diverging variant (built once)."""
    root = tmp_path_factory.mktemp("grid-store")
    store = root / "results"
    store.mkdir()
    shutil.copy(empty_store_db, store / "mlflow.db")
    path = write_grid(root, axes={"lr": [1e6, 0.01], "hidden_size": [8, 16]}, seeds=[0], claims=None,
                      fixed={**{k: v for k, v in TINY_FIXED.items() if k != "hidden_size"}, **DIVERGING})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CHARRNN_RESULTS_DIR", str(store))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        session = run_grid(load_grid(path), "quick", progress=False)
    return store, session


@pytest.fixture
def grid_results(grid_store, monkeypatch):
    store, session = grid_store
    monkeypatch.setenv("CHARRNN_RESULTS_DIR", str(store))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return store, session


def test_runs_frame_has_one_typed_row_per_child_run_and_no_parent(grid_results):
    _, session = grid_results
    frame = results.runs_frame("tiny")
    assert len(frame) == 4
    assert set(frame["run_id"]) == {r.run_id for r in session.results}
    assert frame.attrs["axes"] == ["lr", "hidden_size"]
    for column in ("run_name", "variant", "identity", "status", "failure", "seed", "lr", "hidden_size",
                   "final_val_loss", "final_train_loss", "duration_s", "param_count"):
        assert column in frame.columns
    assert list(frame.columns[:9]) == ["run_id", "run_name", "variant", "identity", "status",
                                       "failure", "seed", "lr", "hidden_size"]
    assert frame["hidden_size"].tolist() == [8, 16, 8, 16] and frame["lr"].tolist() == [1e6, 1e6, 0.01, 0.01]
    assert pd.api.types.is_integer_dtype(frame["param_count"]) and (frame["param_count"] > 0).all()
    assert (frame["duration_s"] > 0).all()
    failed = frame[frame["status"] == "FAILED"]
    assert len(failed) == 2 and failed["failure"].str.startswith("diverged at step").all()
    finished = frame[frame["status"] == "FINISHED"]
    assert len(finished) == 2 and finished["final_val_loss"].notna().all()


def test_curves_frame_is_long_form_with_one_row_per_logged_step(grid_results):
    curves = results.curves_frame("tiny")
    assert list(curves.columns[:4]) == ["run_id", "run_name", "variant", "seed"]
    assert {"metric", "step", "value", "lr", "hidden_size"} <= set(curves.columns)
    finished = curves[(curves["lr"] == 0.01) & (curves["hidden_size"] == 16)]
    train = finished[finished["metric"] == "train_loss"]
    assert train["step"].tolist() == list(range(30))
    assert finished[finished["metric"] == "val_loss"]["step"].tolist() == [9, 19, 29]


def test_curves_keep_the_last_value_logged_at_a_step(store):
    tracker = Tracker()
    run = tracker.start_run("replayed", "r", {"seed": 0}, system_metrics=False)
    for value in (3.0, 2.0):  # a resumed run replays a step it had logged before the kill
        run.log_metrics({"train_loss": value}, step=0)
        run.flush()
    run.log_metrics({"train_loss": 1.5}, step=1)
    run.end()
    curves = results.curves_frame("replayed")
    assert curves[["step", "value"]].values.tolist() == [[0, 2.0], [1, 1.5]]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_writes_one_row_per_trained_run_spec(grid_results, tmp_path, capsys, fmt):
    out = tmp_path / f"tiny.{fmt}"
    assert main(["export", "tiny", "--format", fmt, "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    frame = pd.read_csv(out) if fmt == "csv" else pd.read_parquet(out)
    assert len(frame) == 4 and frame["identity"].nunique() == 4
    assert {"seed", "lr", "hidden_size", "status", "final_val_loss", "duration_s", "param_count",
            "identity"} <= set(frame.columns)
    assert sorted(frame["status"]) == ["FAILED", "FAILED", "FINISHED", "FINISHED"]


def test_export_defaults_to_the_results_directory_and_can_export_curves(grid_results, capsys):
    store, _ = grid_results
    assert main(["export", "tiny", "--curves"]) == 0
    path = store / "tiny-curves.csv"
    assert capsys.readouterr().out.strip() == str(path)
    assert set(pd.read_csv(path)["metric"]) >= {"train_loss", "val_loss"}


def test_export_of_unknown_experiment_exits_2_naming_the_ones_that_exist(grid_results, capsys):
    assert main(["export", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert "experiment='nope': not in the store; valid: " in err and "tiny" in err
    assert len(err.splitlines()) == 1


def test_export_without_a_store_exits_2_and_creates_none(results_dir, capsys):
    assert main(["export", "tiny", "--format", "parquet"]) == 2
    assert "there is no store" in capsys.readouterr().err
    assert not results_dir.exists()


def test_export_rejects_an_unknown_format(grid_results, capsys):
    assert main(["export", "tiny", "--format", "xlsx"]) == 2
    assert "--format='xlsx': unknown format; valid choices: csv, parquet" in capsys.readouterr().err


def test_grid_definition_is_the_latest_invocations_grid_file(grid_results):
    definition = results.grid_definition("tiny")
    assert definition["name"] == "tiny" and definition["axes"] == {"lr": [1e6, 0.01], "hidden_size": [8, 16]}


def test_results_module_never_imports_torch():
    assert "torch" not in heavy_imports("charrnn.science.results")
