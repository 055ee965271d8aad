"""A dataset input that another writer logs into the same experiment at the same moment: the store's
lookup-then-insert loses the race with a UNIQUE constraint error; the run is linked all the same,
to the one dataset row."""
from __future__ import annotations

import dataclasses

import pytest
from grid_support import empty_store_db, store  # noqa: F401
from mlflow.exceptions import MlflowException

from charrnn.tracking.datasets import log_dataset
from charrnn.tracking.store import Tracker

SHA = "ab" * 32


class LosesTheFirstRace:
    """A client whose first `log_inputs` finds the dataset inserted by another run's writer after
    its lookup: the store rolls that write back and raises, as SQLAlchemy's IntegrityError surfaces."""

    def __init__(self, client, other_run_id: str):
        self.client, self.other_run_id, self.raced = client, other_run_id, False

    def log_inputs(self, run_id, datasets):
        if not self.raced:
            self.raced = True
            self.client.log_inputs(self.other_run_id, datasets)
            raise MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id")
        return self.client.log_inputs(run_id, datasets)


def test_a_dataset_logged_concurrently_by_another_run_still_links_this_run(store):
    tracker = Tracker()
    other = tracker.start_run("race", "other", {}, system_metrics=False)
    mine = tracker.start_run("race", "mine", {}, system_metrics=False)
    racing = dataclasses.replace(mine, client=LosesTheFirstRace(tracker.client, other.run_id))
    log_dataset(racing, "tinyshakespeare", SHA, "/data/input.txt")
    linked = {run.run_id: [d.dataset for d in tracker.client.get_run(run.run_id).inputs.dataset_inputs]
              for run in (other, mine)}
    assert [d.name for d in linked[mine.run_id]] == ["tinyshakespeare"]
    assert linked[mine.run_id][0].digest == linked[other.run_id][0].digest == SHA[:32]


def test_a_dataset_write_that_fails_twice_raises(store):
    tracker = Tracker()
    run = tracker.start_run("race", "mine", {}, system_metrics=False)

    class AlwaysFails:
        def log_inputs(self, run_id, datasets):
            raise MlflowException("store down")

    with pytest.raises(MlflowException, match="store down"):
        log_dataset(dataclasses.replace(run, client=AlwaysFails()), "tinyshakespeare", SHA, "/data/input.txt")
