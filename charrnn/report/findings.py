"""docs/findings.md, written from a suite's `verdicts.csv` alone: one plain-language line per claim.

    python -m charrnn.report.findings reports/examples/verdicts.csv docs/findings.md \
        [--converged reports/examples/converged/verdicts.csv]

rewrites the lines between the file's FINDINGS_START and FINDINGS_END markers and, with
`--converged`, those between SIDE_BY_SIDE_START and SIDE_BY_SIDE_END: for every claim of the
converged suite, its quick and converged verdicts on one line, and for each flip what changed
(`side_by_side_markdown`). Each line gives the
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

from charrnn import numbers
from .base import ReportError, rewrite_document, splice_between

FINDINGS_START = "<!-- findings:start (generated from verdicts.csv: python -m charrnn.report.findings) -->"
FINDINGS_END = "<!-- findings:end -->"
SIDE_BY_SIDE_START = ("<!-- side-by-side:start (generated from both suites' verdicts.csv: "
                      "python -m charrnn.report.findings --converged) -->")
SIDE_BY_SIDE_END = "<!-- side-by-side:end -->"
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


def _short_verdict(row: pd.Series | None, page: str) -> str:
    """`[**reproduced**](page) (+0.05 nats/char [0.01 to 0.09], n = 5)`, or `not judged` without a row."""
    if row is None:
        return "not in this suite"
    text = f"[**{row['adjusted_verdict']}**]({page})"
    return text + (f" ({effect_text(row)})" if math.isfinite(row["effect"]) else "")


def flip_reason(quick: pd.Series, converged: pd.Series) -> str:
    """What changed between a claim's quick and converged verdicts ("" when the verdict held): the
    reason of a side that was not tested, the effects that moved, a family that changed Holm's step."""
    before, after = quick["adjusted_verdict"], converged["adjusted_verdict"]
    if before == after:
        return ""
    if after == "not tested":
        return f"converged runs leave it untested: {converged['reason']}"
    why = []
    if before == "not tested":
        why.append(f"quick was not tested ({quick['reason']})")
    elif quick["verdict"] == converged["verdict"]:
        why.append(f"the same verdict on its own ({converged['verdict']}) lands differently after Holm in a "
                   "family of other size or p-values")
    if math.isfinite(quick["effect"]) and math.isfinite(converged["effect"]):
        why.append(f"trained to convergence the effect moved from {effect_text(quick)} to {effect_text(converged)}")
    if str(quick.get("tests")) != str(converged.get("tests")) and isinstance(quick.get("tests"), str):
        why.append(f"relabelled from {quick['tests']} to {converged['tests']}")
    return "; ".join(why)


def side_by_side_markdown(quick: pd.DataFrame, converged: pd.DataFrame, quick_pages: str, converged_pages: str) -> str:
    """One line per claim of the converged suite, by scope and experiment: its quick verdict and
    effect, its converged ones, and for a flip what changed (`flip_reason`)."""
    by_claim = {row["claim"]: row for _, row in quick.iterrows()}
    flips = 0
    blocks = []
    scopes = SCOPES if "tests" in converged else (("", ""),)
    for scope, title in scopes:
        rows = converged[converged["tests"] == scope] if scope else converged
        if not len(rows):
            continue
        blocks += [f"### {title}"] if title else []
        for experiment, group in rows.groupby("experiment", sort=False):
            lines = []
            for _, row in group.iterrows():
                before = by_claim.get(row["claim"])
                reason = flip_reason(before, row) if before is not None else ""
                flips += bool(reason)
                lines.append(f"- {row['claim']} — quick: {_short_verdict(before, f'{quick_pages}/{experiment}.html')}"
                             f" · converged: {_short_verdict(row, f'{converged_pages}/{experiment}.html')}"
                             + (f". **Flip**: {reason}." if reason else "."))
            blocks.append(f"**{experiment}**\n\n" + "\n".join(lines))
    head = (f"{len(converged)} claims of {converged['experiment'].nunique()} grids judged on both profiles' runs; "
            f"{flips} flip(s) between the quick and the converged verdict (after Holm), each with what changed.")
    return "\n\n".join([head] + blocks)


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
    parser.add_argument("--converged", type=Path, default=None,
                        help="the converged suite's verdicts.csv: also rewrite the side-by-side section")
    args = parser.parse_args(argv)

    def rewrite(text: str) -> str:
        quick = read_verdicts(args.verdicts)
        text = splice(text, findings_markdown(quick, pages_link(args.verdicts, args.document),
                                              read_provenance(args.verdicts)))
        if args.converged is None:
            return text
        converged = read_verdicts(args.converged)
        provenance = read_provenance(args.converged)
        block = side_by_side_markdown(quick, converged, pages_link(args.verdicts, args.document),
                                      pages_link(args.converged, args.document))
        block = "\n\n".join(([f"Converged suite: {provenance_text(provenance)}"] if provenance else []) + [block])
        return splice_between(text, block, SIDE_BY_SIDE_START, SIDE_BY_SIDE_END)
    return rewrite_document(args.document, rewrite, "findings")

if __name__ == "__main__":
    sys.exit(main())
