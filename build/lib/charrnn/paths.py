"""Where generated output goes, without importing MLflow or torch.

`results_dir()`: the MLflow store, artifacts, benchmark JSON, exports (`CHARRNN_RESULTS_DIR`,
default `results/`). `reports_dir()`: the HTML reports and `verdicts.csv` (`--out`, else
`CHARRNN_REPORTS_DIR`, default `reports/`).
"""
from __future__ import annotations

import os
from pathlib import Path


def results_dir() -> Path:
    return Path(os.environ.get("CHARRNN_RESULTS_DIR", "results")).resolve()


def reports_dir(out: str | Path | None = None) -> Path:
    return Path(out or os.environ.get("CHARRNN_REPORTS_DIR", "reports")).resolve()
