"""Per-run material of a page: text samples, predictions, softmax heat maps, failures, provenance."""
from __future__ import annotations

import json
from typing import Any

import pandas as pd
from matplotlib import colormaps

from charrnn.science.claims import Claim
from charrnn.science.stats import FINISHED, matches
from .base import (DIFF_CHARS, HEATMAP_CMAP, MAX_DETAIL_VARIANTS, PROVENANCE, SAMPLE_CHARS, VISIBLE,
                   ArtifactReader, ExperimentData, natural_key)
from .tables import RunStats

RUNNING = "RUNNING"   # MLflow status of a run not ended (training, or orphaned)


def representatives(runs: pd.DataFrame, variants: list[str]) -> dict[str, pd.Series]:
    """Per variant its finished run with the lowest seed (the one whose artifacts are shown)."""
    finished = runs[runs["status"] == FINISHED]
    reps = {}
    for v in variants[:MAX_DETAIL_VARIANTS]:
        group = finished[finished["variant"] == v]
        if len(group):
            keys = [natural_key(s) for s in group["seed"]]
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


def heat_variants(variants: list[str], claims: tuple[Claim, ...], st: RunStats, metric: str,
                  higher: bool) -> list[str]:
    """Whose heat maps to show: the first comparison claim's two arms, else the best and the
    worst variant."""
    runs = st.runs
    ivs = {v: iv for v, iv in st.intervals(metric).items() if iv.n > 0}
    for claim in (c for c in claims if not c.is_threshold and c.axis in runs):
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


# --------------------------------------------------------------------------- failures, provenance

def failed_runs(runs: pd.DataFrame) -> list[dict[str, Any]]:
    """Runs that ended without finishing (FAILED, KILLED), with their reason."""
    bad = runs[~runs["status"].isin([FINISHED, RUNNING])]
    return [{"run": r["run_name"], "variant": r["variant"], "seed": r["seed"], "status": r["status"],
             "reason": str(r["failure"]) if isinstance(r["failure"], str) and r["failure"]
             else "no reason recorded"} for _, r in bad.iterrows()]


def unfinished_runs(runs: pd.DataFrame) -> list[dict[str, Any]]:
    """RUNNING runs: training now, or orphaned by an owner that died (the next `charrnn grid`
    resumes them). Neither has failed; the label says when the run last wrote to the store."""
    running = runs[runs["status"] == RUNNING]
    return [{"run": r["run_name"], "variant": r["variant"], "seed": r["seed"],
             "status": f"unfinished (no heartbeat since {_utc(r.get('last_heartbeat'))})"}
            for _, r in running.iterrows()]


def _utc(stamp: Any) -> str:
    return "?" if stamp is None or pd.isna(stamp) else pd.Timestamp(stamp).strftime("%Y-%m-%d %H:%M:%S UTC")


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
