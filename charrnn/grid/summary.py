"""What a grid's parent run shows in the MLflow UI once the grid ends: its claims judged.

The science code judges the experiment's counted runs of the invocation's profile (one FINISHED
run per identity, the tuned selection where the grid tunes), exactly as the report does at one
look; the parent run then carries

- per claim, metrics `claim.<id>.effect`, `.low`, `.high` (the per-seed effect and its interval, in
  the metric's units), so the runs table has them as columns;
- an `arms` table (`arms.json`, MLflow's table artifact): arm, metric, mean, low, high, n per
  variant and claim metric;
- a description (`mlflow.note.content`): the question, each verdict, and where the report goes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

from charrnn import registry
from charrnn.grid.spec import Grid
from charrnn.science import results, tuning
from charrnn.science.stats import FINISHED, mean_ci
from charrnn.science.verdicts import Verdict, judge_claims
from charrnn.tags import CLAIM_METRIC_PREFIX, REPORT_ARTIFACT_DIR
from charrnn.tracking.store import Tracker

NOT_A_METRIC_NAME = re.compile(r"[^\w.\- /]")   # MLflow metric names: word characters . - space /


@dataclass(frozen=True)
class GridSummary:
    metrics: dict[str, float]          # claim.<id>.effect / .low / .high (finite values only)
    arms: list[dict[str, Any]]         # rows: arm, metric, mean, low, high, n
    note: str                          # markdown for mlflow.note.content


def claim_metric_name(claim_id: str, part: str) -> str:
    """`claim.<id>.<part>`, the id's characters MLflow refuses in a metric name (e.g. `=`) as `_`."""
    return f"{CLAIM_METRIC_PREFIX}{NOT_A_METRIC_NAME.sub('_', claim_id)}.{part}"


def profile_runs(grid: Grid, profile: str, tracker: Tracker) -> tuple[pd.DataFrame, list[str]]:
    """The experiment's counted runs of `profile` (the tuned selection where the grid tunes) and
    the varied axes."""
    frame = results.runs_frame(grid.name, tracker)
    axes = [a for a in frame.attrs.get("axes", []) if a in frame]
    frame = frame[frame["profile"] == profile]
    return (tuning.judged_runs(frame, grid.tune_space) if not frame.empty else frame), axes


def claim_metrics(verdicts: list[Verdict]) -> dict[str, float]:
    out = {}
    for v in verdicts:
        for part, value in (("effect", v.effect.mean), ("low", v.effect.low), ("high", v.effect.high)):
            if pd.notna(value) and abs(value) != float("inf"):
                out[claim_metric_name(v.claim.id, part)] = float(value)
    return out


def arm_rows(runs: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    """Per variant and metric column: the mean over FINISHED runs with its Student-t interval."""
    rows = []
    if runs.empty:
        return rows
    for arm, group in runs.groupby("variant", sort=False):
        done = group[group["status"] == FINISHED]
        for column in columns:
            if column not in done:
                continue
            ci = mean_ci(pd.to_numeric(done[column], errors="coerce").dropna().to_numpy())
            rows.append({"arm": arm or "(all runs)", "metric": column.removeprefix("final_"),
                         "mean": _number(ci.mean), "low": _number(ci.low), "high": _number(ci.high), "n": ci.n})
    return rows


def _number(value: float) -> float | None:
    """4 significant figures: the table is read, not computed with (the runs hold full precision)."""
    return float(f"{value:.4g}") if pd.notna(value) else None


def _quantity(value: float, metric: str) -> str:
    unit = registry.METRICS[metric].unit if metric in registry.METRICS else ""
    return f"{value:.3g}{' ' + unit if unit else ''}"


def verdict_line(v: Verdict) -> str:
    e = v.effect
    interval = f" [{e.low:.3g}, {e.high:.3g}]" if e.has_ci else ""
    effect = f"{_quantity(e.mean, v.claim.metric)}{interval}, n = {e.n}" if pd.notna(e.mean) else f"n = {e.n}"
    return f"- **{v.claim.id}** — {v.label}: {v.claim.describe()}; effect {effect}"


def note_text(grid: Grid, profile: str, verdicts: list[Verdict], counts: dict[str, int]) -> str:
    done = ", ".join(f"{n} {k}" for k, n in counts.items())
    lines = [f"**{grid.question}**", "", f"Grid `{grid.name}`, profile `{profile}`: {done} in this invocation."]
    if verdicts:
        lines += ["", f"Verdicts over this profile's runs (95 % Student-t interval; `{CLAIM_METRIC_PREFIX}*` metrics):",
                  *map(verdict_line, verdicts)]
    lines += ["", f"Report: artifact `{REPORT_ARTIFACT_DIR}/{grid.name}.html` of the grid's latest parent run "
              f"(`charrnn report {grid.name}` writes it)."]
    return "\n".join(lines)


def grid_summary(grid: Grid, profile: str, tracker: Tracker, counts: dict[str, int]) -> GridSummary:
    runs, axes = profile_runs(grid, profile, tracker)
    verdicts = judge_claims(runs, grid.claims, axes) if grid.claims and not runs.empty else []
    columns = list(dict.fromkeys(c.column for c in grid.claims)) or ["final_val_loss"]
    return GridSummary(claim_metrics(verdicts), arm_rows(runs, columns), note_text(grid, profile, verdicts, counts))
