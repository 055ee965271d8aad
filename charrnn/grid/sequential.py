"""Sequential seeding: `charrnn grid FILE --until-decided [--max-seeds N]`.

The looks draw fresh seeds: the first look trains n₀ seeds (n₀: the profile's seed count) numbered
after the profile's largest seed, and while some claim is `underpowered` the next look adds the
next n₀ integers, up to N seeds per arm. The profile's own seeds are never a look: a fixed-seed
grid may already have been judged on them at the full α, and a look at data already judged cannot
be counted in a plan made afterwards. Every look is an ordinary grid invocation, so a killed run
resumes on the next call and finished runs are never trained twice; a rerun replays the earlier
looks from the store (same data, same decisions) and carries on where it stopped.

Repeated looks: the looks are planned in advance (n₀, 2n₀, … capped at N: K looks) and each is
judged at α/K (Bonferroni over the planned looks, the first included). Whatever look it stops at,
the chance of a false decision stays ≤ α (`tests/test_verdict_rows.py` simulates it); the price is
a wider interval at every look. The report applies the same rule to the same seeds (from the tags
below), so its intervals are (1 − α/K) intervals and its p-values are multiplied by K.

The last look's parent run carries `charrnn.sequential.*`: first_seed, seeds_used, look,
looks_planned, alpha_per_look and stop_reason, which the page shows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from charrnn.config import ConfigError
from charrnn.grid.spec import Grid
from charrnn.tags import SEQUENTIAL_PREFIX
from charrnn.science.verdict_table import directed_effect
from charrnn.science.verdicts import ALPHA, UNDERPOWERED, Verdict, judge_claims


@dataclass(frozen=True)
class Outcome:
    seeds: tuple[int, ...]
    look: int
    looks_planned: int
    stop_reason: str
    verdicts: tuple[Verdict, ...]
    sessions: tuple = ()

    def tags(self) -> dict[str, str]:
        return {SEQUENTIAL_PREFIX + k: str(v) for k, v in {
            "first_seed": self.seeds[0], "seeds_used": len(self.seeds), "look": self.look,
            "looks_planned": self.looks_planned,
            "alpha_per_look": f"{ALPHA / self.looks_planned:.4g}", "stop_reason": self.stop_reason}.items()}


def planned_looks(first: int, max_seeds: int) -> list[int]:
    """Seeds per arm at each look: first, 2·first, … then max_seeds."""
    looks = list(range(first, max_seeds, first)) or [first]
    return looks + ([max_seeds] if max_seeds > looks[-1] else [])


def seeds_for(profile_seeds: tuple[int, ...], count: int) -> tuple[int, ...]:
    """The first `count` fresh seeds: the integers after the profile's largest seed."""
    first = max(profile_seeds) + 1
    return tuple(range(first, first + count))


def judged_seeds(tags: dict[str, str] | None) -> tuple[str, ...] | None:
    """The seeds a sequential outcome judged (from its parent-run tags, without the prefix), as
    strings like the runs table's; None for a fixed-seed grid."""
    if not tags or "first_seed" not in tags:
        return None
    first, count = int(tags["first_seed"]), int(tags["seeds_used"])
    return tuple(str(s) for s in range(first, first + count))


def check_request(grid: Grid, profile: str, max_seeds: int) -> None:
    """Bad input before any run: a grid without claims, or a cap below the profile's seeds."""
    if not grid.claims:
        raise ConfigError(f"{grid.path}: --until-decided: the grid has no claims to decide; valid: a grid "
                          "with `claims:`")
    first = len(grid.seeds_of(profile))
    if max_seeds < first:
        raise ConfigError(f"--max-seeds={max_seeds}: below the {first} seeds of profile {profile}; "
                          f"valid: an integer >= {first}")


def until_decided(grid: Grid, profile: str, max_seeds: int, run_round: Callable[[Grid], object],
                  runs_of: Callable[[Grid, tuple[int, ...]], object]) -> Outcome:
    """Run looks until every claim is decided (or not tested) or `max_seeds` is reached.
    `run_round(grid)` trains a grid (returns its closed session); `runs_of(grid, seeds)` returns
    the runs table of those seeds of the profile."""
    check_request(grid, profile, max_seeds)
    base = grid.seeds_of(profile)
    looks = planned_looks(len(base), max_seeds)
    axes = [k for k, _ in grid.axes + grid.zipped]
    sessions = []
    for look, count in enumerate(looks, 1):
        seeds = seeds_for(base, count)
        sessions.append(run_round(grid.with_seeds(profile, seeds)))
        runs = runs_of(grid, seeds)
        verdicts = tuple(judge_claims(runs, grid.claims, axes, grid.tune_space, ALPHA, len(looks)))
        open_claims = [v.claim.id for v in verdicts if v.label == UNDERPOWERED]
        if not open_claims:
            reason = f"every claim was decided at look {look} of {len(looks)} ({count} seeds)"
        elif look == len(looks):
            reason = (f"--max-seeds {max_seeds} reached with {len(open_claims)} claim(s) still "
                      f"underpowered ({', '.join(open_claims)})")
        else:
            continue
        return Outcome(seeds, look, len(looks), reason, verdicts, tuple(sessions))
    raise AssertionError("unreachable: the last look always stops")


def effect_line(v: Verdict) -> str:
    """`+0.0207 [0.0101, 0.0313] (n=5), positive = as claimed` (`directed_effect`)."""
    effect, low, high = directed_effect(v)
    if v.effect.n == 0 or effect != effect:
        return f"no effect (n={v.effect.n})"
    interval = f" [{low:.4f}, {high:.4f}]" if v.effect.has_ci else ""
    return f"{effect:+.4f}{interval} (n={v.effect.n}), positive = as claimed"


def summary(outcome: Outcome) -> str:
    lines = [f"sequential seeding: {len(outcome.seeds)} seeds per arm, look {outcome.look} of "
             f"{outcome.looks_planned} (alpha {ALPHA:g}/{outcome.looks_planned} per look); stopped: "
             f"{outcome.stop_reason}"]
    lines += [f"  {v.claim.id}: {v.label}, {effect_line(v)}" for v in outcome.verdicts]
    return "\n".join(lines)
