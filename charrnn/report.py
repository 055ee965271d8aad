"""Self-contained HTML reports: one page per experiment, an index, and the kernel page.

`charrnn report [EXPERIMENT ...] [--out DIR]` → `reports/<experiment>.html` + `reports/index.html`
(+ `reports/kernels.html` when benchmark JSON exists). `CHARRNN_REPORTS_DIR` moves the output.
Pages are Jinja2 with autoescape on (every string from a run is escaped), figures are inline PNG,
CSS is inline, and nothing is loaded from the network; no JavaScript. This module never imports
torch: it reads the store through `charrnn.results` and works on plain DataFrames
(`ExperimentData`), which is what the tests feed it.
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from matplotlib import colormaps

from . import registry
from . import report_figures as rf
from .config import FIELDS
from .grid import format_value
from .stats import (FINISHED, INCONCLUSIVE, Claim, Interval, Verdict, bootstrap_ci, bootstrap_columns,
                    importance, matches, pareto_front, verdict)

FINAL_METRICS = registry.final_metrics()
DIGITS = {"final_tokens_per_s": 0, "wall_time_s": 1}   # decimals in tables; default 4
CURVE_METRICS = registry.plotted_metrics()
LINE_AXES = {"hidden_size": True, "layers": False}   # axis → log2 x scale
GAP_AXIS = "dataset_fraction"
GAP_COLUMN = "train_val_gap"    # final val loss − final train loss, per run
MAX_CURVE_POINTS = 150          # train_loss is binned to this many points per curve
MAX_DETAIL_VARIANTS = 40        # samples / predictions shown for at most this many variants
OPEN_DETAILS = 6                # of those, this many are expanded; the rest are one click away
SAMPLE_CHARS = 1200
DIFF_CHARS = 20_000
HEATMAP_CMAP = "Blues"
PROVENANCE = {"git sha": "charrnn.git_sha", "dirty": "charrnn.git_dirty", "torch": "charrnn.torch",
              "cuda": "charrnn.cuda", "device": "charrnn.device", "device name": "charrnn.device_name"}
VISIBLE = {"\n": "↵", "\t": "⇥", " ": "␣", "<pad>": "∅", "<bos>": "⊳"}
INDEX_MANIFEST = "index.json"
NO_VARIANT = "all runs"

ArtifactReader = Callable[[str, str], "str | None"]


class ReportError(ValueError):
    """Bad input to `charrnn report` (e.g. an unknown experiment): one line, exit code 2."""


def _no_artifacts(run_id: str, path: str) -> str | None:
    return None


@dataclass
class ExperimentData:
    """What a report is made from. `runs`: one row per child run with columns run_id, run_name,
    status, seed, every param, final metrics, param_count, wall_time_s, failure and provenance
    tags (`charrnn.*`). `curves`: long form run_id, metric, step, value."""

    name: str
    runs: pd.DataFrame
    curves: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["run_id", "metric", "step", "value"]))
    axes: list[str] | None = None
    question: str = ""
    claim: dict[str, Any] | None = None
    artifact: ArtifactReader = _no_artifacts
    parent_run_id: str | None = None
    duplicates: list[dict[str, Any]] = field(default_factory=list)  # results.duplicate_groups: not counted


# =========================================================================== output places

def now_text() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def reports_dir(out: str | Path | None = None) -> Path:
    return Path(out or os.environ.get("CHARRNN_REPORTS_DIR", "reports")).resolve()


def report_filename(experiment: str) -> str:
    """`<experiment>.html` with anything but letters, digits, `.`, `_`, `-` replaced."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment).strip("._")
    return f"{stem or 'experiment'}.html"


def _env() -> Environment:
    return Environment(loader=PackageLoader("charrnn", "templates"),
                       autoescape=select_autoescape(default=True, default_for_string=True),
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_template(template: str, **context: Any) -> str:
    return _env().get_template(template).render(**context)


# =========================================================================== preparing the table

def _natural_key(value: Any) -> tuple:
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def infer_axes(runs: pd.DataFrame) -> list[str]:
    """Config keys (other than seed) that take more than one value across the runs."""
    return [k for k in FIELDS if k != "seed" and k in runs and runs[k].astype(str).nunique() > 1]


def _with_defaults(runs: pd.DataFrame) -> pd.DataFrame:
    runs = runs.loc[:, ~runs.columns.duplicated()].copy()
    for col, default in (("status", FINISHED), ("seed", 0), ("failure", ""), ("run_name", "")):
        if col not in runs:
            runs[col] = default
    runs["run_name"] = runs["run_name"].fillna("").astype(str)
    runs["run_name"] = runs["run_name"].where(runs["run_name"] != "", runs["run_id"].astype(str))
    if "wall_time_s" not in runs:  # training time; where it is missing, the run's duration
        runs["wall_time_s"] = np.nan
        for col in ("train_time_s", "duration_s"):
            if col in runs:
                runs["wall_time_s"] = runs["wall_time_s"].fillna(pd.to_numeric(runs[col], errors="coerce"))
    for col in (*FINAL_METRICS, "param_count", "wall_time_s"):
        if col in runs:
            runs[col] = pd.to_numeric(runs[col], errors="coerce")
    if {"final_val_loss", "final_train_loss"} <= set(runs):
        runs[GAP_COLUMN] = runs["final_val_loss"] - runs["final_train_loss"]
    return runs


def _label(row: pd.Series, axes: list[str]) -> str:
    return ", ".join(f"{a}={format_value(row[a])}" for a in axes) if axes else NO_VARIANT


def prepare(exp: ExperimentData) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Runs with a `variant` column, the varied axes, and the variants in natural order."""
    runs = _with_defaults(exp.runs)
    axes = [a for a in (exp.axes if exp.axes is not None else infer_axes(runs)) if a in runs]
    runs["variant"] = runs.apply(_label, axis=1, axes=axes) if len(runs) else pd.Series(dtype=str)
    combos = runs.drop_duplicates("variant") if len(runs) else runs
    ordered = sorted(combos.itertuples(index=False),
                     key=lambda r: tuple(_natural_key(getattr(r, a)) for a in axes))
    return runs, axes, [r.variant for r in ordered]


def claim_column(claim: Claim) -> str:
    """The runs-table column a claim is judged on: `val_loss` → `final_val_loss`."""
    return claim.metric if claim.metric.startswith("final_") else f"final_{claim.metric}"


def primary_metric(runs: pd.DataFrame, claim: Claim | None) -> str:
    """The metric tables and figures lead with: the claim's when it was logged, else val loss."""
    if claim is not None and claim_column(claim) in runs:
        return claim_column(claim)
    return "final_val_loss"


# =========================================================================== summary and verdict

class RunStats:
    """The prepared runs and, per column, each variant's interval over its finished runs
    (computed once: several tables and figures show the same intervals)."""

    def __init__(self, runs: pd.DataFrame):
        self.runs = runs
        self._finished = runs[runs["status"] == FINISHED]
        self._cache: dict[str, dict[str, Interval]] = {}

    def intervals(self, col: str) -> dict[str, Interval]:
        if col not in self._cache:
            self._cache[col] = ({} if col not in self.runs else
                                {v: bootstrap_ci(g[col]) for v, g in self._finished.groupby("variant")})
        return self._cache[col]

    def cells(self, col: str, variants: list[str]) -> list[Interval]:
        """One interval per variant, in order (n=0 where a variant has none)."""
        ivs = self.intervals(col)
        return [ivs.get(v, bootstrap_ci([])) for v in variants]


def summary_table(st: RunStats, variants: list[str], metrics: list[str]) -> dict[str, Any]:
    """Rows per variant: runs finished/total, mean [CI] (n) per metric, params, wall time."""
    runs = st.runs
    per_metric = {m: st.cells(m, variants) for m in metrics}
    wall = st.cells("wall_time_s", variants)
    counts = runs.groupby("variant")["status"].agg(
        total="size", finished=lambda s: int((s == FINISHED).sum()))
    params = runs.groupby("variant")["param_count"].agg(["min", "max"]) if "param_count" in runs else None
    rows = []
    for i, v in enumerate(variants):
        rows.append({"variant": v, "finished": int(counts.loc[v, "finished"]),
                     "total": int(counts.loc[v, "total"]),
                     "metrics": [per_metric[m][i].fmt(DIGITS.get(m, 4)) for m in metrics],
                     "params": _params_text(params, v), "wall": wall[i].fmt(DIGITS["wall_time_s"])})
    return {"metrics": [m.removeprefix("final_") for m in metrics], "rows": rows}


def _params_text(params: pd.DataFrame | None, variant: str) -> str:
    if params is None or not np.isfinite(params.loc[variant, "min"]):
        return "n/a"
    lo, hi = int(params.loc[variant, "min"]), int(params.loc[variant, "max"])
    return f"{lo:,}" if lo == hi else f"{lo:,}–{hi:,}"


def claim_verdict(runs: pd.DataFrame, claim: Claim | None, axes: list[str]) -> Verdict | None:
    if claim is None:
        return None
    metric = claim_column(claim)
    if metric not in runs:
        return Verdict(INCONCLUSIVE, f"metric {claim.metric!r} was not logged", bootstrap_ci([]))
    return verdict(runs, claim, metric, axes)


def one_line(claim: Claim | None, result: Verdict | None, best: tuple[str, Interval] | None,
             metric: str) -> str:
    """The index's one-line result for an experiment: the claim's paired effect with its CI, or
    without a claim the best variant's mean with its CI."""
    if result is not None and claim is not None:
        return f"{result.label}: {claim.difference()} = {result.effect.fmt(4)} {claim.pairing()}"
    if best is None:
        return "no finished runs"
    return f"best {metric.removeprefix('final_')}: {best[0]} = {best[1].fmt(4)}"


def _best(st: RunStats, metric: str, higher_is_better: bool) -> tuple[str, Interval] | None:
    ivs = {v: iv for v, iv in st.intervals(metric).items() if iv.n > 0}
    if not ivs:
        return None
    pick = max if higher_is_better else min
    v = pick(ivs, key=lambda k: ivs[k].mean)
    return v, ivs[v]


# =========================================================================== figures

def _binned(frame: pd.DataFrame) -> pd.DataFrame:
    """One metric's points (run_id, variant, step, value) in ≤ MAX_CURVE_POINTS step bins shared
    by every run: mean step and value per (run, bin)."""
    steps = frame["step"].to_numpy()
    if frame["step"].nunique() <= MAX_CURVE_POINTS:
        return frame.assign(bin=steps)
    edges = np.linspace(steps.min(), steps.max() + 1, MAX_CURVE_POINTS + 1)
    return (frame.assign(bin=np.digitize(steps, edges))
            .groupby(["variant", "run_id", "bin"], as_index=False)[["step", "value"]].mean())


def curve_band(binned: pd.DataFrame) -> pd.DataFrame:
    """Mean and CI over the runs of one variant at every bin all of them logged."""
    wide = binned.pivot_table(index="bin", columns="run_id", values="value", aggfunc="mean").dropna()
    steps = binned.groupby("bin")["step"].mean().loc[wide.index]
    return bootstrap_columns(wide.to_numpy().T).assign(step=steps.to_numpy())


def curves_figure(runs: pd.DataFrame, curves: pd.DataFrame, variants: list[str],
                  colors: dict[str, str]) -> rf.Figure | None:
    finished = runs.loc[runs["status"] == FINISHED, ["run_id", "variant"]]
    data = curves[["run_id", "metric", "step", "value"]].merge(finished, on="run_id")
    data = data[np.isfinite(pd.to_numeric(data["value"], errors="coerce"))]
    panels = {}
    for metric in CURVE_METRICS:
        sub = data[data["metric"] == metric]
        if not sub.empty:
            groups = dict(list(_binned(sub).groupby("variant")))
            panels[metric] = {v: curve_band(groups[v]) for v in variants if v in groups}
    if not panels:
        return None
    return rf.Figure("curves", "Learning curves",
                     "Mean over seeds per variant; the band is the 95 % bootstrap CI at each step "
                     f"(train loss averaged within ≤ {MAX_CURVE_POINTS} step bins); n = finished "
                     "seeds, in the legend.",
                     rf.encode(rf.learning_curves(panels, colors)))


def point_figures(st: RunStats, variants: list[str], colors: dict[str, str],
                  metrics: list[str]) -> list[rf.Figure]:
    figures = []
    for metric in metrics:
        ivs = st.cells(metric, variants)
        rows = [(v, iv) for v, iv in zip(variants, ivs) if iv.n > 0]
        if rows:
            short = metric.removeprefix("final_")
            figures.append(rf.Figure(f"final-{short}", f"Final {short} per variant",
                                     "Mean over seeds with its 95 % bootstrap CI; n = finished seeds, "
                                     "beside each point.",
                                     rf.encode(rf.point_plot(rows, colors, short))))
    return figures


def _axis_points(st: RunStats, axes: list[str], variants: list[str], x: str,
                 value_col: str) -> pd.DataFrame:
    """One row per variant (in `variants` order): its numeric `x`, the label of its other axes,
    and the interval of `value_col`."""
    others = [a for a in axes if a != x]
    firsts = st.runs.drop_duplicates("variant").set_index("variant", drop=False).loc[variants]
    return pd.DataFrame({
        x: pd.to_numeric(firsts[x], errors="coerce").to_numpy(),
        "group": [", ".join(f"{a}={format_value(r[a])}" for a in others) for _, r in firsts.iterrows()],
        "variant": variants,
        "iv": st.cells(value_col, variants),
    }).dropna(subset=[x])


def _n_text(intervals: list[Interval]) -> str:
    """`n = 3 seeds per point` (or a range) for captions of figures without per-point labels."""
    ns = sorted({iv.n for iv in intervals if iv.n > 0})
    if not ns:
        return "no finished seeds"
    span = str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
    return f"n = {span} finished seeds per point"


def axis_figures(st: RunStats, axes: list[str], variants: list[str], colors: dict[str, str],
                 metric: str) -> list[rf.Figure]:
    figures = []
    for x, log_x in LINE_AXES.items():
        if x in axes and metric in st.runs:
            points = _axis_points(st, axes, variants, x, metric)
            short = metric.removeprefix("final_")
            figures.append(rf.Figure(f"by-{x}", f"{short} against {x}",
                                     "Mean and 95 % CI over seeds per variant "
                                     f"({_n_text(list(points['iv']))}); lines join variants "
                                     "that share the other axes.",
                                     rf.encode(rf.axis_plot(points, x, short, colors, log_x))))
    return figures


def gap_figure(st: RunStats, axes: list[str], variants: list[str],
               colors: dict[str, str]) -> rf.Figure | None:
    if GAP_AXIS not in axes or GAP_COLUMN not in st.runs:
        return None
    points = _axis_points(st, axes, variants, GAP_AXIS, GAP_COLUMN)
    return rf.Figure("gap", "Train–val gap against dataset fraction",
                     "final val loss − final train loss per run; mean and 95 % CI over seeds "
                     f"({_n_text(list(points['iv']))}). A growing gap at small fractions is memorisation.",
                     rf.encode(rf.axis_plot(points, GAP_AXIS, "val − train loss", colors, True)))


def cost_figure(st: RunStats, variants: list[str], colors: dict[str, str],
                metric: str) -> rf.Figure | None:
    runs, loss, wall = st.runs, st.intervals(metric), st.intervals("wall_time_s")
    params = runs.groupby("variant")["param_count"].mean() if "param_count" in runs else pd.Series(dtype=float)
    rows = pd.DataFrame([{"variant": v, "loss": loss[v], "time": wall.get(v, bootstrap_ci([])),
                          "params": float(params.get(v, np.nan))} for v in variants if v in loss])
    if rows.empty:
        return None
    means = np.array([iv.mean for iv in rows["loss"]])
    rows["front_time"] = pareto_front([iv.mean for iv in rows["time"]], means)
    rows["front_params"] = pareto_front(rows["params"].to_numpy(), means)
    short = metric.removeprefix("final_")
    return rf.Figure("cost", "Cost view",
                     f"Final {short} against wall time per run and against parameter count; "
                     f"mean and 95 % CI over seeds ({_n_text(list(rows['loss']))}); ringed points "
                     "on the dashed line are the Pareto front (nothing is both cheaper and better).",
                     rf.encode(rf.cost_plot(rows, colors, short)))


def importance_figure(runs: pd.DataFrame, axes: list[str], metric: str) -> rf.Figure | None:
    if len(axes) < 2 or metric not in runs:
        return None
    shares = importance(runs, axes, metric)
    short = metric.removeprefix("final_")
    return rf.Figure("importance", "Hyper-parameter importance",
                     "fANOVA-style main effects: the share of the variance of final "
                     f"{short} explained by each axis alone; 95 % CI from resampling seeds (n = "
                     "seeds, beside each bar). The rest is interactions and seed noise.",
                     rf.encode(rf.importance_plot(shares, short)))


def figures(st: RunStats, curves: pd.DataFrame, axes: list[str], variants: list[str],
            colors: dict[str, str], metric: str) -> list[rf.Figure]:
    runs = st.runs
    point_metrics = [metric] + [m for m in ("final_val_accuracy",) if m in runs and m != metric]
    found = [curves_figure(runs, curves, variants, colors),
             *point_figures(st, variants, colors, point_metrics),
             gap_figure(st, axes, variants, colors),
             *axis_figures(st, axes, variants, colors, metric),
             cost_figure(st, variants, colors, metric),
             importance_figure(runs, axes, metric)]
    return [f for f in found if f is not None]


# =========================================================================== run artifacts

def representatives(runs: pd.DataFrame, variants: list[str]) -> dict[str, pd.Series]:
    """Per variant its finished run with the lowest seed (the one whose artifacts are shown)."""
    finished = runs[runs["status"] == FINISHED]
    reps = {}
    for v in variants[:MAX_DETAIL_VARIANTS]:
        group = finished[finished["variant"] == v]
        if len(group):
            keys = [_natural_key(s) for s in group["seed"]]
            reps[v] = group.iloc[min(range(len(keys)), key=keys.__getitem__)]
    return reps


def _visible(token: str) -> str:
    return VISIBLE.get(token, token)


def _cells(tokens: list[str], target: list[str], scored: list[bool], given: int) -> list[dict]:
    cells = []
    for i, (tok, tgt) in enumerate(zip(map(str, tokens), target)):
        cls = "ctx" if i < given else "na" if i < len(scored) and not scored[i] else "ok" if tok == tgt else "bad"
        cells.append({"text": _visible(tok), "cls": cls})
    return cells


def prediction_view(pred: dict[str, Any]) -> dict[str, Any]:
    """The target row, and the teacher-forced and free-running rows with each token classed
    ok / bad (against the target) / ctx (given, not predicted) / na (not scored)."""
    target = [str(t) for t in pred.get("target", [])]
    scored = [bool(s) for s in pred.get("scored", [True] * len(target))]
    start = int(pred.get("free_running_from", 0))
    rows = [("teacher-forced", _cells(pred.get("teacher_forced", []), target, scored, 0)),
            ("free-running", _cells(pred.get("free_running", []), target, scored, start))]
    return {"target": [{"text": _visible(t)} for t in target],
            "rows": [{"label": label, "cells": cells, "score": _score(cells)} for label, cells in rows]}


def _score(cells: list[dict]) -> str:
    judged = [c for c in cells if c["cls"] in ("ok", "bad")]
    right = sum(c["cls"] == "ok" for c in judged)
    return f"{right}/{len(judged)} scored characters right" if judged else "no scored characters"


def heatmap_view(pred: dict[str, Any]) -> dict[str, Any] | None:
    """Top-k softmax per position as a table: columns = positions, rows = rank; colour = p."""
    heat = pred.get("heatmap") or {}
    tokens, probs = heat.get("tokens") or [], heat.get("probs") or []
    if not tokens:
        return None
    cmap = colormaps[HEATMAP_CMAP]
    k = max(len(row) for row in tokens)
    ranks = []
    for r in range(k):
        ranks.append([_heat_cell(cmap, toks[r], ps[r]) if r < len(toks) else None
                      for toks, ps in zip(tokens, probs)])
    inputs = [_visible(t) for t in pred.get("input", [])[:len(tokens)]]
    targets = [_visible(t) for t in pred.get("target", [])[:len(tokens)]]
    return {"inputs": inputs, "targets": targets, "ranks": ranks}


def _heat_cell(cmap, token: str, p: float) -> dict[str, Any]:
    r, g, b, _ = cmap(0.08 + 0.92 * float(p))
    return {"text": _visible(token), "p": f"{float(p):.2f}",
            "bg": f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}",
            "fg": "#ffffff" if p > 0.55 else "#111111"}


def _json_artifact(read: ArtifactReader, run_id: str, path: str) -> dict[str, Any] | None:
    text = read(run_id, path)
    if not text:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _heat_variants(variants: list[str], claim: Claim | None, st: RunStats, metric: str,
                   higher: bool) -> list[str]:
    """Whose heat maps to show: the claim's two arms, else the best and the worst variant."""
    runs = st.runs
    ivs = {v: iv for v, iv in st.intervals(metric).items() if iv.n > 0}
    if claim is not None and not claim.is_threshold and claim.axis in runs:
        arms = [[v for v in variants if _variant_has(runs, v, claim.axis, level)]
                for level in (claim.value, claim.baseline)]
        picks = [arm[0] for arm in arms if arm]
        if picks:
            return picks
    ranked = sorted(ivs, key=lambda v: ivs[v].mean, reverse=higher)
    return list(dict.fromkeys(ranked[:1] + ranked[-1:]))


def _variant_has(runs: pd.DataFrame, variant: str, axis: str, level: Any) -> bool:
    rows = runs[runs["variant"] == variant]
    return bool(len(rows)) and bool(matches(rows[axis], level).all())


def detail_sections(exp: ExperimentData, runs: pd.DataFrame, variants: list[str],
                    heat_for: list[str]) -> dict[str, list[dict]]:
    samples, predictions, heatmaps = [], [], []
    for v, run in representatives(runs, variants).items():
        rid = str(run["run_id"])
        text = exp.artifact(rid, "samples/sample.txt")
        if text is not None:
            samples.append({"variant": v, "run": run["run_name"], "seed": run["seed"],
                            "text": text[:SAMPLE_CHARS], "cut": len(text) > SAMPLE_CHARS})
        pred = _json_artifact(exp.artifact, rid, "predictions.json")
        if pred is not None:
            predictions.append({"variant": v, "run": run["run_name"], **prediction_view(pred)})
            heat = heatmap_view(pred) if v in heat_for else None
            if heat is not None:
                heatmaps.append({"variant": v, "run": run["run_name"], **heat})
    return {"samples": samples, "predictions": predictions, "heatmaps": heatmaps}


# =========================================================================== failures, provenance

def failed_runs(runs: pd.DataFrame) -> list[dict[str, Any]]:
    bad = runs[runs["status"] != FINISHED]
    return [{"run": r["run_name"], "variant": r["variant"], "seed": r["seed"], "status": r["status"],
             "reason": str(r["failure"]) if isinstance(r["failure"], str) and r["failure"]
             else "no reason recorded"} for _, r in bad.iterrows()]


def provenance(exp: ExperimentData, runs: pd.DataFrame) -> dict[str, Any]:
    cols = {label: col for label, col in PROVENANCE.items() if col in runs}
    table = []
    if cols and len(runs):
        grouped = runs[list(cols.values())].fillna("").astype(str).value_counts(sort=False)
        table = [{"values": list(key if isinstance(key, tuple) else (key,)), "runs": int(n)}
                 for key, n in grouped.items()]
    return {"columns": list(cols), "rows": table, "files": _provenance_files(exp, runs)}


def _provenance_files(exp: ExperimentData, runs: pd.DataFrame) -> list[dict[str, str]]:
    """pip freeze of one run, and each distinct uncommitted diff (dirty runs), truncated."""
    if runs.empty:
        return []
    files = []
    first = str(runs.iloc[0]["run_id"])
    freeze = exp.artifact(first, "provenance/pip_freeze.txt")
    if freeze:
        files.append({"title": f"pip freeze (run {runs.iloc[0]['run_name']})", "text": freeze[:DIFF_CHARS]})
    dirty_col = PROVENANCE["dirty"]
    dirty = runs[runs[dirty_col].astype(str).str.lower() == "true"] if dirty_col in runs else runs.iloc[0:0]
    seen: set[str] = set()
    for _, r in dirty.drop_duplicates(PROVENANCE["git sha"] if PROVENANCE["git sha"] in runs else "run_id").iterrows():
        diff = exp.artifact(str(r["run_id"]), "provenance/git_diff.patch")
        if diff and diff not in seen and len(seen) < 3:
            seen.add(diff)
            files.append({"title": f"uncommitted diff (run {r['run_name']})", "text": diff[:DIFF_CHARS]})
    return files


# =========================================================================== one experiment

@dataclass(frozen=True)
class Rendered:
    name: str
    path: Path
    line: str
    verdict: str | None
    claim: str              # the claim in words ("" without one) and its source
    source: str
    seconds: float          # loading (when read from the store) and rendering


def build_context(exp: ExperimentData) -> dict[str, Any]:
    rf.apply_theme()
    runs, axes, variants = prepare(exp)
    claim = Claim.from_spec(exp.claim) if exp.claim else None
    metric = primary_metric(runs, claim)
    higher = claim.higher_is_better if claim else registry.higher_is_better(metric)
    colors = rf.variant_colors(variants)
    result = claim_verdict(runs, claim, axes)
    metrics = [metric] + [m for m in FINAL_METRICS if m in runs and m != metric]
    st = RunStats(runs)
    heat_for = _heat_variants(variants, claim, st, metric, higher)
    return {
        "name": exp.name, "question": exp.question, "claim": claim, "verdict": result,
        "metric": metric.removeprefix("final_"), "axes": axes, "colors": colors,
        "line": one_line(claim, result, _best(st, metric, higher), metric),
        "n_runs": len(runs), "n_finished": int((runs["status"] == FINISHED).sum()),
        "seeds": sorted(runs["seed"].astype(str).unique(), key=_natural_key),
        "summary": summary_table(st, variants, metrics),
        "figures": figures(st, exp.curves, axes, variants, colors, metric),
        "failed": failed_runs(runs), "provenance": provenance(exp, runs),
        "generated": now_text(), "open_details": OPEN_DETAILS,
        **detail_sections(exp, runs, variants, heat_for),
        "duplicates": exp.duplicates,
    }


def render_experiment(exp: ExperimentData, out_dir: Path) -> Rendered:
    t0 = time.perf_counter()
    context = build_context(exp)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / report_filename(exp.name)
    path.write_text(render_template("experiment.html", **context), encoding="utf-8")
    result, claim = context["verdict"], context["claim"]
    rendered = Rendered(exp.name, path, context["line"], result.label if result else None,
                        claim.describe() if claim else "", claim.source if claim else "",
                        time.perf_counter() - t0)
    _update_manifest(out_dir, rendered)
    return rendered


# =========================================================================== index

def _manifest(out_dir: Path) -> dict[str, dict[str, Any]]:
    """The index's entries: experiment → file, line, verdict, claim, source, generated. Entries
    whose page is gone (or whose file name is not one `report_filename` makes) are dropped."""
    try:
        data = json.loads((out_dir / INDEX_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    keys = ("file", "line", "verdict", "generated")
    return {k: v for k, v in (data.items() if isinstance(data, dict) else [])
            if isinstance(v, dict) and all(key in v for key in keys)
            and re.fullmatch(r"[A-Za-z0-9._-]+\.html", str(v["file"])) and (out_dir / v["file"]).is_file()}


def _update_manifest(out_dir: Path, rendered: Rendered) -> None:
    entries = _manifest(out_dir)
    entries[rendered.name] = {"file": rendered.path.name, "line": rendered.line,
                              "verdict": rendered.verdict, "claim": rendered.claim,
                              "source": rendered.source,
                              "generated": now_text()}
    (out_dir / INDEX_MANIFEST).write_text(json.dumps(entries, indent=1, sort_keys=True), encoding="utf-8")


def render_index(out_dir: Path) -> Path:
    """`index.html`: every report in `out_dir` (from its manifest) with its one-line result."""
    entries = [{"name": k, **v} for k, v in sorted(_manifest(out_dir).items())]
    kernels = (out_dir / "kernels.html").is_file()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "index.html"
    path.write_text(render_template("index.html", entries=entries, kernels=kernels,
                                    generated=now_text()),
                    encoding="utf-8")
    return path


# =========================================================================== entry point

def render_reports(experiments: list[str] | None = None, out: str | Path | None = None,
                   log_to_parent: bool = True) -> list[Rendered]:
    """Render `experiments` (default: every grid experiment in the store), the kernel page when
    benchmark JSON exists, and the index. Each page is also logged to its grid's parent run."""
    from . import report_kernels, report_store

    out_dir = reports_dir(out)
    names = experiments or report_store.experiment_names()
    for name in names:                 # every name checked before anything is written
        report_store.require_experiment(name)
    done = []
    for name in names:
        t0 = time.perf_counter()
        exp = report_store.load_experiment(name)
        rendered = replace(render_experiment(exp, out_dir), seconds=time.perf_counter() - t0)
        if log_to_parent and exp.parent_run_id:
            report_store.log_report(exp.parent_run_id, rendered.path)
        done.append(rendered)
    report_kernels.render_kernels(out_dir)
    render_index(out_dir)
    return done
