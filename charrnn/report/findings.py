"""docs/findings.md, written from a suite's `verdicts.csv` alone: one plain-language line per claim.

    python -m charrnn.report.findings reports/examples/verdicts.csv docs/findings.md

rewrites the lines between the file's FINDINGS_START and FINDINGS_END markers. Each line gives the
claim, its verdict after Holm (and the raw one where they differ), the effect in the claimed direction
with its interval in the metric's units, n, whether the verdict depends on the budget, and a link to
the claim's page; first the suite's provenance (its `provenance.json`: commit, machine, torch and
MLflow versions) where the csv has one beside it; claims that test their source come first, then
our extrapolations (where the csv has a `tests` column). Nothing is typed by hand, so the docs cannot drift from the
committed pages (tests/test_findings.py checks it).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import pandas as pd

from charrnn.paths import SUITE_PROVENANCE

from . import numbers
from .base import ReportError, rewrite_document, splice_between

FINDINGS_START = "<!-- findings:start (generated from verdicts.csv: python -m charrnn.report.findings) -->"
FINDINGS_END = "<!-- findings:end -->"
SCOPES = (("source", "What the sources said"), ("extrapolation", "Our extrapolations"),
          ("self-check", "Self-checks of the harness (exact checks against a numerical tolerance, outside Holm)"))


def effect_text(row: pd.Series) -> str:
    """`−0.114 nats/char [−0.121 to −0.106], n = 5` (in the claimed direction: positive = as
    claimed), or `no effect (n = 0)` without one."""
    if not math.isfinite(row["effect"]):
        return f"no effect (n = {int(row['n'])})"
    interval = numbers.interval(row["low"], row["high"], row["metric"])
    effect = numbers.difference(row["effect"], row["metric"])
    if row["effect"] > 0 and effect[:1].isdigit() and not str(row.get("effect_sense", "")).startswith("difference"):
        effect = f"+{effect}"                   # positive = as claimed, as on the pages
    return f"{effect}{' ' + interval if interval else ''}, n = {int(row['n'])}"


def verdict_text(row: pd.Series) -> str:
    text = f"**{row['adjusted_verdict']}**"
    if row["adjusted_verdict"] != row["verdict"]:
        text += f" after Holm ({row['verdict']} on its own)"
    if row["verdict"] == "not tested" and isinstance(row.get("reason"), str):
        text += f": {row['reason']}"
    return text


def budget_text(row: pd.Series) -> str:
    """`budget-sensitive: ...` when the verdict at half the steps differs from the final one."""
    note = row.get("budget_note")
    return note if str(row.get("stable")).lower() == "false" and isinstance(note, str) and note else ""


def claim_line(row: pd.Series, page: str) -> str:
    # a claim against a number is described as "<metric> is higher than <bar>"; its effect is value − bar
    effect = "value − bar" if str(row["description"]).startswith(f"{row['metric']} ") else "effect"
    budget = budget_text(row)
    return (f"- [{row['claim']}]({page}) — {verdict_text(row)}. {row['description']}: {effect} "
            f"{effect_text(row)}{'; ' + budget if budget else ''}.")


def _experiment_blocks(rows: pd.DataFrame, pages: str) -> list[str]:
    return [f"**[{experiment}]({pages}/{experiment}.html)**\n\n"
            + "\n".join(claim_line(row, f"{pages}/{experiment}.html") for _, row in group.iterrows())
            for experiment, group in rows.groupby("experiment", sort=False)]


def provenance_text(suite: dict) -> str:
    """`Verdicts of commit 8534f1f (2026-12-06) on AMD EPYC ...: 2 cores, ...; torch 2.13.0, MLflow 3.17.2.`"""
    flags = suite.get("cpu_flags") or []
    cpu = (f"{suite.get('cpu', 'an unrecorded CPU')} ({suite.get('cpu_capability', 'dispatch not recorded')}"
           f"{'; flags ' + ' '.join(flags) if flags else ''}), {suite.get('cpu_count', '?')} cores, "
           f"torch threads {suite.get('torch_threads', 'not recorded')}")
    gpu = (f"; GPU {suite['gpu']}, driver {suite.get('gpu_driver', 'not recorded')}, CUDA {suite.get('cuda', '?')}"
           if suite.get("gpu") else "")
    dirty = " with uncommitted changes" if suite.get("dirty") else ""
    note = f" ({suite['recorded_from']})" if suite.get("recorded_from") else ""
    return (f"Verdicts of commit {suite.get('commit', 'unknown')}{dirty} ({str(suite.get('date', ''))[:10]}) on "
            f"{cpu}{gpu}; torch {suite.get('torch', 'not recorded')}, MLflow {suite.get('mlflow', 'not recorded')}"
            f"{note}.")


def read_provenance(verdicts: Path) -> dict | None:
    """The suite's provenance.json beside `verdicts`, None when it has none."""
    try:
        return json.loads((verdicts.parent / SUITE_PROVENANCE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def findings_markdown(verdicts: pd.DataFrame, pages: str = "../reports/examples",
                      provenance: dict | None = None) -> str:
    """The suite's provenance (when given), a summary line, then the claims that test their source,
    then our extrapolations (without a `tests` column: one list), each per experiment in the order
    of the csv; `pages`: where the experiment pages are, relative to the markdown file."""
    counts = verdicts["adjusted_verdict"].value_counts()
    summary = ", ".join(f"{k} {v}" for k, v in counts.items())
    blocks = [provenance_text(provenance)] if provenance else []
    blocks += [f"{len(verdicts)} claims over {verdicts['experiment'].nunique()} grids; after Holm within each scope "
               f"(self-checks outside it): {summary}. "
               "Effects are in the claimed direction: positive means as claimed."]
    if "tests" not in verdicts:
        return "\n\n".join(blocks + _experiment_blocks(verdicts, pages))
    for scope, title in SCOPES:
        rows = verdicts[verdicts["tests"] == scope]
        if len(rows):
            blocks += [f"### {title}"] + _experiment_blocks(rows, pages)
    return "\n\n".join(blocks)


def read_verdicts(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ReportError(f"verdicts={str(path)!r}: not a readable verdicts.csv ({err})") from None


def splice(document: str, block: str) -> str:
    """`document` with the text between the findings markers replaced by `block`."""
    return splice_between(document, block, FINDINGS_START, FINDINGS_END)


def pages_link(verdicts: Path, document: Path) -> str:
    """The experiment pages (beside verdicts.csv) as a link relative to the markdown file."""
    return Path(os.path.relpath(verdicts.resolve().parent, document.resolve().parent)).as_posix()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rewrite a markdown file's findings from a verdicts.csv.")
    parser.add_argument("verdicts", type=Path)
    parser.add_argument("document", type=Path, help="markdown file with the findings markers (docs/findings.md)")
    args = parser.parse_args(argv)

    def rewrite(text: str) -> str:
        return splice(text, findings_markdown(read_verdicts(args.verdicts), pages_link(args.verdicts, args.document),
                                              read_provenance(args.verdicts)))
    return rewrite_document(args.document, rewrite, "findings")

if __name__ == "__main__":
    sys.exit(main())
