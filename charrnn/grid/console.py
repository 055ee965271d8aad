"""What `charrnn grid` prints: the end-of-grid table (`summary_text`), where the invocation's wall time
went (`time_split_text`: its steps, then the phases of the runs it trained, `charrnn.run.phases`,
summed over them), and the dry run's plan (`plan_text`)."""
from __future__ import annotations

import math
from typing import Iterable

from charrnn.grid.order import execution_order
from charrnn.grid.session import (FAILED, FINISHED, NEW, RESUME, SKIP, SKIPPED, UNTRAINED, GridSession, decide,
                                  owner_alive)
from charrnn.grid.spec import Grid, RunSpec
from charrnn.tags import RUN_PHASES, TRAINING, phase_metric
from charrnn.tags import RUN_ROLE as ROLE_RUN
from charrnn.tags import ROLE_TAG
from charrnn.tracking.run_handle import now_ms
from charrnn.tracking.store import StoredRun, Tracker


def format_table(header: Iterable[str], rows: list[list[str]]) -> str:
    """Plain left-aligned columns."""
    rows = [list(header)] + rows
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def format_metric(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def summary_text(session: GridSession) -> str:
    """The end-of-grid table: one line per RunSpec and the finished / skipped / failed counts."""
    counts, untrained = session.counts(), session.untrained()
    rows = [[r.outcome, r.spec.run_name, r.spec.identity, r.status or "-",
             format_metric(r.final.get("final_val_loss")), (r.note.splitlines() or [""])[0]]
            for r in session.ordered_results()]  # a note's first line: a table row stays one line
    rows += [[UNTRAINED, spec.run_name, spec.identity, "-", "-", "the invocation stopped before it"]
             for spec in untrained]
    head = (f"grid {session.grid.name} [{session.profile}]: {len(session.specs)} runs: "
            f"{counts[FINISHED]} finished, {counts[SKIPPED]} skipped, {counts[FAILED]} failed"
            f"{f', {len(untrained)} {UNTRAINED}' if untrained else ''} in {session.elapsed_s():.1f} s")
    table = format_table(["outcome", "run", "identity", "status", "final_val_loss", "note"], rows)
    parent = (f"parent run: {session.parent.run_id}" if session.parent else "" if untrained else
              "nothing to train: no new parent run (the grid's latest parent run keeps its verdicts)")
    return "\n".join(filter(None, [head, table, *session.notes, parent]))


def plan_text(grid: Grid, profile: str, specs: tuple[RunSpec, ...], tracker: Tracker | None,
              rerun_failed: bool) -> str:
    """`--dry-run`: every RunSpec in execution order (seed block, position, arm) with its
    identity, store status and what a real run would do."""
    runs: dict[str, list[StoredRun]] = {}
    for run in tracker.runs(grid.name, {ROLE_TAG: ROLE_RUN}) if tracker else []:
        runs.setdefault(run.identity or "", []).append(run)
    rows = []
    for slot in execution_order(specs, grid.order_seed):
        spec = slot.spec
        found = runs.get(spec.identity, [])
        decision = decide(found, rerun_failed, now_ms(), lambda r: owner_alive(grid.name, r))
        latest = max(found, key=lambda r: r.start_time).status if found else "-"
        action = {NEW: "train", RESUME: "resume", SKIP: "skip"}[decision.action]
        rows.append([str(slot.block), str(slot.position), spec.run_name, spec.identity, latest, action,
                     decision.note])
    head = (f"grid {grid.name} [{profile}]: {len(specs)} runs in seed blocks, arms shuffled per block by "
            f"order_seed {grid.order_seed}{plan_notes(grid, profile)} (dry run: nothing was created)")
    return head + "\n" + format_table(["block", "pos", "run (arm, seed)", "identity", "store", "action", "note"], rows)


def plan_notes(grid: Grid, profile: str) -> str:
    """What the plan cannot list: exclusive runs, the rounds a tuning extension may add, and the
    judging round that follows tuning on fewer seeds."""
    notes = ["a claim judges speed: the runs it judges train alone"] if grid.measures_speed else []
    if grid.tune_bounds:
        notes.append(f"a choice at an edge adds runs within tune_bounds ({', '.join(k for k, _ in grid.tune_bounds)})")
    if grid.judges_after_tuning(profile):
        tuning = grid.tune_seeds_of(profile)
        others = grid.judging_seeds_of(profile)
        cap = grid.judge_steps_of(profile)
        longer = f" to {cap} steps (the claims judge these seeds alone)" if cap else ""
        notes.append(f"tuned on seeds {', '.join(map(str, tuning))}; then seeds {', '.join(map(str, others))} train "
                     f"at each arm's chosen values{longer} ({len(grid.variants()) * len(others)} more runs)")
    return "".join(f"; {note}" for note in notes)


# An invocation's wall time, in order: `charrnn` started to `run_grid` (Python, imports, the grid file, the
# decidability note), planning (the specs, the store's finished runs, pre-flight: data, backends, torch),
# starting the executor (a local Ray), the store (experiment, reaping, preregistration), the runs, the
# parent run's summary (verdicts), stopping the executor.
GRID_STEPS = ("process", "plan", "executor start", "store", "runs", "summary", "executor stop")


def share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f} %" if whole > 0 else "-"


def time_split_text(session: GridSession) -> str:
    """Where the invocation's wall time went: its steps (GRID_STEPS), then the runs it trained split
    into their phases (`charrnn.run.phases`, summed over runs) and what the phases leave of the runs'
    wall time; last, the share of the invocation that was not training steps."""
    timing = {step: session.timing[step] for step in GRID_STEPS if step in session.timing}
    total = sum(timing.values())
    lines = ["time split: " + ", ".join(f"{step} {s:.1f} s" for step, s in timing.items()) + f" = {total:.1f} s"]
    trained = [r.times for r in session.results if r.times]
    if not trained:
        return lines[0]
    phases = {p: sum(t.get(phase_metric(p), 0.0) for t in trained) for p in RUN_PHASES}
    summed, runs = sum(phases.values()), timing.get("runs", 0.0)
    parts = ", ".join(f"{p} {s:.2f} s ({share(s, summed)})" for p, s in phases.items() if s >= 0.005)
    lines.append(f"  {len(trained)} trained runs' phases, summed: {parts} = {summed:.1f} s")
    rest = runs - summed
    lines.append(f"  runs wall {runs:.1f} s - phases {summed:.1f} s = {rest:.1f} s unaccounted "
                 + ("(claiming specs, ending runs, between runs)" if rest >= 0 else
                    "(negative: runs trained side by side, their phases overlap in wall time)"))
    train = phases[TRAINING]
    per_run = (f"per trained run {(summed - train) / len(trained):.2f} s of {summed / len(trained):.2f} s "
               f"({share(summed - train, summed)}) outside its training steps")
    if rest >= 0:                        # one run at a time: the invocation's wall time adds up
        lines.append(f"  not training: {total - train:.1f} s of {total:.1f} s ({share(total - train, total)}); "
                     + per_run)
    else:                                # side by side, training time exceeds wall time: the part outside the runs
        lines.append(f"  outside the runs: {total - runs:.1f} s of {total:.1f} s ({share(total - runs, total)}); "
                     + per_run)
    return "\n".join(lines)
