"""docs/claims-history.md: every claim any committed suite judged, with its verdict in each suite version.

    python -m charrnn.report.claims_history results/examples/claims-history.csv \
        reports/examples/verdicts.csv docs/claims-history.md [--seed-from-git]

The history lives in a committed csv (one row per suite version and claim), so a shallow clone has
it too. Each call appends the current `verdicts.csv` as a new version unless it judges exactly what
the last version did, writes the csv back and renders the page: per claim its verdict after Holm in
every version, and what happened to it (added, edited, relabelled, flipped, dropped). A claim dropped
after it got a verdict stays listed with its last verdict. `--seed-from-git` rebuilds the csv from
every commit of the verdicts.csv in git (those versions are named by the commit that committed
them; later ones by the commit in the suite's provenance.json).
"""
from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

import pandas as pd

from .base import ReportError
from .findings import read_provenance, read_verdicts

COLUMNS = ["suite", "date", "experiment", "claim", "tests", "metric", "description", "source", "verdict",
           "adjusted_verdict", "effect", "effect_sense", "low", "high", "n"]
SAME_SUITE = ["experiment", "claim", "tests", "description", "verdict", "adjusted_verdict", "effect"]
ABSENT = "—"


def suite_rows(verdicts: pd.DataFrame, suite: str, date: str) -> pd.DataFrame:
    """One suite version's rows in the history's columns (a column an older csv lacks stays empty)."""
    rows = verdicts.reindex(columns=COLUMNS[2:]).copy()
    rows.insert(0, "date", date)
    rows.insert(0, "suite", suite)
    return rows


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        why = out.stderr.strip().splitlines()[0] if out.stderr.strip() else "failed"
        raise ReportError(f"git {' '.join(args)}: {why}")
    return out.stdout


def seed_from_git(verdicts: Path) -> pd.DataFrame:
    """Every committed version of `verdicts` (oldest first), named by the commit that committed it."""
    repo = Path(_git(verdicts.resolve().parent, "rev-parse", "--show-toplevel").strip())
    relative = verdicts.resolve().relative_to(repo).as_posix()
    log = _git(repo, "log", "--format=%h %cI", "--", relative).split("\n")
    versions = [line.split(" ", 1) for line in reversed(log) if line.strip()]
    frames = []
    for commit, date in versions:
        text = _git(repo, "show", f"{commit}:{relative}")
        frames.append(suite_rows(pd.read_csv(io.StringIO(text)), commit, date[:10]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def _signature(rows: pd.DataFrame) -> set[tuple]:
    return {tuple("" if pd.isna(v) else str(v) for v in row) for row in rows[SAME_SUITE].itertuples(index=False)}


def with_current(history: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    """`history` with the suite version `current` appended, unless the last version judged the same
    claims the same way (the same suite rendered again)."""
    if len(history):
        last = history[history["suite"] == history["suite"].iloc[-1]]
        if _signature(last) == _signature(current):
            return history
    return pd.concat([history, current], ignore_index=True)[COLUMNS]


def _text(value) -> str:
    return "" if pd.isna(value) else str(value)


def claim_events(versions: list[str], rows: dict[str, pd.Series]) -> list[str]:
    """What happened to one claim across `versions` (its row per version it appears in)."""
    events, previous, dropped_after = [], None, None
    for suite in versions:
        row = rows.get(suite)
        if row is None:
            if previous is not None and dropped_after is None:
                dropped_after = previous["suite"]
                events.append(f"dropped after {dropped_after} (last verdict: {previous['adjusted_verdict']})")
            continue
        if previous is None:
            events.append(f"added in {suite}")
        else:
            if dropped_after is not None:
                events.append(f"re-added in {suite}")
            if (_text(row["description"]), _text(row["source"])) != (_text(previous["description"]),
                                                                    _text(previous["source"])):
                events.append(f"edited in {suite}")
            old, new = _text(previous["tests"]), _text(row["tests"])
            if old != new and new:
                events.append(f"relabelled {old} → {new} in {suite}" if old else f"labelled {new} in {suite}")
            if row["adjusted_verdict"] != previous["adjusted_verdict"]:
                events.append(f"flipped {previous['adjusted_verdict']} → {row['adjusted_verdict']} in {suite}")
        previous, dropped_after = row, None
    return events


def verdict_cell(row: pd.Series) -> str:
    """`contradicted (−0.179)`: the verdict after Holm and the effect in the claimed direction; `(Δ −0.1)`
    from a verdicts.csv before effects had a sense (`effect_sense`): the raw difference of the arms."""
    effect = pd.to_numeric(row["effect"], errors="coerce")
    if pd.isna(effect):
        return row["adjusted_verdict"]
    raw = "" if _text(row.get("effect_sense")) else "Δ "
    return f"{row['adjusted_verdict']} ({raw}{effect + 0.0:+.3g})".replace("-", "−")


def history_markdown(history: pd.DataFrame) -> str:
    """The page: the suite versions, then one table row per claim ever judged."""
    versions = list(dict.fromkeys(history["suite"]))
    dates = history.groupby("suite", sort=False)["date"].first()
    latest = versions[-1]
    lines = ["# Claims history", "",
             "Generated from `results/examples/claims-history.csv` and the committed "
             "`reports/examples/verdicts.csv` (`make claims-history`); never typed by hand. Each column is "
             "a committed suite version, named by its commit; each cell the claim's verdict after Holm "
             "in that version with its effect in the claimed direction (positive: as claimed; units "
             "per claim on its page; Δ: a version that wrote the raw difference of the arms instead), "
             f"{ABSENT} where it was not judged. A claim dropped from its grid "
             "stays listed with the verdict it last had. The versions before the suite recorded its "
             "provenance are the commits of `reports/examples/verdicts.csv` in git; later versions are "
             "named by the commit in their `provenance.json`.", "",
             "| version | date | claims judged |", "|---|---|---|"]
    lines += [f"| {v} | {dates[v]} | {int((history['suite'] == v).sum())} |" for v in versions]
    lines += ["", "| grid | claim | " + " | ".join(versions) + " | now | history |",
              "|---|---|" + "---|" * len(versions) + "---|---|"]
    groups = sorted(history.groupby(["experiment", "claim"], sort=False), key=lambda item: item[0][0])
    for (experiment, claim), group in groups:   # grids alphabetically, claims in order of appearance
        rows = {row["suite"]: row for _, row in group.iterrows()}
        cells = [verdict_cell(rows[v]) if v in rows else ABSENT for v in versions]
        last = group.iloc[-1]
        now = last["adjusted_verdict"] if latest in rows else \
            f"dropped (last: {last['adjusted_verdict']}, {last['suite']})"
        events = "; ".join(claim_events(versions, rows))
        lines.append(f"| {experiment} | {claim} | " + " | ".join(cells) + f" | {now} | {events} |")
    return "\n".join(lines) + "\n"


def read_history(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype={"suite": str, "date": str})
    except FileNotFoundError:
        return pd.DataFrame(columns=COLUMNS)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ReportError(f"history={str(path)!r}: not a readable claims-history csv ({err})") from None


def current_suite(verdicts_path: Path) -> pd.DataFrame:
    """The current verdicts.csv as a suite version, named by its provenance.json (else `current`)."""
    suite = read_provenance(verdicts_path) or {}
    return suite_rows(read_verdicts(verdicts_path), str(suite.get("commit", "current")),
                      str(suite.get("date", ""))[:10])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Append the current verdicts to the claims history; render it.")
    parser.add_argument("history", type=Path, help="the committed history csv (results/examples/claims-history.csv)")
    parser.add_argument("verdicts", type=Path, help="the current suite's verdicts.csv")
    parser.add_argument("document", type=Path, help="the page to write (docs/claims-history.md)")
    parser.add_argument("--seed-from-git", action="store_true",
                        help="rebuild the history from every committed version of the verdicts.csv")
    args = parser.parse_args(argv)
    try:
        history = seed_from_git(args.verdicts) if args.seed_from_git else read_history(args.history)
        history = with_current(history, current_suite(args.verdicts))
    except ReportError as err:
        print(f"claims-history: {err}", file=sys.stderr)
        return 2
    args.history.parent.mkdir(parents=True, exist_ok=True)
    history.to_csv(args.history, index=False)
    args.document.write_text(history_markdown(history), encoding="utf-8")
    print(f"{args.document}: {history['claim'].nunique()} claims over {history['suite'].nunique()} suite versions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
