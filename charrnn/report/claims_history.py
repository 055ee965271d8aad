"""docs/claims-history.md: every claim any committed suite judged, with its verdict in each suite version.

    python -m charrnn.report.claims_history results/examples/claims-history.csv \
        reports/examples/verdicts.csv docs/claims-history.md [--seed-from-git] [--profile converged]

The history lives in a committed csv (one row per suite version and claim), so a shallow clone has
it too. Each call appends the current `verdicts.csv` as a new version unless it judges exactly what
the last version did, writes the csv back and renders the page: per claim its verdict after Holm in
every version, and what happened to it (added, edited, relabelled, flipped, dropped). A claim dropped
after it got a verdict stays listed with its last verdict. `--seed-from-git` rebuilds the csv from
every commit of the verdicts.csv in git (those versions are named by the commit that committed
them; later ones by the commit in the suite's provenance.json). Each profile (the quick suite, the
converged suite) is its own series of versions with its own table: a converged suite is not a new
version of the quick one.
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

COLUMNS = ["suite", "date", "profile", "experiment", "claim", "tests", "metric", "description", "source", "verdict",
           "adjusted_verdict", "effect", "effect_sense", "low", "high", "n"]
SAME_SUITE = ["experiment", "claim", "tests", "description", "verdict", "adjusted_verdict", "effect"]
ABSENT = "—"
DEFAULT_PROFILE = "quick"        # the profile of every version recorded before the column existed


def suite_rows(verdicts: pd.DataFrame, suite: str, date: str, profile: str = DEFAULT_PROFILE) -> pd.DataFrame:
    """One suite version's rows in the history's columns (a column an older csv lacks stays empty)."""
    rows = verdicts.reindex(columns=COLUMNS[3:]).copy()
    rows.insert(0, "profile", profile)
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
    """`history` with the suite version `current` appended, unless the last version of its profile
    judged the same claims the same way (the same suite rendered again)."""
    same_profile = history[history["profile"] == current["profile"].iloc[0]] if len(current) else history
    if len(same_profile):
        last = same_profile[same_profile["suite"] == same_profile["suite"].iloc[-1]]
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
    """The page: per profile, its suite versions, then one table row per claim it ever judged."""
    lines = ["# Claims history", "",
             "Generated from `results/examples/claims-history.csv` and the committed suites' `verdicts.csv` "
             "(`make claims-history`); never typed by hand. Each profile is its own series of suite "
             "versions. Each column is a committed suite version, named by its commit; each cell the "
             "claim's verdict after Holm in that version with its effect in the claimed direction "
             "(positive: as claimed; units per claim on its page; Δ: a version that wrote the raw difference "
             f"of the arms instead), {ABSENT} where it was not judged. A claim dropped from its grid "
             "stays listed with the verdict it last had. The versions before the suite recorded its "
             "provenance are the commits of `reports/examples/verdicts.csv` in git; later versions are "
             "named by the commit in their `provenance.json`."]
    for profile in dict.fromkeys(history["profile"]):
        lines += ["", f"## The {profile} suite", ""] + _profile_tables(history[history["profile"] == profile])
    return "\n".join(lines) + "\n"


def _profile_tables(history: pd.DataFrame) -> list[str]:
    """One profile's versions table and its claims table."""
    versions = list(dict.fromkeys(history["suite"]))
    dates = history.groupby("suite", sort=False)["date"].first()
    latest = versions[-1]
    lines = ["| version | date | claims judged |", "|---|---|---|"]
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
    return lines


def read_history(path: Path) -> pd.DataFrame:
    try:
        history = pd.read_csv(path, dtype={"suite": str, "date": str})
    except FileNotFoundError:
        return pd.DataFrame(columns=COLUMNS)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ReportError(f"history={str(path)!r}: not a readable claims-history csv ({err})") from None
    history["profile"] = history["profile"].fillna(DEFAULT_PROFILE) if "profile" in history else DEFAULT_PROFILE
    return history.reindex(columns=COLUMNS)


def current_suite(verdicts_path: Path, profile: str = DEFAULT_PROFILE) -> pd.DataFrame:
    """The current verdicts.csv as a suite version of `profile`, named by its provenance.json (else
    `current`)."""
    suite = read_provenance(verdicts_path) or {}
    return suite_rows(read_verdicts(verdicts_path), str(suite.get("commit", "current")),
                      str(suite.get("date", ""))[:10], profile)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Append the current verdicts to the claims history; render it.")
    parser.add_argument("history", type=Path, help="the committed history csv (results/examples/claims-history.csv)")
    parser.add_argument("verdicts", type=Path, help="the current suite's verdicts.csv")
    parser.add_argument("document", type=Path, help="the page to write (docs/claims-history.md)")
    parser.add_argument("--seed-from-git", action="store_true",
                        help="rebuild the history from every committed version of the verdicts.csv")
    parser.add_argument("--profile", default=DEFAULT_PROFILE,
                        help="the profile the verdicts.csv judged (each profile is its own series; default quick)")
    args = parser.parse_args(argv)
    try:
        history = seed_from_git(args.verdicts) if args.seed_from_git else read_history(args.history)
        history = with_current(history, current_suite(args.verdicts, args.profile))
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
