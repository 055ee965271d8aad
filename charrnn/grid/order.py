"""The order a grid's runs execute in: seed blocks, the arms of each block shuffled.

Running arms one after the other (every `hidden_size=32` run, then every `hidden_size=64` run)
confounds the arm with whatever drifts during a grid: machine load, thermal state, a co-running
job. So runs execute in blocks, one per seed in the profile's order; each block holds every arm
(variant × tuned values) once, in an order drawn from the grid's `order_seed` and the block's
seed, redrawn while it equals the previous block's order (with 2 arms: alternating). The order is
a pure function of (order_seed, seeds, arms): `--dry-run` prints it, the parent run logs the seed,
and a block added later (sequential seeding, a tuning extension) leaves earlier blocks unchanged.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable

from charrnn.grid.spec import RunSpec


@dataclass(frozen=True)
class Slot:
    """A RunSpec's place in the execution order."""
    block: int        # 1-based: one block per seed
    position: int     # 1-based position within its block
    spec: RunSpec


def _shuffled(block: list[RunSpec], order_seed: int, seed: int, previous: list[str]) -> list[RunSpec]:
    rng = random.Random(f"order {order_seed} seed {seed}")
    while True:
        order = rng.sample(block, len(block))
        if len(block) < 2 or [s.arm for s in order] != previous:
            return order


def execution_order(specs: Iterable[RunSpec], order_seed: int) -> tuple[Slot, ...]:
    """Every spec in its slot: blocks in the order their seeds first appear in `specs`."""
    blocks: dict[int, list[RunSpec]] = {}
    for spec in specs:
        blocks.setdefault(spec.seed, []).append(spec)
    slots: list[Slot] = []
    previous: list[str] = []
    for number, (seed, block) in enumerate(blocks.items(), 1):
        order = _shuffled(block, order_seed, seed, previous)
        previous = [s.arm for s in order]
        slots += [Slot(number, position, spec) for position, spec in enumerate(order, 1)]
    return tuple(slots)


def ordered(specs: Iterable[RunSpec], order_seed: int) -> tuple[RunSpec, ...]:
    """`specs` in execution order."""
    return tuple(slot.spec for slot in execution_order(specs, order_seed))
