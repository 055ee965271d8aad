"""docs/findings.md, written from a suite's `verdicts.csv` alone: one plain-language line per claim.

    python -m charrnn.report.findings reports/examples/verdicts.csv docs/findings.md

rewrites the lines between the file's FINDINGS_START and FINDINGS_END markers. Each line gives the
claim, its verdict after Holm (and the raw one where they differ), the effect with its interval in
the metric's units, n, what it tests (the source or our extrapolation, where the csv has a `tests`
column) and a link to the claim's page. Nothing is typed by hand, so the docs cannot drift from the
committed pages (tests/test_findings.py checks it).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import pandas as pd

from charrnn import registry
from .base import ReportError

FINDINGS_START = "<!-- findings:start (generated from verdicts.csv: python -m charrnn.report.findings) -->"
FINDINGS_END = "<!-- findings:end -->"
SCOPE_TEXT = {"source": "tests the source's own statement", "extrapolation": "our extrapolation beyond the source"}


def number(value: float) -> str:
    """3 significant figures, thousands separators, e-notation below 1e-4."""
    if value == 0:
        return "0"
    if abs(value) < 1e-4:
        return f"{value:.2e}"
    digits = max(0, 2 - math.floor(math.log10(abs(float(f"{value:.3g}")))))
    return f"{value:,.{digits}f}"


def _unit(metric: str) -> tuple[float, str]:
    """(scale, unit) of a difference of `metric`: fractions in percentage points."""
    found = registry.METRICS.get(str(metric).removeprefix("final_"))
    if found is None:
        return 1.0, ""
    if found.unit == "%" or (not found.unit and found.bounds == (0.0, 1.0)):
        return 100.0, "pp"
    return 1.0, found.unit


def effect_text(row: pd.Series) -> str:
    """`−0.114 nats/char [−0.121, −0.106], n = 5`, or `no effect (n = 0)` without one."""
    if not math.isfinite(row["effect"]):
        return f"no effect (n = {int(row['n'])})"
    scale, unit = _unit(row["metric"])
    interval = (f" [{number(scale * row['low'])}, {number(scale * row['high'])}]"
                if math.isfinite(row["low"]) and math.isfinite(row["high"]) else "")
    return f"{number(scale * row['effect'])}{' ' + unit if unit else ''}{interval}, n = {int(row['n'])}"


def verdict_text(row: pd.Series) -> str:
    text = f"**{row['adjusted_verdict']}**"
    if row["adjusted_verdict"] != row["verdict"]:
        text += f" after Holm ({row['verdict']} on its own)"
    if row["verdict"] == "not tested" and isinstance(row.get("reason"), str):
        text += f": {row['reason']}"
    return text


def scope_text(row: pd.Series) -> str:
    return SCOPE_TEXT.get(row.get("tests"), "") if isinstance(row.get("tests"), str) else ""


def claim_line(row: pd.Series, page: str) -> str:
    scope = scope_text(row)
    # a claim against a number is described as "<metric> is higher than <bar>"; its effect is value − bar
    effect = "value − bar" if str(row["description"]).startswith(f"{row['metric']} ") else "effect"
    return (f"- [{row['claim']}]({page}) — {verdict_text(row)}. {row['description']}: {effect} "
            f"{effect_text(row)}{'; ' + scope if scope else ''}.")


def findings_markdown(verdicts: pd.DataFrame, pages: str = "../reports/examples") -> str:
    """A summary line, then per experiment one line per claim, in the order of the csv; `pages`:
    where the experiment pages are, relative to the markdown file."""
    counts = verdicts["adjusted_verdict"].value_counts()
    summary = ", ".join(f"{k} {v}" for k, v in counts.items())
    blocks = [f"{len(verdicts)} claims over {verdicts['experiment'].nunique()} grids; after Holm: {summary}."]
    for experiment, rows in verdicts.groupby("experiment", sort=False):
        page = f"{pages}/{experiment}.html"
        blocks.append(f"**[{experiment}]({page})**\n\n"
                      + "\n".join(claim_line(row, page) for _, row in rows.iterrows()))
    return "\n\n".join(blocks)


def read_verdicts(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ReportError(f"verdicts={str(path)!r}: not a readable verdicts.csv ({err})") from None


def splice(document: str, block: str) -> str:
    """`document` with the text between the findings markers replaced by `block`."""
    start, end = document.find(FINDINGS_START), document.find(FINDINGS_END)
    if start < 0 or end < start:
        raise ReportError(f"findings: no {FINDINGS_START!r} … {FINDINGS_END!r} section to rewrite")
    return f"{document[:start + len(FINDINGS_START)]}\n{block}\n{document[end:]}"


def pages_link(verdicts: Path, document: Path) -> str:
    """The experiment pages (beside verdicts.csv) as a link relative to the markdown file."""
    return Path(os.path.relpath(verdicts.resolve().parent, document.resolve().parent)).as_posix()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rewrite a markdown file's findings from a verdicts.csv.")
    parser.add_argument("verdicts", type=Path)
    parser.add_argument("document", type=Path, help="markdown file with the findings markers (docs/findings.md)")
    args = parser.parse_args(argv)
    try:
        block = findings_markdown(read_verdicts(args.verdicts), pages_link(args.verdicts, args.document))
        text = splice(args.document.read_text(encoding="utf-8"), block)
    except (ReportError, OSError) as err:
        print(f"findings: {err}", file=sys.stderr)
        return 2
    args.document.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
