"""The fence around MLflow's private APIs: every name charrnn uses that MLflow does not document as
public is imported here and nowhere else, so an MLflow upgrade is checked in one module
(tests/test_private_apis.py names the version each was last checked against).

- `local_file_uri_to_path`: a `file:` artifact URI (or a plain path) as a local path.
- the system tags charrnn sets (`mlflow.note.content`, the experiment's primary metric, a dataset's context).
- `SystemMetricsMonitor`: the monitor `mlflow.start_run(log_system_metrics=True)` starts, started here
  for runs driven through a client (imported on first use).
- `server_app()`: MLflow's own Flask app (`mlflow.server.app`), which `make ui` extends.
- `fastapi_app(flask_app)`: MLflow's FastAPI wrapper around it (`mlflow.server.fastapi_app`).
"""
from __future__ import annotations

from typing import Any

from mlflow.utils.file_utils import local_file_uri_to_path  # noqa: F401  (re-exported)
from mlflow.utils.mlflow_tags import (MLFLOW_EXPERIMENT_PRIMARY_METRIC_GREATER_IS_BETTER,  # noqa: F401
                                      MLFLOW_DATASET_CONTEXT, MLFLOW_EXPERIMENT_PRIMARY_METRIC_NAME, MLFLOW_RUN_NOTE)

CHECKED_AGAINST = "3.17.2"   # the MLflow version these were last checked against


def __getattr__(name: str) -> Any:
    """`SystemMetricsMonitor`, imported when a run first starts one."""
    if name == "SystemMetricsMonitor":
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        return SystemMetricsMonitor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def server_app() -> Any:
    """MLflow's tracking server Flask app (imported on first use: it loads the whole server)."""
    from mlflow.server import app

    return app


def fastapi_app(flask_app: Any) -> Any:
    """MLflow's FastAPI app serving `flask_app`, as `mlflow server` builds it."""
    from mlflow.server.fastapi_app import create_fastapi_app

    return create_fastapi_app(flask_app)
