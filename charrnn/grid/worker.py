"""What a Ray worker runs: training that writes to MLflow only through the driver.

This module (and everything it imports) never imports MLflow: a worker cannot touch the store.
Each `QueueRun` call becomes a message on a Ray queue that the driver replays on the real run
(`executors.apply_message`).
"""
from __future__ import annotations

import json
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

_IMPORTS_FROM = time.perf_counter()
import torch  # noqa: E402  (timed: a worker process's imports are its first run's `startup` phase)

from charrnn.config import TrainConfig  # noqa: E402
from charrnn.run.outcome import ResumePoint, RunOutcome  # noqa: E402
from charrnn.run.phases import PhaseClock  # noqa: E402
from charrnn.run.runner import train_run  # noqa: E402
from charrnn.tags import NODE_TAG  # noqa: E402

_imports_s = [time.perf_counter() - _IMPORTS_FROM]   # charged to the first run this process trains


class QueueRun:
    """A Ray worker's stand-in for tracking.RunHandle: each call becomes a message on `queue`,
    replayed by the driver on the real run (`executors.apply_message`). Metrics are buffered until flush."""

    def __init__(self, run_id: str, queue: Any, flush_every: int = 200):
        self.run_id, self.queue, self.flush_every = run_id, queue, flush_every
        self._rows: list[tuple[str, float, int, int]] = []

    def _send(self, method: str, *args: Any) -> None:
        self.queue.put((self.run_id, method, args))

    def log_params(self, params: dict[str, Any]) -> None:
        self._send("log_params", {k: str(v) for k, v in params.items()})

    def set_tags(self, tags: dict[str, Any]) -> None:
        self._send("set_tags", {k: str(v) for k, v in tags.items()})

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self._rows.extend((k, float(v), now, step) for k, v in metrics.items())
        if len(self._rows) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if self._rows:
            rows, self._rows = self._rows, []
            self._send("log_metric_rows", rows)
        self._send("flush")

    def log_text(self, text: str, artifact_file: str) -> None:
        self._send("log_text", text, artifact_file)

    def log_json(self, obj: Any, artifact_file: str) -> None:
        self.log_text(json.dumps(obj, indent=1, ensure_ascii=False), artifact_file)

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        self.flush()
        path = Path(local_path)
        self._send("log_artifact", path.name, path.read_bytes(), artifact_path)

    def end(self, status: str = "FINISHED", failure: str | None = None) -> None:
        self.flush()
        self._send("end", status, failure)


def train_task(cfg: TrainConfig, run_id: str, resume: ResumePoint | None, queue: Any,
               threads: int) -> RunOutcome:
    """The body of one Ray task: train `cfg` through the driver's queue, under `run_id` (the run's
    id, or on a resubmission after a node died, the key the driver now listens to). Tags the run
    with the node it trains on."""
    import ray

    clock = PhaseClock()
    clock.add("startup", _imports_s.pop() if _imports_s else 0.0)
    torch.set_num_threads(threads)
    run = QueueRun(run_id, queue)
    run.set_tags({NODE_TAG: ray.get_runtime_context().get_node_id()})
    # its own CUDA stream: runs packed on one GPU (--runs-per-gpu) never queue behind each other's work
    with torch.cuda.stream(torch.cuda.Stream()) if torch.cuda.is_available() else nullcontext():
        return train_run(cfg, run, resume, progress=False, clock=clock)
