"""The convergence budget's stopping rule: train until the validation loss stops improving.

Pure bookkeeping over the sequence of evaluations (no torch), so synthetic curves test it:
an evaluation improves when its loss is below `best * (1 - min_improvement)`; after `patience`
evaluations in a row without an improvement the run has converged. The step cap (`steps`) is the
loop's business: a run that reaches it before patience runs out has not converged.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class EarlyStopping:
    patience: int                  # evaluations without improvement before stopping; 0 = never stop
    min_improvement: float = 0.0   # relative, in [0, 1): better means below best * (1 - min_improvement)
    best: float = math.inf         # best validation loss so far
    best_step: int = 0             # the step (optimiser steps taken) of that evaluation
    stale: int = 0                 # evaluations since the last improvement

    def update(self, step: int, loss: float) -> bool:
        """Record the evaluation after `step` optimiser steps; True when it is the new best."""
        if math.isfinite(loss) and loss < self.best * (1 - self.min_improvement):   # inf * x = inf: first wins
            self.best, self.best_step, self.stale = loss, step, 0
            return True
        self.stale += 1
        return False

    @property
    def stopped(self) -> bool:
        """Patience ran out: the validation loss has stopped improving."""
        return 0 < self.patience <= self.stale

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> EarlyStopping:
        return cls(**state)
