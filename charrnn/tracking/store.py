"""Runs and experiments in the store: where it is, `Tracker` (create, reopen, end and read runs;
experiments and their preregistered claims) and `StoredRun`, the frozen snapshot reads come back as.

Store: `sqlite:///results/mlflow.db`, artifacts under `results/mlartifacts/<experiment>`;
`CHARRNN_RESULTS_DIR=DIR` moves both under DIR; `MLFLOW_TRACKING_URI` overrides the store.
Reads come back as frozen `StoredRun` records so no other module handles MLflow entities.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from filelock import UnixFileLock
from mlflow.entities import RunStatus, RunTag, ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from charrnn.tracking.mlflow_private import (MLFLOW_EXPERIMENT_PRIMARY_METRIC_GREATER_IS_BETTER,
                                             MLFLOW_EXPERIMENT_PRIMARY_METRIC_NAME, MLFLOW_RUN_NOTE)

from charrnn.paths import NAME_RULE, results_dir, valid_name
from charrnn.tags import CLAIM_LOGGED_BEFORE_RUNS, CLAIM_TAG_PREFIX, FAILURE_TAG, IDENTITY_TAG, PARENT_TAG, TAG_PREFIX
from charrnn.tracking.run_handle import RunHandle, clear_bookkeeping, sweep_staging

RUN_STATUS = RunStatus
SQLITE_PREFIX = "sqlite:///"
MAX_EXPERIMENT_TAG_CHARS = 20_000      # MLflow 3.17's limits on an experiment tag's value and key
MAX_EXPERIMENT_TAG_KEY_CHARS = 250
# MLflow 3.x's UI shows an experiment of this kind as "Machine learning" (model training: the runs
# table and charts) rather than "GenAI apps & agents" (traces). MLflow 3.17's UI takes the view from
# its global GenAI / Model training switch instead; UI_QUERY opens a page with that switch set.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
UI_QUERY = "workflowType=machine_learning"

logging.getLogger("mlflow.system_metrics").setLevel(logging.ERROR)
# MLflow logs a failed database call with its traceback, then raises it: charrnn handles the raise
# (a store failure becomes one line, see charrnn.tracking.failures)
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
logging.getLogger("alembic").setLevel(logging.WARNING)


def tracking_uri(create: bool = True) -> str:
    """The store's URI; `create=False` leaves the results directory alone (dry runs)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    root = results_dir()
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return f"{SQLITE_PREFIX}{root / 'mlflow.db'}"


def store_exists(uri: str | None = None) -> bool:
    """False only for a sqlite store whose file does not exist yet (opening it would create it)."""
    uri = uri or tracking_uri(create=False)
    return not uri.startswith(SQLITE_PREFIX) or Path(uri.removeprefix(SQLITE_PREFIX)).exists()


def artifact_root() -> Path:
    return results_dir() / "mlartifacts"


@dataclass(frozen=True)
class StoredRun:
    """A read-only snapshot of one run: info, params, tags and latest metric values."""

    run_id: str
    name: str
    status: str                                  # RUNNING | FINISHED | FAILED | KILLED | SCHEDULED
    start_time: int                              # ms since the epoch
    end_time: int | None
    tags: Mapping[str, str]
    params: Mapping[str, str]
    metrics: Mapping[str, float]

    @property
    def identity(self) -> str | None:
        """Its config's stable identity: the `charrnn.identity` tag (None for a run that is not a
        training run, or one written before the tag existed and not yet upgraded by `charrnn migrate`)."""
        return self.tags.get(IDENTITY_TAG)

    @property
    def parent_run_id(self) -> str | None:
        return self.tags.get(PARENT_TAG)

    def tag(self, name: str, default: str = "") -> str:
        return self.tags.get(TAG_PREFIX + name, default)


def _stored(run) -> StoredRun:
    return StoredRun(run.info.run_id, run.info.run_name or "", run.info.status,
                     run.info.start_time or 0, run.info.end_time,
                     MappingProxyType(dict(run.data.tags)), MappingProxyType(dict(run.data.params)),
                     MappingProxyType(dict(run.data.metrics)))


def claim_tag_key(claim_id: str) -> str:
    """The prefix of a claim's experiment tags (MLflow keys allow ':' but not '=')."""
    return CLAIM_TAG_PREFIX + claim_id.replace("=", ":")


class Tracker:
    """A handle on the store: experiments and runs. Cheap to create; one per process."""

    def __init__(self, uri: str | None = None):
        self.uri = uri or tracking_uri()
        self.client = self._open_client()

    def _open_client(self) -> MlflowClient:
        """The client; a new sqlite store is created under a lock (concurrent migrations race)."""
        if not self.uri.startswith(SQLITE_PREFIX):
            return MlflowClient(self.uri)
        db = Path(self.uri.removeprefix(SQLITE_PREFIX))
        db.parent.mkdir(parents=True, exist_ok=True)
        with UnixFileLock(db.with_name(db.name + ".init.lock"), thread_local=False):
            return MlflowClient(self.uri)

    # --- experiments ---
    def experiment_id(self, name: str) -> str:
        """Id of experiment `name`, created (artifacts under results/mlartifacts/<name>) if missing."""
        found = self.find_experiment(name)
        if found is not None:
            return found
        if not valid_name(name):  # its artifacts go to a directory named after it
            raise ValueError(f"experiment={name!r}: valid: {NAME_RULE}")
        location = None
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            location = (artifact_root() / name).as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location,
                                                 tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND})
        except Exception:  # created concurrently by another process
            found = self.find_experiment(name)
            if found is None:
                raise
            return found

    def describe_experiment(self, name: str, description: str, primary_metric: str | None = None,
                            greater_is_better: bool | None = None) -> str:
        """Id of experiment `name` (created if missing), its description (`mlflow.note.content`),
        its kind (model training) and, when given, its primary metric and direction."""
        exp_id = self.experiment_id(name)
        tags = {EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND, MLFLOW_RUN_NOTE: description}
        if primary_metric:
            tags[MLFLOW_EXPERIMENT_PRIMARY_METRIC_NAME] = primary_metric
            tags[MLFLOW_EXPERIMENT_PRIMARY_METRIC_GREATER_IS_BETTER] = str(bool(greater_is_better))
        for key, value in tags.items():
            self._set_experiment_tag(exp_id, key, value)
        return exp_id

    def _set_experiment_tag(self, exp_id: str, key: str, value: str) -> None:
        """Set a tag that another driver may be setting at the same moment: the server's store
        inserts a new tag after a read, so the slower of two concurrent writers can hit a UNIQUE
        constraint. Then the tag exists; write it once more (an update now) unless it already holds."""
        if self.client.get_experiment(exp_id).tags.get(key) == value:
            return
        try:
            self.client.set_experiment_tag(exp_id, key, value)
        except MlflowException:
            if self.client.get_experiment(exp_id).tags.get(key) != value:
                self.client.set_experiment_tag(exp_id, key, value)

    # --- preregistration: claims logged on the experiment before their first run ---
    def preregister_claims(self, name: str, texts: dict[str, str], runs_existing: int) -> None:
        """Tag experiment `name` with each claim's canonical text, SHA-256 and when it was logged
        (before any run, or after `runs_existing`). A logged claim keeps its first text.

        MLflow has no batch write of experiment tags, so a claim's three tags are written all or not
        at all this way: every key and text is checked against MLflow's limits before the first write
        (ValueError, nothing written), and `.text` goes last; a claim whose `.text` is missing (a write
        that failed half-way) is not logged, and is written again by the next call."""
        for claim_id, text in texts.items():
            key = claim_tag_key(claim_id)
            if len(key + ".sha256") > MAX_EXPERIMENT_TAG_KEY_CHARS or len(text) > MAX_EXPERIMENT_TAG_CHARS:
                raise ValueError(f"claim {claim_id[:60]!r}: its id or its text ({len(text)} characters) is too "
                                 f"long for the store; valid: an id under {MAX_EXPERIMENT_TAG_KEY_CHARS - 30} "
                                 f"and a text of at most {MAX_EXPERIMENT_TAG_CHARS} characters")
        exp_id = self.experiment_id(name)
        logged = self.client.get_experiment(exp_id).tags
        when = CLAIM_LOGGED_BEFORE_RUNS if not runs_existing else f"after {runs_existing} run(s) existed"
        for claim_id, text in texts.items():
            key = claim_tag_key(claim_id)
            if key + ".text" in logged:
                continue
            self._set_experiment_tag(exp_id, key + ".sha256", hashlib.sha256(text.encode()).hexdigest())
            self._set_experiment_tag(exp_id, key + ".when", when)
            self._set_experiment_tag(exp_id, key + ".text", text)

    def preregistered_claims(self, name: str) -> dict[str, dict[str, str]]:
        """Claim id → {"text", "sha256", "when"} as `preregister_claims` logged them on `name`."""
        exp_id = self.find_experiment(name)
        out: dict[str, dict[str, str]] = {}
        if exp_id is None:
            return out
        for key, value in self.client.get_experiment(exp_id).tags.items():
            if key.startswith(CLAIM_TAG_PREFIX):
                claim_id, _, field = key.removeprefix(CLAIM_TAG_PREFIX).rpartition(".")
                out.setdefault(claim_id.replace(":", "="), {})[field] = value
        return {claim_id: fields for claim_id, fields in out.items() if "text" in fields}   # .text: written last

    def ui_path(self, name: str) -> str:
        """The MLflow UI's page of experiment `name` on its runs table (append to the UI's address)."""
        exp_id = self.find_experiment(name)
        return f"#/experiments/{exp_id}?{UI_QUERY}" if exp_id else f"#/experiments?{UI_QUERY}"

    def find_experiment(self, name: str) -> str | None:
        found = self.client.get_experiment_by_name(name)
        return None if found is None else found.experiment_id

    def experiment_names(self) -> list[str]:
        return sorted(e.name for e in self.client.search_experiments())

    # --- runs: create and reopen ---
    def start_run(self, experiment: str, run_name: str, params: dict[str, Any],
                  tags: dict[str, str] | None = None, parent_run_id: str | None = None,
                  system_metrics: bool = True) -> "RunHandle":
        all_tags = dict(tags or {})
        if parent_run_id:
            all_tags[PARENT_TAG] = parent_run_id
        run = self.client.create_run(self.experiment_id(experiment), run_name=run_name, tags=all_tags)
        handle = RunHandle(self.client, run.info.run_id, run.info.artifact_uri)
        handle.log_params(params)
        if system_metrics:
            handle.start_system_metrics(self.uri)
        return handle

    def resume_run(self, run_id: str, tags: dict[str, str] | None = None,
                   system_metrics: bool = False) -> "RunHandle":
        """Reopen an existing run (a KILLED or FAILED one being resumed): RUNNING again, its old
        failure reason cleared, `tags` set."""
        run = self.client.get_run(run_id)
        if FAILURE_TAG in run.data.tags:
            self.client.delete_tag(run_id, FAILURE_TAG)
        sweep_staging(run.info.artifact_uri)   # what a failed or killed upload of the last attempt left
        self.client.update_run(run_id, status="RUNNING")
        handle = RunHandle(self.client, run_id, run.info.artifact_uri)
        if tags:
            handle.set_tags(tags)
        if system_metrics:
            handle.start_system_metrics(self.uri)
        return handle

    def terminate(self, run_id: str, status: str, note: str | None = None) -> None:
        """End a run someone else left behind (e.g. RUNNING with a dead owner → KILLED)."""
        if note:
            self.client.set_tag(run_id, FAILURE_TAG, note[:5000])
        self.client.set_terminated(run_id, status=status)
        clear_bookkeeping(self.client, run_id)

    def retag(self, run_id: str, tags: dict[str, str], remove: Iterable[str] = ()) -> None:
        """Set `tags` on a stored run and delete the tags named in `remove`; its status is left alone."""
        if tags:
            self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
        for key in remove:
            self.client.delete_tag(run_id, key)

    def replace_artifact(self, run_id: str, local_path: str | Path, artifact_path: str | None = None) -> None:
        """Upload `local_path` over the stored run's artifact of the same name (atomically in a local store)."""
        run = self.client.get_run(run_id)
        RunHandle(self.client, run_id, run.info.artifact_uri).log_artifact(local_path, artifact_path)

    # --- runs: read ---
    def get_run(self, run_id: str):
        return self.client.get_run(run_id)

    def run(self, run_id: str) -> StoredRun:
        return _stored(self.client.get_run(run_id))

    def runs(self, experiment: str, tags: dict[str, str] | None = None) -> list[StoredRun]:
        """Every active run of `experiment` (none if it does not exist) whose tags match `tags`."""
        exp_id = self.find_experiment(experiment)
        if exp_id is None:
            return []
        clauses = [f"tags.`{key}` = '{value}'" for key, value in (tags or {}).items()]
        found, token = [], None
        while True:
            page = self.client.search_runs([exp_id], " and ".join(clauses), ViewType.ACTIVE_ONLY,
                                           max_results=1000, order_by=["attributes.start_time ASC"],
                                           page_token=token)
            found.extend(_stored(r) for r in page)
            token = page.token
            if not token:
                return found

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float, int]]:
        """(step, value, timestamp_ms) of every logged value of `key`, in logging order."""
        return [(m.step, m.value, m.timestamp) for m in self.client.get_metric_history(run_id, key)]

    def last_logged_steps(self, run_id: str) -> dict[str, int]:
        """key → the largest step logged for it, for every metric the run logged (system/* aside:
        MLflow's monitor logs those by itself)."""
        keys = [k for k in self.client.get_run(run_id).data.metrics if not k.startswith("system/")]
        return {key: max(step for step, _, _ in self.metric_history(run_id, key)) for key in keys}

    def artifact_text(self, run_id: str, artifact_path: str) -> str | None:
        """The text of one artifact file, or None when the run has no such artifact."""
        with tempfile.TemporaryDirectory(prefix="charrnn-artifact-") as tmp:
            try:
                return self.download(run_id, artifact_path, tmp).read_text(encoding="utf-8")
            except (OSError, MlflowException):
                return None

    def download(self, run_id: str, artifact_path: str, dest: str | Path) -> Path:
        return Path(self.client.download_artifacts(run_id, artifact_path, str(dest)))


