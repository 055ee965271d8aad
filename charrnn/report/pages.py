"""One experiment's page (`<experiment>.html`) and the index (`index.html`, `verdicts.csv`).

Each rendered page records itself in the directory's manifest (`index.json`: file, one-line
result, its claims' verdicts); the index is rebuilt from the manifest, so rendering one
experiment keeps the others' entries.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from charrnn import registry
from charrnn.science import tuning
from charrnn.science.stats import FINISHED, T_METHOD
from charrnn.science.verdicts import ALPHA
from . import figures as rf
from .base import (FINAL_METRICS, INDEX_MANIFEST, OPEN_DETAILS, ExperimentData, Rendered, natural_key, now_text,
                   render_template, report_filename)
from .claims_view import (RULES, experiment_verdicts, forest_figure, one_line, suite_rows, verdict_view,
                          write_verdicts_csv)
from .budget_view import budget_sections
from .sweep import speed_sweep
from .details import detail_sections, failed_runs, heat_variants, provenance, unfinished_runs
from .plots import figures
from .tables import RunStats, best_variant, prepare, primary_metric, summary_table
from .tuned import tuning_section


def build_context(exp: ExperimentData) -> dict[str, Any]:
    rf.apply_theme()
    every_run, axes, variants = prepare(exp)
    runs = tuning.judged_runs(every_run, exp.tune)      # tuned grids: one selected run per (arm, seed)
    metric = primary_metric(runs, exp.claims)
    claim = next((c for c in exp.claims if c.column == metric), None)
    higher = claim.higher_is_better if claim else registry.higher_is_better(metric)
    colors = rf.variant_colors(variants)
    views = [verdict_view(v) for v in experiment_verdicts(exp, runs, axes)]
    metrics = [metric] + [m for m in FINAL_METRICS if m in runs and m != metric]
    st = RunStats(runs)
    heat_for = heat_variants(variants, exp.claims, st, metric, higher)
    return {
        "name": exp.name, "question": exp.question, "verdicts": views, "rules": RULES,
        "method": T_METHOD, "alpha": ALPHA, "looks": exp.looks, "sequential": exp.sequential,
        "metric": metric.removeprefix("final_"), "axes": axes, "colors": colors,
        "line": one_line(views, best_variant(st, metric, higher), metric),
        "n_runs": len(every_run), "n_finished": int((every_run["status"] == FINISHED).sum()),
        "seeds": sorted(runs["seed"].astype(str).unique(), key=natural_key),
        "summary": summary_table(st, variants, metrics),
        "figures": figures(st, exp.curves, axes, variants, colors, metric),
        "budget": budget_sections(runs, exp.curves, exp.claims, axes), "sweep": speed_sweep(runs, axes),
        "tuning": tuning_section(every_run, runs, exp.tune, colors),
        "failed": failed_runs(every_run), "unfinished": unfinished_runs(every_run),
        "provenance": provenance(exp, every_run), "duplicates": exp.duplicates,
        "generated": now_text(), "open_details": OPEN_DETAILS,
        **detail_sections(exp, runs, variants, heat_for),
    }


def render_experiment(exp: ExperimentData, out_dir: Path) -> Rendered:
    t0 = time.perf_counter()
    context = build_context(exp)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / report_filename(exp.name)
    path.write_text(render_template("experiment.html", **context), encoding="utf-8")
    _update_manifest(out_dir, exp.name, {"file": path.name, "line": context["line"],
                                         "claims": context["verdicts"]})
    return Rendered(exp.name, path, context["line"], time.perf_counter() - t0)


# =========================================================================== index

def _manifest(out_dir: Path) -> dict[str, dict[str, Any]]:
    """The index's entries: experiment → file, line, claims (verdict views), generated. Entries
    whose page is gone (or whose file name is not one `report_filename` makes) are dropped."""
    try:
        data = json.loads((out_dir / INDEX_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    keys = ("file", "line", "claims", "generated")
    return {k: v for k, v in (data.items() if isinstance(data, dict) else [])
            if isinstance(v, dict) and all(key in v for key in keys)
            and re.fullmatch(r"[A-Za-z0-9._-]+\.html", str(v["file"])) and (out_dir / v["file"]).is_file()}


def _update_manifest(out_dir: Path, name: str, entry: dict[str, Any]) -> None:
    entries = _manifest(out_dir)
    entries[name] = {**entry, "generated": now_text()}
    (out_dir / INDEX_MANIFEST).write_text(json.dumps(entries, indent=1, sort_keys=True), encoding="utf-8")


def render_index(out_dir: Path, kernels: bool | None = None) -> Path:
    """`index.html` (every report in `out_dir` with its claims, raw and Holm-adjusted, and the
    forest plot) and `verdicts.csv`."""
    entries = [{"name": k, **v} for k, v in sorted(_manifest(out_dir).items())]
    rows = suite_rows(entries)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_verdicts_csv(rows, out_dir)
    path = out_dir / "index.html"
    path.write_text(render_template("index.html", entries=entries, rows=rows, forest=forest_figure(rows),
                                    rules=RULES, alpha=ALPHA, method=T_METHOD,
                                    kernels=(out_dir / "kernels.html").is_file() if kernels is None else kernels,
                                    generated=now_text()),
                    encoding="utf-8")
    return path
