"""The README's "What we found", written from a suite's `verdicts.csv` alone.

    python -m charrnn.report.findings reports/examples/verdicts.csv README.md

rewrites the lines between README's FINDINGS_START and FINDINGS_END markers: one entry per claim,
grouped by experiment, with the sentence of its source it tests, the effect and interval with n and
the interval method, the verdict before and after Holm, and for an underpowered claim the minimum
detectable effect and the seeds that would decide. Nothing is typed by hand, so the README cannot
drift from the committed pages (tests/test_findings.py checks it does not).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from .base import ReportError

FINDINGS_START = "<!-- findings:start (generated from verdicts.csv: python -m charrnn.report.findings) -->"
FINDINGS_END = "<!-- findings:end -->"


def _number(value: float, digits: int = 3) -> str:
    if abs(value) >= 1000:
        return f"{value:.0f}"
    return f"{value:.{digits}g}" if abs(value) < 0.01 and value != 0 else f"{value:.{digits}f}"


def effect_text(row: pd.Series) -> str:
    """`effect [low, high] (n = 5, Student-t …)`, or what there is when no interval was built."""
    if not math.isfinite(row["effect"]):
        return f"no effect (n = {int(row['n'])})"
    interval = (f" [{_number(row['low'])}, {_number(row['high'])}]"
                if math.isfinite(row["low"]) and math.isfinite(row["high"]) else "")
    return f"{_number(row['effect'])}{interval} (n = {int(row['n'])}, sd {_number(row['sd'])}; {row['method']})"


def verdict_text(row: pd.Series) -> str:
    text = f"**{row['verdict']}**"
    if row["verdict"] == "underpowered" and math.isfinite(row["mde"]):
        need = (f"{int(row['seeds_needed'])} seeds would decide at the observed effect"
                if math.isfinite(row["seeds_needed"]) else "no finite number of seeds would decide it")
        text += f": minimum detectable effect {_number(row['mde'])} at 80 % power; {need}"
    elif row["verdict"] == "not tested" and isinstance(row["reason"], str):
        text += f" ({row['reason']})"
    return f"{text}; after Holm over the suite: {row['adjusted_verdict']}"


def claim_entry(row: pd.Series) -> str:
    margin = (f" (margin ±{row['margin']:g})" if row["margin"] > 0 and "within ±" not in row["description"]
              else "")
    return (f"- **{row['claim']}** — {row['description']}{margin}.\n"
            f"  Source: {row['source']}\n"
            f"  Effect: {effect_text(row)} → {verdict_text(row)}.")


def findings_markdown(verdicts: pd.DataFrame) -> str:
    """One block per experiment, one entry per claim, in the order of the csv."""
    counts = verdicts["adjusted_verdict"].value_counts()
    summary = ", ".join(f"{k} {v}" for k, v in counts.items())
    blocks = [f"{len(verdicts)} claims over {verdicts['experiment'].nunique()} grids; after Holm: {summary}."]
    for experiment, rows in verdicts.groupby("experiment", sort=False):
        blocks.append(f"**{experiment}** ([page](reports/examples/{experiment}.html))\n\n"
                      + "\n".join(claim_entry(row) for _, row in rows.iterrows()))
    return "\n\n".join(blocks)


def read_verdicts(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ReportError(f"verdicts={str(path)!r}: not a readable verdicts.csv ({err})") from None


def splice(readme: str, block: str) -> str:
    """`readme` with the text between the findings markers replaced by `block`."""
    start, end = readme.find(FINDINGS_START), readme.find(FINDINGS_END)
    if start < 0 or end < start:
        raise ReportError(f"readme: no {FINDINGS_START!r} … {FINDINGS_END!r} section to rewrite")
    return f"{readme[:start + len(FINDINGS_START)]}\n{block}\n{readme[end:]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rewrite README's findings from a verdicts.csv.")
    parser.add_argument("verdicts", type=Path)
    parser.add_argument("readme", type=Path)
    args = parser.parse_args(argv)
    try:
        text = splice(args.readme.read_text(encoding="utf-8"), findings_markdown(read_verdicts(args.verdicts)))
    except ReportError as err:
        print(f"findings: {err}", file=sys.stderr)
        return 2
    args.readme.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
