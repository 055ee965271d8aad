"""The report's view of the MLflow store: `ExperimentData` built from `charrnn.science.results`.

Tables come from `results.runs_frame` / `results.curves` (the one curve loader), the question and claims from
`results.grid_definition` (the grid file of the latest invocation), provenance tags and artifact
text from `tracking`. The report page is logged back to the latest grid parent run. No torch.
"""
from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from charrnn.science import results
from charrnn.science.claims import Claim, claims_or_none
from charrnn.config import ConfigError, check_value
from charrnn.tags import REPORT_ARTIFACT_DIR, SEQUENTIAL_PREFIX
from charrnn.tracking.run_handle import RunHandle
from charrnn.tracking.store import StoredRun, Tracker, store_exists, tracking_uri
from charrnn.science.tune_space import TuneSpace, tune_of
from .base import LOADED_CURVES, PROVENANCE, ExperimentData, ReportError
from .tables import infer_axes

# one progress bar per downloaded artifact would bury the report's own output
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

SKIP_EXPERIMENTS = {"kernels"}        # the kernel suite's runs: reported by kernels.html instead


@lru_cache(maxsize=1)
def _tracker(uri: str) -> Tracker:
    return Tracker(uri)


def tracker() -> Tracker:
    if not store_exists():
        raise ReportError(f"no store at {tracking_uri(create=False)} yet; run `charrnn grid FILE` "
                          "or `charrnn train` first")
    return _tracker(tracking_uri())


def _has_trained_runs(name: str, t: Tracker) -> bool:
    return any("task" in r.params for r in results.trained_runs(name, t))


def experiment_names() -> list[str]:
    """Every experiment with at least one trained run (the kernel suite's excluded); none when
    there is no store yet."""
    if not store_exists():
        return []
    t = tracker()
    return [n for n in t.experiment_names() if n not in SKIP_EXPERIMENTS and _has_trained_runs(n, t)]


def require_experiment(name: str) -> None:
    if tracker().find_experiment(name) is None:
        raise ReportError(f"experiment={name!r}: not in the store; valid: "
                          f"{', '.join(experiment_names()) or 'none yet'}")


def _provenance(runs: list[StoredRun]) -> pd.DataFrame:
    return pd.DataFrame([{"run_id": r.run_id, **{tag: r.tags.get(tag, "") for tag in PROVENANCE.values()}}
                         for r in runs], columns=["run_id", *PROVENANCE.values()])


def _grid_runs(name: str, t: Tracker) -> list[StoredRun]:
    return [r for r in t.runs(name) if r.tags.get(results.ROLE_TAG) == results.GRID_ROLE]


def _axes(frame: pd.DataFrame, grid: dict[str, Any] | None) -> list[str]:
    declared = list(frame.attrs.get("axes") or [])
    if grid is not None:
        declared += [k for block in ("axes", "zip") for k in (grid.get(block) or {}) if k not in declared]
    return [a for a in declared if a in frame] or infer_axes(frame)


def _claims(name: str, grid: dict[str, Any] | None) -> tuple[Claim, ...]:
    """The claims of the stored grid file, parsed by the grid loader's rules."""
    if not isinstance(grid, dict):
        return ()
    lists = {}
    for block in ("axes", "zip"):
        for key, values in (grid.get(block) or {}).items() if isinstance(grid.get(block), dict) else []:
            try:
                lists[key] = tuple(check_value(key, v) for v in values)
            except (ConfigError, TypeError):
                lists[key] = tuple(values or ())
    warn = lambda err: print(f"charrnn report: {name}: claims skipped: {err}", file=sys.stderr)  # noqa: E731
    return claims_or_none(grid, lists, warn)


def _sequential(parents: list[StoredRun]) -> dict[str, str] | None:
    """How sequential seeding ended: the tags of the latest parent run that carries them."""
    for parent in reversed(parents):
        found = {k.removeprefix(SEQUENTIAL_PREFIX): v for k, v in parent.tags.items()
                 if k.startswith(SEQUENTIAL_PREFIX)}
        if found:
            return found
    return None


def _tune(name: str, grid: dict[str, Any] | None) -> TuneSpace:
    """The stored grid file's tune space, by the grid loader's parser."""
    try:
        return tune_of(grid)
    except ConfigError as err:
        raise ReportError(f"experiment={name!r}: its stored grid.yaml: {err}") from None


def load_experiment(name: str) -> ExperimentData:
    """Runs, curves, grid question/claim, provenance and an artifact reader of `name`."""
    require_experiment(name)
    t = tracker()
    frame = results.runs_frame(name, t)                     # one FINISHED run per identity
    stored = results.counted_runs(results.trained_runs(name, t))
    runs = frame.merge(_provenance(stored), on="run_id", how="left") if len(frame) else frame
    grid = results.grid_definition(name, t)
    parents = _grid_runs(name, t)
    return ExperimentData(
        name=name, runs=runs, curves=results.curves(t, stored, LOADED_CURVES),
        axes=_axes(frame, grid), question=str((grid or {}).get("question") or ""),
        claims=_claims(name, grid), artifact=t.artifact_text,
        parent_run_id=parents[-1].run_id if parents else None, sequential=_sequential(parents),
        duplicates=frame.attrs.get("duplicates", []), tune=_tune(name, grid),
        preregistered=t.preregistered_claims(name))


def log_report(parent_run_id: str, path: Path) -> None:
    """Attach the rendered page to the grid's parent run (under `report/`)."""
    t = tracker()
    RunHandle(t.client, parent_run_id, "").log_artifact(path, REPORT_ARTIFACT_DIR)


def tag_run(run_id: str, tags: dict[str, str]) -> None:
    """Set tags on a stored run (a grid's parent: its verdicts after Holm)."""
    if tags:
        RunHandle(tracker().client, run_id, "").set_tags(tags)
