"""Verdicts on the pages: each claim judged, the suite's Holm adjustment, verdicts.csv.

An experiment page shows each claim's raw verdict. The index gathers every page's claims (from
the manifest), applies Holm's step-down within each family, a claim's scope (source or
extrapolation; self-checks stand outside Holm), shows raw and adjusted decision side by side,
draws the forest plot and writes `verdicts.csv` next to it.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from charrnn.grid.sequential import judged_seeds
from charrnn.paths import write_atomic
from charrnn.science.budget import with_stability
from charrnn.science.verdict_table import EDITED, adjust_rows, claimed_sign, num, verdict_row, with_preregistration
from charrnn.science.window_uncertainty import (NOT_APPLICABLE, NOT_RECORDED, SEEDS, WINDOWS, WindowInterval,
                                                claim_window_interval, dominant)
from charrnn.tags import TEST_WINDOWS_ARTIFACT
from charrnn.science.verdicts import ALPHA, LABELS, Verdict, judge_claims
from charrnn import numbers as fmt
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


def judged(exp: ExperimentData, runs: pd.DataFrame) -> pd.DataFrame:
    """The runs the verdicts judge: sequential seeding's drawn seeds only."""
    seeds = judged_seeds(exp.sequential)
    return runs if seeds is None or "seed" not in runs else runs[runs["seed"].astype(str).isin(seeds)]


def experiment_verdicts(exp: ExperimentData, runs: pd.DataFrame, axes: list[str]) -> list[Verdict]:
    """`runs`: the page's runs, already the tuned selection when the grid tunes (`tuning.judged_runs`).
    Sequential seeding is judged on the seeds its looks drew, at its per-look α."""
    runs, every = judged(exp, runs), judged(exp, exp.runs)
    verdicts = with_stability(judge_claims(runs, exp.claims, axes, None, ALPHA, exp.looks, every_run=every), runs,
                              exp.curves, axes)
    return verdicts if exp.preregistered is None else with_preregistration(verdicts, exp.preregistered)


def verdict_view(v: Verdict) -> dict[str, Any]:
    """A verdict as plain data: its `verdicts.csv` row (`verdict_row`; `effect`/`low`/`high` in
    the claimed direction) plus what the page shows (`claim`: the description). The manifest
    keeps it for the index."""
    c = v.claim
    return {**verdict_row(v), "id": c.id, "claim": c.describe(), "difference": c.difference(),
            "pairing": c.pairing(), "mde_text": v.mde_text(), "edited": v.preregistration == EDITED}


def window_view(v: Verdict, exp: ExperimentData, runs: pd.DataFrame, axes: list[str],
                windows_of: Callable[[str], dict[str, Any] | None]) -> dict[str, Any]:
    """The claim's interval over test windows beside its seed interval (`window_uncertainty`):
    `window_low`/`window_high` in the claimed direction, `dominant_uncertainty`, and the page's line."""
    found = claim_window_interval(judged(exp, runs), v.claim, axes, windows_of, 1 - v.alpha)
    seed_low, seed_high = (v.effect.low, v.effect.high) if v.effect.has_ci else (math.nan, math.nan)
    which = dominant(seed_low, seed_high, found)
    s = claimed_sign(v.claim)
    low, high = sorted((s * found.low, s * found.high))
    return {"window_low": num(low), "window_high": num(high), "dominant_uncertainty": which,
            "window_shown": window_text(v, found, which, (low, high), (seed_high - seed_low) / 2)}


def window_text(v: Verdict, found: WindowInterval, which: str, directed: tuple[float, float],
                seed_half: float) -> str:
    """The page's line on test-set uncertainty ("" for metrics not scored on test windows);
    `directed`: the window interval in the claimed direction."""
    metric = v.claim.metric
    if which == NOT_APPLICABLE:
        return ""
    if which == NOT_RECORDED:
        return "not recorded (a judged run logged no per-window test scores)"
    shown = fmt.interval(*directed, metric) + (" from the reference" if v.claim.against_reference else "")
    dominates = {SEEDS: "the seeds dominate", WINDOWS: "the test windows dominate"}.get(which, which)
    return (f"{shown} ({100 * (1 - v.alpha):.3g} % bootstrap over {found.n_windows} test windows, resampled "
            f"jointly for every run, the trained models held fixed); half-width "
            f"{fmt.difference(found.half_width, metric)} against the seeds' {fmt.difference(seed_half, metric)}: "
            f"{dominates}")


def artifact_windows(exp: ExperimentData) -> Callable[[str], dict[str, Any] | None]:
    """run_id → its parsed `test_windows.json` (None when the run did not log one), read once per run."""
    @lru_cache(maxsize=None)
    def windows_of(run_id: str) -> dict[str, Any] | None:
        text = exp.artifact(run_id, TEST_WINDOWS_ARTIFACT)
        try:
            return json.loads(text) if text else None
        except json.JSONDecodeError:
            return None
    return windows_of


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
    write_atomic(path, frame.to_csv(index=False))
    return path
