"""Verdicts on the pages: each claim judged, the suite's Holm adjustment, verdicts.csv.

An experiment page shows each claim's raw verdict. The index gathers every page's claims (from
the manifest), applies Holm's step-down within each family, a claim's scope (source or
extrapolation; self-checks stand outside Holm), shows raw and adjusted decision side by side,
draws the forest plot and writes `verdicts.csv` next to it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from charrnn.grid.sequential import judged_seeds
from charrnn.science.budget import with_stability
from charrnn.science.verdict_table import adjust_rows, verdict_row, with_preregistration
from charrnn.science.verdicts import ALPHA, LABELS, Verdict, judge_claims
from .base import VERDICT_COLUMNS, VERDICTS_CSV, ExperimentData

RULES = [
    ("reproduced", "the interval lies beyond the margin on the claimed side"),
    ("contradicted", "the interval lies beyond the margin on the other side (equivalence claims: "
                     "on either side)"),
    ("equivalent", "the whole interval lies within ±margin (two one-sided t-tests, TOST)"),
    ("underpowered", "none of these; the minimum detectable effect (80 % power) and the seeds that "
                     "would decide are given"),
    ("not tested", "the manipulation check failed: bit-identical arms, an intervention that never "
                   "engaged, both arms at the metric's floor or ceiling, or the metric not logged"),
]
assert [label for label, _ in RULES] == list(LABELS)


def experiment_verdicts(exp: ExperimentData, runs: pd.DataFrame, axes: list[str]) -> list[Verdict]:
    """`runs`: the page's runs, already the tuned selection when the grid tunes (`tuning.judged_runs`).
    Sequential seeding is judged on the seeds its looks drew, at its per-look α."""
    seeds = judged_seeds(exp.sequential)
    every = exp.runs
    if seeds is not None:
        runs = runs[runs["seed"].astype(str).isin(seeds)]
        every = every[every["seed"].astype(str).isin(seeds)] if "seed" in every else every
    verdicts = with_stability(judge_claims(runs, exp.claims, axes, None, ALPHA, exp.looks, every_run=every), runs,
                              exp.curves, axes)
    return verdicts if exp.preregistered is None else with_preregistration(verdicts, exp.preregistered)


def verdict_view(v: Verdict) -> dict[str, Any]:
    """A verdict as plain data: its `verdicts.csv` row (`verdict_row`; `effect`/`low`/`high` in
    the claimed direction) plus what the page shows (`claim`: the description, `effect_text`:
    the plain difference). The manifest keeps it for the index."""
    c, e = v.claim, v.effect
    return {**verdict_row(v), "id": c.id, "claim": c.describe(), "difference": c.difference(),
            "pairing": c.pairing(), "effect_text": e.fmt(4), "mde_text": v.mde_text()}


def one_line(views: list[dict[str, Any]], best: tuple[str, Any] | None, metric: str) -> str:
    """The index's one-line result: each claim's verdict and effect, or without claims the best
    variant's mean with its CI."""
    if views:
        return "; ".join(f"{v['id']}: {v['verdict']}, {v['effect_shown']}" for v in views)
    if best is None:
        return "no finished runs"
    return f"best {metric.removeprefix('final_')}: {best[0]} = {best[1].fmt(4)}"


# --------------------------------------------------------------------------- the suite

def suite_rows(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per claim over every experiment of the index, with Holm-adjusted p and decision
    within each family (the claim's scope; self-checks stand outside Holm): `adjust_rows`."""
    rows = [{"experiment": e["name"], "file": e["file"], **c} for e in entries for c in e.get("claims") or []]
    return adjust_rows(rows)


def write_verdicts_csv(rows: list[dict[str, Any]], out_dir: Path) -> Path:
    """`verdicts.csv`: one row per claim, columns VERDICT_COLUMNS (`claim` is the claim's id)."""
    frame = pd.DataFrame([{**{k: r.get(k) for k in VERDICT_COLUMNS}, "claim": r["id"], "description": r["claim"]}
                          for r in rows],
                         columns=VERDICT_COLUMNS)
    path = out_dir / VERDICTS_CSV
    frame.to_csv(path, index=False)
    return path
