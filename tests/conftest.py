import os

import pytest

os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
os.environ.setdefault("TQDM_DISABLE", "1")
# a Ray started inside the test process binds 127.0.0.1 only (read when `ray` is first imported)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    """An isolated MLflow store + artifact root for one test."""
    path = tmp_path / "results"
    monkeypatch.setenv("CHARRNN_RESULTS_DIR", str(path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Tiny training runs are fastest on one thread on a busy shared machine (restored after)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
