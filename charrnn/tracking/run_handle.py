"""One MLflow run being written: buffered metrics, params, tags, artifacts, and its end state.

Metrics are buffered and sent with `log_batch` (a synchronous `log_metric` costs ~2 ms, which
would be 10-40 % of a small CPU training step).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from mlflow.entities import Metric, Param, RunTag
from mlflow.environment_variables import MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING
from mlflow.tracking import MlflowClient

from charrnn.tracking.mlflow_private import local_file_uri_to_path

from charrnn.tags import BOOKKEEPING_TAGS, FAILURE_TAG, HEARTBEAT_TAG

MAX_BATCH = 1000  # MLflow's per-call limit on metrics in log_batch
SYSTEM_METRICS_INTERVAL_S = 5.0


def now_ms() -> int:
    return int(time.time() * 1000)


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
        dest_dir, staging = root / (artifact_path or ""), sweep_staging(self.artifact_uri)
        dest_dir.mkdir(parents=True, exist_ok=True)
        staging.mkdir(exist_ok=True)
        tmp = staging / f"{Path(local_path).name}.{os.getpid()}"
        try:
            shutil.copyfile(local_path, tmp)
            os.replace(tmp, dest_dir / Path(local_path).name)
        finally:  # a failed copy (a full disk) leaves no partial file, and no empty folder
            tmp.unlink(missing_ok=True)
            remove_if_empty(staging)

    def start_system_metrics(self, uri: str) -> None:
        """CPU/GPU utilisation and memory as `system/*` metrics, where MLflow can read them.

        MLflow's public switch, `mlflow.start_run(log_system_metrics=True)`, only serves the fluent
        API's one active run; charrnn drives many runs through a client, so it starts the monitor that
        switch starts. `mlflow.disable_system_metrics_logging()` (or MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING
        =false) turns it off; GPU metrics need the `gpu` extra (nvidia-ml-py)."""
        if MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING.is_set() and not MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING.get():
            return
        try:
            from charrnn.tracking.mlflow_private import SystemMetricsMonitor
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


def sweep_staging(artifact_uri: str) -> Path | None:
    """The run's staging folder for atomic artifact uploads (beside its artifacts, on their filesystem),
    emptied of what an earlier upload left there (a process killed mid-copy), and removed when empty.
    None for an artifact store that is not a local directory."""
    if not artifact_uri.startswith("file:"):
        return None
    staging = Path(local_file_uri_to_path(artifact_uri)).parent / ".partial"
    if staging.is_dir():
        for left in staging.iterdir():
            left.unlink(missing_ok=True)
        remove_if_empty(staging)
    return staging


def remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:   # not empty, or already gone
        pass
