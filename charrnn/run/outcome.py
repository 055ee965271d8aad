"""What a run leaves behind and where a reopened one starts: torch-free, so planning a grid (what
to train, what to skip, where to resume) never loads the training code."""
from __future__ import annotations

from dataclasses import dataclass, field

CHECKPOINT_NAME = "checkpoint.pt"   # a run's checkpoint artifact: checkpoint/<CHECKPOINT_NAME>


@dataclass
class RunOutcome:
    run_id: str
    status: str                                   # FINISHED | FAILED | KILLED
    final: dict[str, float] = field(default_factory=dict)
    failure: str | None = None
    start_step: int = 0                           # > 0 when resumed from a checkpoint
    times: dict[str, float] = field(default_factory=dict)   # time_<phase>_s, as logged (charrnn.run.phases)


@dataclass(frozen=True)
class ResumePoint:
    """Where a reopened run left off: its last checkpoint artifact and its logged train losses."""
    checkpoint: bytes | None
    train_losses: tuple[tuple[int, float], ...] = ()   # (step, value), deduplicated by step
    logged: tuple[tuple[str, int], ...] = ()           # (metric, last step in the store)
