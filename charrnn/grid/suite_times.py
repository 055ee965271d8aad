"""The suite's times file: per grid, its wall time and how its runs trained, read from what the runs
recorded (not from what the executor meant to do).

    python -m charrnn.grid.suite_times results/examples/quick.csv --out results/examples/quick-suite-times.txt

The input is the suite's runs table: every experiment's `results.runs_frame` with an `experiment`
column (the committed `results/examples/quick.csv`). Per grid (in the order its first run started):
the span from its first run's start to its last run's end, its runs, how many trained beside
another run of the suite (their wall-clock intervals overlap, `science.concurrency`), and, where a
speed claim judges runs (`Grid.times`, sweep arms included), how many of those did; then the values
a tuning extension added. Where the runs recorded their phase seconds (`time_<phase>_s`,
`charrnn.run.phases`), a second line splits the grid's time: each phase summed over its runs, what
the phases leave of the runs' own MLflow durations (`unaccounted`: creating a run is `open`, ending
it is not measured), the seconds of the span with no run open (planning, the parent run, claiming the
next spec, the summary), and the share of run time outside the training steps. The leading `#` lines
of an existing output file (the setting: machine, command, commit) are kept; everything after them is written.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from charrnn.config import ConfigError
from charrnn.grid.spec import Grid, load_grid
from charrnn.tags import RUN_PHASES, TRAINING, phase_metric
from charrnn.science.concurrency import beside_counts
from charrnn.science.stats import same_value

GRIDS_DIR = Path("ablations")


def speed_judged(runs: pd.DataFrame, grid: Grid) -> pd.Series:
    """Per run: a speed claim of `grid` judges its variant (it had to train alone)."""
    keys = [key for key, _ in grid.axes + grid.zipped]
    return runs.apply(lambda r: grid.times(tuple((key, r.get(key)) for key in keys)), axis=1).astype(bool)


def extended(runs: pd.DataFrame, grid: Grid) -> str:
    """The tuned values the runs tried beyond the grid's own list (a tuning extension), e.g. "lr + 0.03"."""
    grown = []
    for key, values in grid.tune:
        seen = sorted({v for v in runs[key].dropna() if not any(same_value(v, w) for w in values)})
        if seen:
            grown.append(f"{key} + {', '.join(f'{v:g}' for v in seen)}")
    return "; ".join(grown)


def wall_s(runs: pd.DataFrame) -> float:
    """Seconds from the first run's start to the last run's end."""
    return (pd.to_datetime(runs["end_time"], utc=True).max()
            - pd.to_datetime(runs["start_time"], utc=True).min()).total_seconds()


def grid_line(name: str, runs: pd.DataFrame, grid: Grid | None) -> str:
    """One grid's line: wall span, runs, how many trained beside another, what the speed claims judged."""
    wall = wall_s(runs)
    beside = runs["beside"] > 0
    parts = [f"{len(runs)} runs", f"{int(beside.sum())} trained beside another run"]
    judged = speed_judged(runs, grid) if grid is not None else pd.Series(False, index=runs.index)
    if judged.any():
        crowded = int((judged & beside).sum())
        parts.append(f"speed claims judge {int(judged.sum())}: "
                     + ("each trained alone" if not crowded else f"{crowded} of them trained beside another run"))
    growth = extended(runs, grid) if grid is not None else ""
    if growth:
        parts.append(f"tuning extension: {growth}")
    return f"{name:<18}{wall:5.0f} s   ({'; '.join(parts)})"


def open_s(runs: pd.DataFrame) -> float:
    """Seconds of the runs' span during which no run was open (the union of their intervals left out)."""
    spans = sorted(zip(pd.to_datetime(runs["start_time"], utc=True), pd.to_datetime(runs["end_time"], utc=True)))
    covered, reach = 0.0, None
    for start, end in spans:
        if pd.isna(end):
            continue
        if reach is None or start > reach:
            covered, reach = covered + (end - start).total_seconds(), end
        elif end > reach:
            covered, reach = covered + (end - reach).total_seconds(), end
    return wall_s(runs) - covered


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f} %" if whole > 0 else "-"


def split_line(runs: pd.DataFrame) -> str | None:
    """Where the grid's time went (see the module's doc); None when no run recorded its phases."""
    columns = [phase_metric(p) for p in RUN_PHASES]
    timed = runs[runs[phase_metric(TRAINING)].notna()] if phase_metric(TRAINING) in runs else runs.iloc[:0]
    if timed.empty:
        return None
    phases = {p: float(timed[c].fillna(0).sum()) if c in timed else 0.0 for p, c in zip(RUN_PHASES, columns)}
    duration = (pd.to_datetime(timed["end_time"], utc=True)
                - pd.to_datetime(timed["start_time"], utc=True)).dt.total_seconds().sum()
    summed = sum(phases.values())
    parts = [f"{p} {s:.1f} ({_pct(s, duration)})" for p, s in phases.items() if s >= 0.05]
    parts.append(f"unaccounted {duration - summed:.1f} ({_pct(duration - summed, duration)})")
    idle = open_s(runs)
    outside = duration - phases[TRAINING]
    return (f"{'':<18}phases, s summed over {len(timed)} runs' {duration:.1f} s: {', '.join(parts)}; "
            f"no run open {idle:.1f} s of the {wall_s(runs):.0f} s span; outside training steps: "
            f"{_pct(outside, duration)} of run time, {outside / len(timed):.2f} s per run")


def suite_times(frame: pd.DataFrame, grids: dict[str, Grid | None]) -> list[str]:
    """Every grid's line (`grid_line`) in the order its first run started, and where its runs recorded
    their phases, its split (`split_line`); then the total span."""
    frame = frame.assign(beside=beside_counts(frame))
    order = frame.groupby("experiment")["start_time"].min().sort_values().index
    lines = []
    for name in order:
        runs = frame[frame["experiment"] == name]
        lines += [grid_line(name, runs, grids.get(name)), *filter(None, [split_line(runs)])]
    judged = sum(int(speed_judged(frame[frame["experiment"] == n], g).sum()) for n, g in grids.items()
                 if g is not None and n in set(order))
    total = sum(wall_s(frame[frame["experiment"] == name]) for name in order)
    lines.append(f"{'grids total':<18}{total:5.0f} s   ({total / 60:.1f} min; {len(frame)} runs, "
                 f"{judged} of them judged by speed claims)")
    return lines


def _grids(names, directory: Path) -> dict[str, Grid | None]:
    found = {}
    for name in names:
        try:
            found[name] = load_grid(directory / f"{name}.yaml")
        except ConfigError:
            found[name] = None          # a grid file this checkout lacks: no speed or tuning facts
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m charrnn.grid.suite_times", description=__doc__.split("\n")[0])
    parser.add_argument("runs", type=Path, help="the suite's runs table (CSV with an experiment column)")
    parser.add_argument("--grids", type=Path, default=GRIDS_DIR, help="the directory of the grid files")
    parser.add_argument("--out", type=Path, help="the times file to write (default: print)")
    args = parser.parse_args(argv)
    frame = pd.read_csv(args.runs, parse_dates=["start_time", "end_time"], low_memory=False)
    head = []
    if args.out and args.out.exists():
        lines = args.out.read_text(encoding="utf-8").splitlines()
        head = lines[:next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))]
    text = "\n".join(head + suite_times(frame, _grids(frame["experiment"].unique(), args.grids))) + "\n"
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
