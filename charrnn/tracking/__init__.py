"""The only module that talks to MLflow.

Store: `sqlite:///results/mlflow.db`, artifacts under `results/mlartifacts/<experiment>`;
`CHARRNN_RESULTS_DIR=DIR` moves both under DIR; `MLFLOW_TRACKING_URI` overrides the store.
Metrics are buffered and sent with `log_batch` (a synchronous `log_metric` costs ~2 ms, which
would be 10-40 % of a small CPU training step). Reads come back as frozen `StoredRun` records so
no other module handles MLflow entities.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from filelock import UnixFileLock
from mlflow.entities import Metric, Param, RunStatus, RunTag, ViewType
from mlflow.environment_variables import MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.file_utils import local_file_uri_to_path
from mlflow.utils.mlflow_tags import (MLFLOW_EXPERIMENT_PRIMARY_METRIC_GREATER_IS_BETTER,
                                      MLFLOW_EXPERIMENT_PRIMARY_METRIC_NAME, MLFLOW_RUN_NOTE)

from charrnn.paths import NAME_RULE, results_dir, valid_name  # results_dir re-exported: the store lives under it
from charrnn.tags import CLAIM_LOGGED_BEFORE_RUNS, CLAIM_TAG_PREFIX
from charrnn.tags import (BOOKKEEPING_TAGS, FAILURE_TAG, HEARTBEAT_TAG, IDENTITY_TAG,  # noqa: F401
                          PARENT_TAG, TAG_PREFIX)

RUN_STATUS = RunStatus
MAX_BATCH = 1000  # MLflow's per-call limit on metrics in log_batch
SYSTEM_METRICS_INTERVAL_S = 5.0
SQLITE_PREFIX = "sqlite:///"
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


def now_ms() -> int:
    return int(time.time() * 1000)


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
        (before any run, or after `runs_existing`). A logged claim keeps its first text."""
        exp_id = self.experiment_id(name)
        logged = self.client.get_experiment(exp_id).tags
        when = CLAIM_LOGGED_BEFORE_RUNS if not runs_existing else f"after {runs_existing} run(s) existed"
        for claim_id, text in texts.items():
            key = CLAIM_TAG_PREFIX + claim_id.replace("=", ":")   # MLflow keys allow ':' but not '='
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
        return out

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


@dataclass
class RunHandle:
    """One MLflow run: buffered metrics, params, tags, artifacts, and its end state."""

    client: MlflowClient
    run_id: str
    artifact_uri: str
    flush_every: int = 200                      # buffered metrics before an automatic flush
    _buffer: list[Metric] = field(default_factory=list)
    _monitor: Any = None

    def log_params(self, params: dict[str, Any]) -> None:
        items = [Param(k, str(v)) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Buffer metrics at `step`; they reach the store on flush()."""
        now = now_ms()
        self.log_metric_rows([(k, v, now, step) for k, v in metrics.items()])

    def log_metric_rows(self, rows: Iterable[tuple[str, float, int, int]]) -> None:
        """Buffer (key, value, timestamp_ms, step) rows, e.g. recorded by a remote worker."""
        self._buffer.extend(Metric(k, float(v), ts, step) for k, v, ts, step in rows)
        if len(self._buffer) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Send buffered metrics; each batch also refreshes the run's heartbeat tag."""
        while self._buffer:
            chunk, self._buffer = self._buffer[:MAX_BATCH], self._buffer[MAX_BATCH:]
            self.client.log_batch(self.run_id, metrics=chunk,
                                  tags=[RunTag(HEARTBEAT_TAG, str(now_ms()))])

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_json(self, obj: Any, artifact_file: str) -> None:
        self.log_text(json.dumps(obj, indent=1, ensure_ascii=False), artifact_file)

    def log_table(self, rows: list[dict[str, Any]], artifact_file: str) -> None:
        """Rows of equal keys as one MLflow table artifact (JSON; the UI shows it as a table)."""
        columns = list(dict.fromkeys(k for row in rows for k in row))
        self.client.log_table(self.run_id, {c: [row.get(c) for row in rows] for c in columns}, artifact_file)

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a file. Buffered metrics go first, so a checkpoint artifact at step k implies
        every metric up to step k is in the store (resume never leaves a gap in the curves).
        In a local artifact store the file is replaced atomically: a kill mid-upload leaves the
        previous checkpoint intact, never a torn one."""
        self.flush()
        if not self.artifact_uri.startswith("file:"):
            self.client.log_artifact(self.run_id, str(local_path), artifact_path)
            return
        root = Path(local_file_uri_to_path(self.artifact_uri))
        dest_dir = root / (artifact_path or "")
        dest_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=root.parent))  # same filesystem; removed after
        try:
            tmp = staging / Path(local_path).name
            shutil.copyfile(local_path, tmp)
            os.replace(tmp, dest_dir / Path(local_path).name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def start_system_metrics(self, uri: str) -> None:
        """CPU/GPU utilisation and memory as `system/*` metrics, where MLflow can read them.

        MLflow's public switch, `mlflow.start_run(log_system_metrics=True)`, only serves the fluent
        API's one active run; charrnn drives many runs through a client, so it starts the monitor that
        switch starts. `mlflow.disable_system_metrics_logging()` (or MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING
        =false) turns it off; GPU metrics need the `gpu` extra (nvidia-ml-py)."""
        if MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING.is_set() and not MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING.get():
            return
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
            self._monitor = SystemMetricsMonitor(
                self.run_id, sampling_interval=SYSTEM_METRICS_INTERVAL_S, tracking_uri=uri)
            self._monitor.start()
        except Exception as exc:  # psutil missing or platform unsupported: training goes on
            logging.getLogger(__name__).info("system metrics unavailable: %s", exc)
            self._monitor = None

    def end(self, status: str = "FINISHED", failure: str | None = None) -> None:
        """Flush, record `charrnn.failure` when given, and terminate with `status`. The system
        metrics monitor stops first: when the store is what failed, its thread must not go on
        writing to it."""
        if self._monitor is not None:
            self._monitor.finish()
            self._monitor = None
        self.flush()
        if failure:
            self.set_tags({FAILURE_TAG: failure[:5000]})
        self.client.set_terminated(self.run_id, status=status)
        clear_bookkeeping(self.client, self.run_id)

    def rename(self, name: str) -> None:
        self.client.update_run(self.run_id, name=name)


def clear_bookkeeping(client: MlflowClient, run_id: str) -> None:
    """Drop the tags that only matter while a run is RUNNING (owner, heartbeat, invocation): an
    ended run's page shows what it is, not who held it. A resumed run gets them again."""
    present = client.get_run(run_id).data.tags
    for tag in BOOKKEEPING_TAGS:
        if tag in present:
            client.delete_tag(run_id, tag)


# --------------------------------------------------------------------------- bulk metric reads
# Through `get_metric_history` a 2,000-step curve costs ~70 ms per run and key (18 s for the curves
# of a 200-run grid); a SQL store answers the same points for many runs in one query.

METRIC_QUERY_CHUNK = 500          # run ids per bulk query
MAX_METRIC_POINTS = 2**31 - 1     # the bulk query's row limit: all of them
MLFLOW_PRIVATE_API_CHECKED = "3.17.2"   # the MLflow version `sql_store` was checked against


def sql_store(tracker: Tracker) -> Any | None:
    """The SQL store behind `tracker`'s client, or None for any other store (an MLflow server).

    The one private MLflow name charrnn reads: MLflow has no public accessor for a client's store,
    so this is `MlflowClient._tracking_client.store` (checked against MLFLOW_PRIVATE_API_CHECKED).
    What is called on it, `get_metric_history_bulk`, is the store's documented method."""
    store = getattr(getattr(tracker.client, "_tracking_client", None), "store", None)
    return store if hasattr(store, "get_metric_history_bulk") else None


def metric_histories(tracker: Tracker, run_ids: Iterable[str],
                     keys: Iterable[str]) -> list[tuple[str, str, int, float, int]]:
    """(run_id, key, step, value, timestamp_ms) of every value of `keys` logged by `run_ids`, in
    no particular order. A SQL store answers in one query per key and 500 runs; any other store
    is read run by run through `get_metric_history`."""
    run_ids, keys = list(run_ids), list(keys)
    store = sql_store(tracker)
    if store is None:
        return [(rid, key, step, value, ts) for rid in run_ids for key in keys
                for step, value, ts in tracker.metric_history(rid, key)]
    return [(found.run_id, key, int(found.step), float(found.value), int(found.timestamp))
            for i in range(0, len(run_ids), METRIC_QUERY_CHUNK) for key in keys
            for found in store.get_metric_history_bulk(run_ids[i:i + METRIC_QUERY_CHUNK], key, MAX_METRIC_POINTS)]
