"""What a user meets in the MLflow UI: experiment kind, description, primary metric, source tags."""
import math
import subprocess

import mlflow.server
import pytest

from grid_support import REPO, children, empty_store_db, grid_data, runs_of, store, write_grid  # noqa: F401
from mlflow.utils import mlflow_tags
from mlflow.utils.mlflow_tags import (MLFLOW_EXPERIMENT_PRIMARY_METRIC_GREATER_IS_BETTER,
                                      MLFLOW_EXPERIMENT_PRIMARY_METRIC_NAME, MLFLOW_GIT_COMMIT, MLFLOW_RUN_NOTE,
                                      MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE)

from charrnn.cli import main
from charrnn import tags
from charrnn.provenance import source_tags
from charrnn.tracking import bulk_metrics
from charrnn.tracking.bulk_metrics import MLFLOW_PRIVATE_API_CHECKED, metric_histories, sql_store
from charrnn.tracking.store import EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND, UI_QUERY, Tracker
from charrnn.tracking.ui import UI_DEFAULT_VIEW_SCRIPT, create_ui_app


def experiment_tags(tracker: Tracker, name: str) -> dict[str, str]:
    return dict(tracker.client.get_experiment_by_name(name).tags)


def test_every_experiment_charrnn_creates_is_a_model_training_experiment(store):
    tracker = Tracker()
    tracker.experiment_id("plain")
    assert experiment_tags(tracker, "plain")[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND


def test_the_ui_app_serves_mlflows_page_with_the_model_training_switch_preset():
    create_ui_app(), create_ui_app()
    page = mlflow.server.app.test_client().get("/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and html.startswith("<!doctype html>")
    assert html.count(UI_DEFAULT_VIEW_SCRIPT) == 1 and "ETag" not in page.headers


def test_the_private_mlflow_door_reads_curves_in_bulk_as_mlflow_3_17_2_does(store, monkeypatch):
    """`sql_store` (charrnn's one private MLflow name, checked against MLflow 3.17.2) finds a sqlite
    store, and its bulk read gives the points the public per-run read gives, NaN included."""
    tracker = Tracker()
    assert MLFLOW_PRIVATE_API_CHECKED == "3.17.2" and sql_store(tracker) is not None
    run = tracker.start_run("bulk", "r", {}, system_metrics=False)
    for step, value in enumerate([2.0, float("nan"), 1.5]):
        run.log_metrics({"val_loss": value, "train_loss": step}, step=step)
    run.end()
    bulk = sorted(metric_histories(tracker, [run.run_id], ["val_loss"]), key=lambda r: r[2])
    monkeypatch.setattr(bulk_metrics, "sql_store", lambda tracker: None)   # as against an MLflow server
    public = sorted(metric_histories(tracker, [run.run_id], ["val_loss"]), key=lambda r: r[2])
    assert [r[:3] for r in bulk] == [r[:3] for r in public] == [(run.run_id, "val_loss", s) for s in range(3)]
    assert bulk[0][3] == public[0][3] == 2.0 and math.isnan(bulk[1][3]) and math.isnan(public[1][3])


def test_describe_experiment_sets_question_kind_and_primary_metric(store):
    tracker = Tracker()
    exp_id = tracker.describe_experiment("described", "Is GRU better?", "val_accuracy", True)
    tags = experiment_tags(tracker, "described")
    assert tags[MLFLOW_RUN_NOTE] == "Is GRU better?" and tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND
    assert tags[MLFLOW_EXPERIMENT_PRIMARY_METRIC_NAME] == "val_accuracy"
    assert tags[MLFLOW_EXPERIMENT_PRIMARY_METRIC_GREATER_IS_BETTER] == "True"
    assert tracker.ui_path("described") == f"#/experiments/{exp_id}?{UI_QUERY}"


@pytest.mark.slow
def test_grid_experiment_shows_its_question_and_claim_metric_and_runs_carry_their_commit(store, tmp_path):
    path = write_grid(tmp_path, axes={"cell": ["vanilla", "gru"]}, seeds=[0])
    assert main(["grid", str(path), "--no-progress"]) == 0
    tags = experiment_tags(Tracker(), "tiny")
    assert tags[MLFLOW_RUN_NOTE] == grid_data()["question"]
    assert tags[MLFLOW_EXPERIMENT_PRIMARY_METRIC_NAME] == "val_loss"
    assert tags[MLFLOW_EXPERIMENT_PRIMARY_METRIC_GREATER_IS_BETTER] == "False"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    for run in children(runs_of("tiny", store)):
        assert run.tags[MLFLOW_GIT_COMMIT] == head == run.tag("git_sha")
        assert run.tags[MLFLOW_SOURCE_TYPE] == "LOCAL" and run.tags[MLFLOW_SOURCE_NAME] == "charrnn"


def test_source_tags_leave_out_unknown_facts():
    assert source_tags("", "", "", False, "charrnn") == {MLFLOW_SOURCE_TYPE: "LOCAL", MLFLOW_SOURCE_NAME: "charrnn"}
    tags = source_tags("abc", "main", "", True, "charrnn")
    assert tags[MLFLOW_GIT_COMMIT] == "abc" and tags["mlflow.source.git.dirty"] == "true"


def test_source_tag_names_are_mlflows():
    pairs = {"SOURCE_TYPE_TAG": "MLFLOW_SOURCE_TYPE", "SOURCE_NAME_TAG": "MLFLOW_SOURCE_NAME",
             "GIT_COMMIT_TAG": "MLFLOW_GIT_COMMIT", "GIT_BRANCH_TAG": "MLFLOW_GIT_BRANCH",
             "GIT_REPO_URL_TAG": "MLFLOW_GIT_REPO_URL", "GIT_DIRTY_TAG": "MLFLOW_GIT_DIRTY"}
    for ours, theirs in pairs.items():
        assert getattr(tags, ours) == getattr(mlflow_tags, theirs)


def test_describe_experiment_survives_another_driver_inserting_the_same_tag_first(store, monkeypatch):
    """Two grid drivers describe one experiment at once: the slower insert hits the store's UNIQUE
    constraint (seen on a tracking server); the tag is then there, and describing still succeeds."""
    from mlflow.exceptions import MlflowException
    tracker = Tracker()
    exp_id = tracker.experiment_id("race")
    real = tracker.client.set_experiment_tag
    raced = []

    def other_driver_first(experiment_id, key, value):
        if key not in raced:                    # the other driver's insert lands first ...
            raced.append(key)
            real(experiment_id, key, value)
            raise MlflowException("UNIQUE constraint failed: experiment_tags.key")   # ... ours fails
        real(experiment_id, key, value)

    monkeypatch.setattr(tracker.client, "set_experiment_tag", other_driver_first)
    tracker.describe_experiment("race", "Does it race?", "val_loss", False)
    assert experiment_tags(tracker, "race")[MLFLOW_EXPERIMENT_PRIMARY_METRIC_GREATER_IS_BETTER] == "False"
    assert raced and tracker.client.get_experiment(exp_id).tags["mlflow.note.content"] == "Does it race?"
