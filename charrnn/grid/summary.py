"""What a grid's parent run shows in the MLflow UI once the grid ends: its claims judged.

The science code judges the experiment's counted runs of the invocation's profile (one FINISHED
run per identity, the tuned selection where the grid tunes), exactly as the report does at one
look; the parent run then carries

- per claim, metrics `claim.<id>.effect`, `.low`, `.high` (the per-seed effect and its interval, in
  the metric's units and in the claimed direction: positive means as claimed, as on the pages and in
  verdicts.csv; `verdict_table.directed_effect`), so the runs table has them as columns;
- per claim, a tag `verdict.<id>`: the verdict after Holm over the grid's claims (the runs table's
  column at a glance; `charrnn report` rewrites it with the suite's Holm adjustment);
- an `arms` table (`arms.json`, MLflow's table artifact): arm, mean, low, high, n, metric per
  variant and claim metric (the numbers before the metric's name: on screen at 1280 px);
- a description (`mlflow.note.content`): each verdict first, then the question and where the report goes;
- the corpora its runs train on as dataset inputs (`corpus_inputs`: name, digest = the checksum).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from charrnn.grid.spec import Grid, RunSpec
from charrnn.science import results, tuning
from charrnn import numbers
from charrnn.science.stats import FINISHED, mean_ci
from charrnn.science.verdict_table import directed_effect
from charrnn.science.verdicts import Verdict, holm, judge_claims
from charrnn.tags import CLAIM_METRIC_PREFIX, REPORT_ARTIFACT_DIR, verdict_tag
from charrnn.tracking.run_handle import RunHandle
from charrnn.tracking.store import Tracker

NOT_A_METRIC_NAME = re.compile(r"[^\w.\- /]")   # MLflow metric names: word characters . - space /


@dataclass(frozen=True)
class GridSummary:
    metrics: dict[str, float]          # claim.<id>.effect / .low / .high (finite values only)
    tags: dict[str, str]               # verdict.<id>: the verdict after Holm
    arms: list[dict[str, Any]]         # rows: arm, mean, low, high, n, metric
    note: str                          # markdown for mlflow.note.content

    def verdict_lines(self) -> list[str]:
        """The description's verdict lines as plain text (what `charrnn grid` prints)."""
        return [line.replace("**", "") for line in self.note.splitlines() if line.startswith("- **")]


def claim_metric_name(claim_id: str, part: str) -> str:
    """`claim.<id>.<part>`, the id's characters MLflow refuses in a metric name (e.g. `=`) as `_`."""
    return f"{CLAIM_METRIC_PREFIX}{NOT_A_METRIC_NAME.sub('_', claim_id)}.{part}"


def verdict_tags(verdicts: dict[str, str]) -> dict[str, str]:
    """Claim id → verdict after Holm, as the parent run's `verdict.<id>` tags."""
    return {verdict_tag(claim_id): label for claim_id, label in verdicts.items()}


def profile_runs(grid: Grid, profile: str, tracker: Tracker) -> tuple[pd.DataFrame, list[str]]:
    """The experiment's counted runs of `profile`, every tuned value included, and the varied axes."""
    frame = results.runs_frame(grid.name, tracker)
    axes = [a for a in frame.attrs.get("axes", []) if a in frame]
    return frame[frame["profile"] == profile], axes


def claim_metrics(verdicts: list[Verdict]) -> dict[str, float]:
    out = {}
    for v in verdicts:
        for part, value in zip(("effect", "low", "high"), directed_effect(v)):
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
            rows.append({"arm": arm or "(all runs)", "mean": _number(ci.mean), "low": _number(ci.low),
                         "high": _number(ci.high), "n": ci.n, "metric": column.removeprefix("final_")})
    return rows


def _number(value: float) -> float | None:
    """4 significant figures: the table is read, not computed with (the runs hold full precision)."""
    return float(f"{value:.4g}") if pd.notna(value) else None


def verdict_line(v: Verdict) -> str:
    """`- **id** — reproduced (after Holm): <claim>; effect +0.0207 nats/char [0.01, 0.03], n = 5`,
    the effect in the claimed direction (positive = as claimed)."""
    effect, low, high = directed_effect(v)
    interval = f" {numbers.interval(low, high, v.claim.effect_metric)}" if v.effect.has_ci else ""
    shown = f"{'+' if effect > 0 else ''}{numbers.difference(effect, v.claim.effect_metric)}"
    text = f"{shown}{interval}, n = {v.effect.n}" if pd.notna(effect) else f"n = {v.effect.n}"
    label = v.adjusted or v.label
    raw = f" (before Holm: {v.label})" if label != v.label else ""
    return f"- **{v.claim.id}** — {label}{raw}: {v.claim.describe()}; effect {text}"


def note_text(grid: Grid, profile: str, verdicts: list[Verdict], counts: dict[str, int]) -> str:
    """The description: the verdicts first (what the UI shows before "Show more"), then the question."""
    done = ", ".join(f"{n} {k}" for k, n in counts.items())
    lines = []
    if verdicts:
        lines += [*map(verdict_line, verdicts), "",
                  f"Verdicts after Holm over this grid's {len(verdicts)} claim(s); effects in the claimed direction "
                  f"(positive = as claimed), 95 % Student-t interval; `{CLAIM_METRIC_PREFIX}*` metrics.", ""]
    lines += [f"**{grid.question}**", "", f"Grid `{grid.name}`, profile `{profile}`: {done} in this invocation."]
    lines += ["", f"Report: artifact `{REPORT_ARTIFACT_DIR}/{grid.name}.html` of the grid's latest parent run "
              f"(`charrnn report {grid.name}` writes it)."]
    return "\n".join(lines)


def corpus_inputs(specs: Iterable[RunSpec]) -> dict[str, tuple[str, str]]:
    """Name → (source, sha256) of each corpus the specs train on: a shipped corpus by its recorded
    checksum, a task=text file by its bytes' sha256; generated tasks (arithmetic, bitflip) have none."""
    from charrnn.tasks.corpus_sources import CORPORA

    found: dict[str, tuple[str, str]] = {}
    for cfg in (spec.config for spec in specs):
        if cfg.task in CORPORA:
            found[cfg.task] = (f"charrnn/tasks/corpora/{cfg.task}.txt", CORPORA[cfg.task].sha256)
        elif cfg.task == "text" and cfg.path and Path(cfg.path).name not in found:
            found[Path(cfg.path).name] = (cfg.path, hashlib.sha256(Path(cfg.path).read_bytes()).hexdigest())
    return found


def log_corpora(run: RunHandle, specs: Iterable[RunSpec]) -> None:
    """Each corpus the specs train on as a dataset input of `run` (`corpus_inputs`)."""
    from charrnn.tracking.datasets import log_dataset   # only where runs are written (not the report)

    for name, (source, sha256) in corpus_inputs(specs).items():
        log_dataset(run, name, sha256, source)


def grid_summary(grid: Grid, profile: str, tracker: Tracker, counts: dict[str, int]) -> GridSummary:
    every, axes = profile_runs(grid, profile, tracker)
    runs = tuning.judged_runs(every, grid.tune_space) if not every.empty else every   # one per (arm, seed)
    verdicts = holm(judge_claims(runs, grid.claims, axes, every_run=every)) if grid.claims and not runs.empty else []
    columns = list(dict.fromkeys(c.column for c in grid.claims)) or ["final_val_loss"]
    return GridSummary(claim_metrics(verdicts), verdict_tags({v.claim.id: v.adjusted for v in verdicts}),
                       arm_rows(runs, columns), note_text(grid, profile, verdicts, counts))
