"""The only module that talks to MLflow.

Store: `sqlite:///results/mlflow.db`, artifacts under `results/mlartifacts/<experiment>`;
`CHARRNN_RESULTS_DIR=DIR` moves both under DIR; `MLFLOW_TRACKING_URI` overrides the store.
Metrics are buffered and sent with `log_batch` (a synchronous `log_metric` costs ~2 ms, which
would be 10-40 % of a small CPU training step).
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

RUN_STATUS = RunStatus
TAG_PREFIX = "charrnn."
MAX_BATCH = 1000  # MLflow's per-call limit on metrics in log_batch
SYSTEM_METRICS_INTERVAL_S = 5.0

logging.getLogger("mlflow.system_metrics").setLevel(logging.ERROR)


def results_dir() -> Path:
    return Path(os.environ.get("CHARRNN_RESULTS_DIR", "results")).resolve()


def tracking_uri() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    root = results_dir()
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}"


def artifact_root() -> Path:
    return results_dir() / "mlartifacts"


class Tracker:
    """A handle on the store: experiments and runs. Cheap to create; one per process."""

    def __init__(self, uri: str | None = None):
        self.uri = uri or tracking_uri()
        self.client = MlflowClient(self.uri)

    def experiment_id(self, name: str) -> str:
        """Id of experiment `name`, created (artifacts under results/mlartifacts/<name>) if missing."""
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = None
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            location = (artifact_root() / name).as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except Exception:  # created concurrently by another process
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def start_run(self, experiment: str, run_name: str, params: dict[str, Any],
                  tags: dict[str, str] | None = None, parent_run_id: str | None = None,
                  system_metrics: bool = True) -> "RunHandle":
        all_tags = dict(tags or {})
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(self.experiment_id(experiment), run_name=run_name, tags=all_tags)
        handle = RunHandle(self.client, run.info.run_id, run.info.artifact_uri)
        handle.log_params(params)
        if system_metrics:
            handle.start_system_metrics(self.uri)
        return handle

    def resume_run(self, run_id: str) -> "RunHandle":
        """Reopen an existing run (e.g. a KILLED one being resumed) and mark it RUNNING again."""
        run = self.client.get_run(run_id)
        self.client.update_run(run_id, status="RUNNING")
        return RunHandle(self.client, run_id, run.info.artifact_uri)

    def get_run(self, run_id: str):
        return self.client.get_run(run_id)

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
        now = int(time.time() * 1000)
        self._buffer.extend(Metric(k, float(v), now, step) for k, v in metrics.items())
        if len(self._buffer) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        while self._buffer:
            chunk, self._buffer = self._buffer[:MAX_BATCH], self._buffer[MAX_BATCH:]
            self.client.log_batch(self.run_id, metrics=chunk)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_json(self, obj: Any, artifact_file: str) -> None:
        self.log_text(json.dumps(obj, indent=1, ensure_ascii=False), artifact_file)

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(local_path), artifact_path)

    def start_system_metrics(self, uri: str) -> None:
        """CPU/GPU utilisation and memory as `system/*` metrics, where MLflow can read them."""
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
            self._monitor = SystemMetricsMonitor(
                self.run_id, sampling_interval=SYSTEM_METRICS_INTERVAL_S, tracking_uri=uri)
            self._monitor.start()
        except Exception as exc:  # psutil missing or platform unsupported: training goes on
            logging.getLogger(__name__).info("system metrics unavailable: %s", exc)
            self._monitor = None

    def end(self, status: str = "FINISHED", failure: str | None = None) -> None:
        """Flush, record `charrnn.failure` when given, and terminate with `status`."""
        self.flush()
        if failure:
            self.set_tags({TAG_PREFIX + "failure": failure[:5000]})
        self.client.set_terminated(self.run_id, status=status)
        if self._monitor is not None:
            self._monitor.finish()
            self._monitor = None
