"""Where generated output goes, without importing MLflow or torch.

`results_dir()`: the MLflow store, artifacts, benchmark JSON, exports (`CHARRNN_RESULTS_DIR`,
default `results/`). `reports_dir()`: the HTML reports and `verdicts.csv` (`--out`, else
`CHARRNN_REPORTS_DIR`, default `reports/`). Experiment, grid and run names become directory
and file names under them, so every verb accepts only `valid_name`s: no separators, no `..`.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
NAME_RULE = "letters, digits, '_', '.', '-', starting with a letter or digit"
SUITE_PROVENANCE = "provenance.json"   # beside a suite's verdicts.csv: the code and machine behind its verdicts


def valid_name(name: str) -> bool:
    """An experiment, grid, profile or run name that stays one path component under its directory."""
    return bool(NAME_PATTERN.match(name))


def results_dir() -> Path:
    return Path(os.environ.get("CHARRNN_RESULTS_DIR", "results")).resolve()


def reports_dir(out: str | Path | None = None) -> Path:
    return Path(out or os.environ.get("CHARRNN_REPORTS_DIR", "reports")).resolve()


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write `data` (text as UTF-8) to `path` whole or not at all: into a temporary file beside it,
    then renamed over it. A symlink at `path` is replaced, never followed; the temporary file is
    removed on failure, and those of writers no longer alive (a kill) are removed first."""
    path = Path(path)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        pid = stale.name.removeprefix(f".{path.name}.").removesuffix(".tmp")
        if pid.isdigit() and not _alive(int(pid)):
            stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as out:
            out.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
