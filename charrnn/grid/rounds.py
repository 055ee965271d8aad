"""A profile's tuning and judging rounds: its keys that are not config keys, parsed and checked.

- `tune_seeds: k` — the profile tunes on its first k seeds; every other seed trains once, at its
  arm's chosen values (the judging round). Needs a `tune` block chosen per arm, and no
  trainability claim judged in that profile (it reads every rate of every seed).
- `judge_steps: N` — with `tune_seeds`: the judging round trains to a step cap N larger than the
  profile's `steps`, so that runs still improving at the tuning cap can converge where the claims
  are judged. The choice is made on the tuning seeds at the shorter cap; the claims are then
  judged on the other seeds alone, every one trained to N (the tuning seeds' runs, stopped at the
  shorter cap, are not judged). Those seeds are fresh: the choice never saw them.
"""
from __future__ import annotations

from typing import Any, Callable

from charrnn.config import short_repr
from charrnn.science.claim_options import TRAINABILITY
from charrnn.science.tune_space import CHOICES

MIN_TUNE_SEEDS = 2            # a profile's `tune_seeds`: at least two seeds choose each arm's values
MIN_JUDGED_SEEDS = 5          # under `judge_steps`, the seeds judged (those that did not tune)
PROFILE_KEYS = ("seeds", "tune_seeds", "judge_steps")   # a profile block's keys that are not config keys

Fail = Callable[[str, str], Exception]


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _blocks_with(data: dict[str, Any], key: str) -> list[tuple[str, Any]]:
    return [(name, block[key]) for name, block in data.items() if isinstance(block, dict) and key in block]


def tune_seeds(data: dict[str, Any], seeds_of: Callable[[str], tuple[int, ...]],
               fail: Fail) -> tuple[tuple[str, int], ...]:
    """Profiles that tune on their first k seeds (`tune_seeds: k`, 2 <= k < the profile's seeds)."""
    for name, k in _blocks_with(data, "tune_seeds"):
        n = len(seeds_of(name))
        if not _integer(k) or not MIN_TUNE_SEEDS <= k < n:
            raise fail(f"profiles.{name}.tune_seeds", f"{short_repr(k)}: valid: an integer from "
                                                      f"{MIN_TUNE_SEEDS} to {n - 1} (the profile has {n} seeds)")
    return tuple(_blocks_with(data, "tune_seeds"))


def judge_steps(data: dict[str, Any], steps_of: Callable[[str], int], tuned: dict[str, int],
                seeds_of: Callable[[str], tuple[int, ...]], fail: Fail) -> tuple[tuple[str, int], ...]:
    """Profiles whose judging round trains to a longer cap (`judge_steps: N`, N > the profile's
    steps, with `tune_seeds` leaving at least MIN_JUDGED_SEEDS seeds to judge)."""
    for name, n in _blocks_with(data, "judge_steps"):
        where, steps = f"profiles.{name}.judge_steps", steps_of(name)
        if name not in tuned:
            raise fail(where, f"{short_repr(n)}: without tune_seeds there is no judging round; valid: "
                              f"tune_seeds in the same profile")
        if not _integer(n) or n <= steps:
            raise fail(where, f"{short_repr(n)}: valid: an integer above the profile's steps ({steps})")
        judged = len(seeds_of(name)) - tuned[name]
        if judged < MIN_JUDGED_SEEDS:
            raise fail(where, f"{n}: {judged} seed(s) left to judge after tune_seeds {tuned[name]}; valid: at "
                              f"least {MIN_JUDGED_SEEDS} (list more seeds in the profile)")
    return tuple(_blocks_with(data, "judge_steps"))


def check_tune_seeds_apply(grid, fail: Fail) -> None:
    """`tune_seeds` needs a `tune` block chosen per arm, no tuned or varied `steps` under
    `judge_steps`, and no trainability claim judged in that profile."""
    for profile, k in grid.profile_tune_seeds:
        where = f"profiles.{profile}.tune_seeds"
        if not grid.tune:
            raise fail(where, f"{k}: the grid tunes nothing; valid: a grid with a `tune` block")
        if grid.tune_choice != CHOICES[0]:
            raise fail(where, f"{k}: with tune.choice {grid.tune_choice}; valid: choice {CHOICES[0]}")
        for c in (c for c in grid.claims if c.method == TRAINABILITY and c.judged_in(profile)):
            raise fail(where, f"{k}: claim {c.id} reads every rate of every seed; valid: no tune_seeds")
    varied = {k for k, _ in grid.tune + grid.axes + grid.zipped}
    for profile, n in grid.profile_judge_steps:
        if "steps" in varied:
            raise fail(f"profiles.{profile}.judge_steps", f"{n}: steps is tuned or varied; valid: a fixed steps")
