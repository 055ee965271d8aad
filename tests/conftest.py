import os

import pytest

os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    """An isolated MLflow store + artifact root for one test."""
    path = tmp_path / "results"
    monkeypatch.setenv("CHARRNN_RESULTS_DIR", str(path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return path
