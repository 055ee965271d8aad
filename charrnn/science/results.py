"""An MLflow experiment as tidy pandas tables, and their CSV/Parquet export. Never imports torch.

- `runs_frame`: one row per trained run (grid parent runs excluded): run id and name, config
  hash, status and failure reason, seed, the varied values (typed, one column each), final
  metrics, its phase seconds (`time_<phase>_s`, `charrnn.run.phases`), duration, param_count, then
  every other config key.
- `curves_frame`: long form, one row per (run, metric, step) — the last value logged at a step
  wins, so a resumed run's replayed steps appear once.
- Exactly one FINISHED run per config identity is kept (the earliest started); any further
  FINISHED run of the same identity is a duplicate (`finished_duplicates`), left out of both
  tables and listed in `runs_frame(...).attrs["duplicates"]` instead of being counted.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from charrnn import registry
from charrnn.config import FIELD_TYPES, FIELDS, ConfigError
from charrnn.tags import FAILURE_TAG, GRID_ARTIFACT, GRID_ROLE, HEARTBEAT_TAG, RESUMED_TAG, ROLE_TAG, TAG_PREFIX
from charrnn.tags import TIME_METRICS   # where each run's wall time went (charrnn.run.phases)
from charrnn.paths import results_dir, write_atomic
from charrnn.tracking.bulk_metrics import metric_histories
from charrnn.tracking.store import StoredRun, Tracker, store_exists, tracking_uri

CURVE_METRICS = registry.curve_metrics()
JUDGED_PREFIXES = ("final_", "baseline_")   # final metrics, and the trivial baselines of the learning check
RUN_SUMMARY = ("train_time_s", "converged", "best_step", "epochs")   # how long it trained and why it stopped
ID_COLUMNS = ["run_id", "run_name", "variant", "identity", "status", "failure", "seed"]
INFO_COLUMNS = ["param_count", "duration_s", "start_time", "end_time", "last_heartbeat", "grid", "profile",
                "resumed_from_step", "parent_run_id"]
FORMATS = {"csv": ".csv", "parquet": ".parquet"}


def _typed(key: str, text: str | None) -> Any:
    """An MLflow param string back to its config type ("64" → 64, "True" → True)."""
    if text is None:
        return None
    kind = FIELD_TYPES.get(key, str)
    try:
        if kind is bool:
            return text.lower() in ("true", "1", "yes")
        return kind(float(text)) if kind is int else kind(text)
    except ValueError:
        return text


def _int(text: str | None) -> int | None:
    return None if text is None else int(float(text))


def _varied(run: StoredRun) -> dict[str, Any]:
    raw = run.tag("varied")
    return json.loads(raw) if raw else {}


def trained_runs(experiment: str, tracker: Tracker) -> list[StoredRun]:
    """The experiment's runs that trained something: grid parent runs excluded."""
    return [r for r in tracker.runs(experiment) if r.tags.get(ROLE_TAG) != GRID_ROLE]


def _identity(run: StoredRun) -> dict[str, Any]:
    """The columns that name a run: id, name, variant, seed and its varied values (typed)."""
    return {"run_id": run.run_id, "run_name": run.name, "variant": run.tag("variant"),
            "seed": _typed("seed", run.params.get("seed")),
            **{key: _typed(key, run.params.get(key, str(value))) for key, value in _varied(run).items()}}


def _row(run: StoredRun) -> dict[str, Any]:
    end = run.end_time if run.status != "RUNNING" else None
    row: dict[str, Any] = {
        **_identity(run), "identity": run.identity, "status": run.status,
        "failure": run.tags.get(FAILURE_TAG),
        **{k: v for k, v in sorted(run.metrics.items())
           if k.startswith(JUDGED_PREFIXES) or k in RUN_SUMMARY or k in TIME_METRICS},
        "param_count": _int(run.params.get("param_count")),
        "duration_s": (end - run.start_time) / 1000 if end else None,
        "start_time": pd.Timestamp(run.start_time, unit="ms", tz="UTC"),
        "end_time": pd.Timestamp(end, unit="ms", tz="UTC") if end else None,
        "last_heartbeat": pd.Timestamp(int(run.tags.get(HEARTBEAT_TAG) or run.start_time), unit="ms", tz="UTC"),
        "grid": run.tags.get(TAG_PREFIX + "grid"), "profile": run.tags.get(TAG_PREFIX + "profile"),
        "resumed_from_step": _int(run.tags.get(RESUMED_TAG)), "parent_run_id": run.parent_run_id,
    }
    row.update({key: _typed(key, run.params.get(key)) for key in FIELDS if key not in row})
    return row


def finished_duplicates(frame: pd.DataFrame) -> pd.DataFrame:
    """The FINISHED runs that repeat an identity: every FINISHED run of an identity but the earliest
    started (ties: lowest run id), which is the one kept. Needs columns run_id, identity, status,
    start_time; returns identity, run_id, kept_run_id (runs without an identity never repeat)."""
    done = frame[(frame["status"] == "FINISHED") & frame["identity"].notna()]
    done = done.sort_values(["start_time", "run_id"], kind="stable")
    kept = done.drop_duplicates("identity", keep="first").set_index("identity")["run_id"]
    extra = done[done.duplicated("identity", keep="first")]
    return pd.DataFrame({"identity": extra["identity"], "run_id": extra["run_id"],
                         "kept_run_id": extra["identity"].map(kept)}).reset_index(drop=True)


def duplicate_groups(duplicates: pd.DataFrame) -> list[dict[str, Any]]:
    """`finished_duplicates` per identity: [{identity, kept_run_id, run_ids}] (plain data)."""
    grouped = duplicates.groupby(["identity", "kept_run_id"], sort=True)["run_id"]
    return [{"identity": identity, "kept_run_id": kept, "run_ids": sorted(ids)}
            for (identity, kept), ids in grouped]


def runs_frame(experiment: str, tracker: Tracker | None = None) -> pd.DataFrame:
    """One row per trained run of `experiment`, oldest first, one FINISHED run per identity;
    `attrs["axes"]` lists the varied keys, `attrs["duplicates"]` the FINISHED runs left out
    (`duplicate_groups`)."""
    runs = trained_runs(experiment, tracker or Tracker())
    frame = pd.DataFrame([_row(r) for r in runs])
    axes = list(dict.fromkeys(key for r in runs for key in _varied(r)))
    if frame.empty:
        frame = pd.DataFrame(columns=ID_COLUMNS + INFO_COLUMNS + list(FIELDS))
    metrics = sorted(c for c in frame.columns if c.startswith(JUDGED_PREFIXES) or c in RUN_SUMMARY or c in TIME_METRICS)
    ordered = ID_COLUMNS + axes + metrics + INFO_COLUMNS
    frame = frame[ordered + [c for c in frame.columns if c not in ordered]]
    duplicates = finished_duplicates(frame)
    frame = frame[~frame["run_id"].isin(duplicates["run_id"])].reset_index(drop=True)
    frame.attrs["axes"] = axes
    frame.attrs["duplicates"] = duplicate_groups(duplicates)
    return frame


def curves(tracker: Tracker, runs: list[StoredRun], metrics: tuple[str, ...] = CURVE_METRICS) -> pd.DataFrame:
    """The curve loader: long form run_id, metric, step, value of `runs`, in their order, then
    `metrics`' order, then step. Where a step was logged twice (a resumed run replaying steps)
    the value logged last wins. Read in bulk (`tracking.metric_histories`)."""
    frame = pd.DataFrame(metric_histories(tracker, [r.run_id for r in runs], metrics),
                         columns=["run_id", "metric", "step", "value", "timestamp"])
    frame = frame.sort_values("timestamp", kind="stable").drop_duplicates(["run_id", "metric", "step"], keep="last")
    order = {r.run_id: i for i, r in enumerate(runs)}
    frame = frame.assign(_run=frame["run_id"].map(order), _metric=frame["metric"].map(metrics.index))
    frame = frame.sort_values(["_run", "_metric", "step"], kind="stable")
    return frame.drop(columns=["_run", "_metric", "timestamp"]).reset_index(drop=True)


def curves_frame(experiment: str, metrics: tuple[str, ...] = CURVE_METRICS,
                 tracker: Tracker | None = None) -> pd.DataFrame:
    """Long form: run_id, run_name, variant, seed, the varied values, metric, step, value
    (`curves` of the experiment's counted runs, with the columns that name each run)."""
    tracker = tracker or Tracker()
    runs = counted_runs(trained_runs(experiment, tracker))
    points = curves(tracker, runs, metrics)
    if points.empty:
        return pd.DataFrame(columns=["run_id", "run_name", "variant", "seed", "metric", "step", "value"])
    names = pd.DataFrame([_identity(r) for r in runs])
    frame = points.merge(names, on="run_id", how="left")
    return frame[list(names.columns) + ["metric", "step", "value"]]


def counted_runs(runs: list[StoredRun]) -> list[StoredRun]:
    """`runs` without the FINISHED duplicates (`finished_duplicates`)."""
    frame = pd.DataFrame([{"run_id": r.run_id, "identity": r.identity, "status": r.status,
                           "start_time": r.start_time} for r in runs],
                         columns=["run_id", "identity", "status", "start_time"])
    extra = set(finished_duplicates(frame)["run_id"])
    return [r for r in runs if r.run_id not in extra]


def grid_definition(experiment: str, tracker: Tracker | None = None) -> dict[str, Any] | None:
    """The grid file (parsed YAML) of the experiment's latest invocation, or None."""
    tracker = tracker or Tracker()
    parents = [r for r in tracker.runs(experiment) if r.tags.get(ROLE_TAG) == GRID_ROLE]
    for parent in reversed(parents):
        text = tracker.artifact_text(parent.run_id, GRID_ARTIFACT)
        if text is not None:
            return yaml.safe_load(text)
    return None


def export(experiment: str, fmt: str = "csv", out: str | Path | None = None, curves: bool = False,
           tracker: Tracker | None = None) -> Path:
    """Write the runs (or curves) table of `experiment` to `out` (default results/<experiment>.<fmt>)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format={fmt!r}: unknown format; valid choices: {', '.join(FORMATS)}")
    if tracker is None and not store_exists():
        raise ConfigError(f"experiment={experiment!r}: there is no store at {tracking_uri(create=False)} "
                          "yet; valid: an experiment that `charrnn grid` or `charrnn train` created")
    tracker = tracker or Tracker()
    if tracker.find_experiment(experiment) is None:
        names = ", ".join(tracker.experiment_names()) or "none yet"
        raise ConfigError(f"experiment={experiment!r}: not in the store; valid: {names}")
    frame = curves_frame(experiment, tracker=tracker) if curves else runs_frame(experiment, tracker)
    suffix = ("-curves" if curves else "") + FORMATS[fmt]
    path = Path(out) if out else results_dir() / f"{experiment}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, frame.to_csv(index=False) if fmt == "csv" else frame.to_parquet(index=False))
    return path
