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
from charrnn.paths import write_atomic
from charrnn.science import tuning
from charrnn.science.stats import FINISHED, T_METHOD
from charrnn.science.verdict_table import SELF_CHECK_FAMILY, family_sizes
from charrnn.science.verdicts import ALPHA
from . import figures as rf
from .base import (FINAL_METRICS, INDEX_MANIFEST, OPEN_DETAILS, ExperimentData, Rendered, natural_key, now_text,
                   render_template, report_filename)
from .claim_display import claim_facts, display, forest_figures
from .claims_view import (RULES, artifact_windows, experiment_verdicts, one_line, suite_rows, verdict_view,
                          window_view, write_verdicts_csv)
from .budget_view import budget_sections
from .sweep import speed_sweep
from .details import RUNNING, detail_sections, failed_runs, heat_variants, provenance, unfinished_runs
from .plots import figures
from .tables import RunStats, arm_table, best_variant, prepare, primary_metric, summary_table
from .tuned import tuning_section


REST_COLUMNS = 3   # metrics per table of the folded 'every other metric' block


def build_context(exp: ExperimentData) -> dict[str, Any]:
    rf.apply_theme()
    every_run, axes, variants = prepare(exp)
    runs = tuning.judged_runs(every_run, exp.tune)      # tuned grids: one selected run per (arm, seed)
    metric = primary_metric(runs, exp.claims)
    claim = next((c for c in exp.claims if c.column == metric), None)
    higher = claim.higher_is_better if claim else registry.higher_is_better(metric)
    colors = rf.variant_colors(variants)
    windows_of = artifact_windows(exp)
    views = [display({**verdict_view(v), **claim_facts(v.claim), **window_view(v, exp, runs, axes, windows_of)})
             for v in experiment_verdicts(exp, runs, axes)]
    claimed = list(dict.fromkeys([metric] + [c.column for c in exp.claims if c.column in runs]))
    others = [m for m in FINAL_METRICS if m in runs and m not in claimed]
    st = RunStats(runs)
    running = int((every_run["status"] == RUNNING).sum())
    heat_for = heat_variants(variants, exp.claims, st, metric, higher)
    return {
        "name": exp.name, "question": exp.question, "verdicts": views, "rules": RULES,
        "method": T_METHOD, "alpha": ALPHA, "looks": exp.looks, "sequential": exp.sequential,
        "metric": metric.removeprefix("final_"), "axes": axes, "colors": colors,
        "line": one_line(views, best_variant(st, metric, higher), metric),
        "n_runs": len(every_run), "n_finished": int((every_run["status"] == FINISHED).sum()),
        "seeds": sorted(runs["seed"].astype(str).unique(), key=natural_key),
        "arms": arm_table(st, variants, metric), "running": running,
        "summary": summary_table(st, variants, claimed),
        "summary_rest": [summary_table(st, variants, others[i:i + REST_COLUMNS])   # tables that fit 1280 px
                         for i in range(0, len(others), REST_COLUMNS)],
        "figures": figures(st, exp.curves, axes, variants, colors, metric),
        "budget": budget_sections(runs, exp.curves, exp.claims, axes), "sweep": speed_sweep(runs, axes),
        "tuning": tuning_section(every_run, runs, exp.tune, colors, exp.claims),
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
    write_atomic(path, render_template("experiment.html", **context))
    _update_manifest(out_dir, exp.name, {"file": path.name, "line": context["line"],
                                         "claims": context["verdicts"], "running": context["running"]})
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
    write_atomic(out_dir / INDEX_MANIFEST, json.dumps(entries, indent=1, sort_keys=True))


def render_index(out_dir: Path, kernels: bool | None = None) -> Path:
    """`index.html` (every claim: verdict after Holm, effect in the claimed direction, the details
    one click away; the forest plots; every report), `verdicts.csv`, and each page's after-Holm
    verdicts written into it."""
    entries = [{"name": k, **v} for k, v in sorted(_manifest(out_dir).items())]
    rows = [display(r) for r in suite_rows(entries)]
    out_dir.mkdir(parents=True, exist_ok=True)
    write_verdicts_csv(rows, out_dir)
    stamp_adjusted(out_dir, entries, rows)
    path = out_dir / "index.html"
    by_experiment = {e["name"]: [r for r in rows if r["experiment"] == e["name"]] for e in entries}
    write_atomic(path, render_template("index.html", entries=entries, groups=claim_groups(rows), n_claims=len(rows),
                                    by_experiment=by_experiment, families=families_text(rows),
                                    forests=forest_figures(rows), rules=RULES, alpha=ALPHA, method=T_METHOD,
                                    kernels=(out_dir / "kernels.html").is_file() if kernels is None else kernels,
                                    generated=now_text()))
    return path


SCOPE_TITLES = {"source": "What the source said", "extrapolation": "Our extrapolations",
                SELF_CHECK_FAMILY: "Self-checks of the harness (exact checks, outside Holm)"}


def families_text(rows: list[dict[str, Any]]) -> str:
    """The Holm families of the suite and their sizes, e.g. "source: 7 claims, extrapolation: 15"."""
    sizes = family_sizes(rows)
    return ", ".join(f"{f}: {k} claim{'s' if k != 1 else ''}" for f, k in sizes.items()) or "no tested claim"


def claim_groups(rows: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """The index's claims grouped by what they test (`tests`: source, extrapolation), in that
    order; one untitled group when no claim says."""
    if not any(r.get("tests") for r in rows):
        return [("", rows)] if rows else []
    order = [*SCOPE_TITLES, *sorted({str(r.get("tests") or "") for r in rows} - set(SCOPE_TITLES))]
    return [(SCOPE_TITLES.get(scope, scope or "Not stated"), [r for r in rows if (r.get("tests") or "") == scope])
            for scope in order if any((r.get("tests") or "") == scope for r in rows)]


def _holm_html(row: dict[str, Any]) -> str:
    return render_template("holm.html", row=row).strip()


def stamp_adjusted(out_dir: Path, entries: list[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    """Write each claim's verdict after Holm into its experiment page, beside the raw verdict (the
    page is rendered before the suite's adjustment is known; its placeholder names the claim)."""
    for entry in entries:
        path = out_dir / entry["file"]
        html = path.read_text(encoding="utf-8")
        for row in (r for r in rows if r["experiment"] == entry["name"]):
            pattern = re.compile(rf'<strong class="holm" data-claim="{re.escape(row["id"])}">.*?</strong>', re.S)
            html = pattern.sub(lambda _: _holm_html(row), html)
        write_atomic(path, html)
