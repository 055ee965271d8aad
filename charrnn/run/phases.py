"""Where a run's wall time goes: exclusive phase seconds, logged as `time_<phase>_s` metrics.

A `PhaseClock` charges every moment to the innermost phase open at that moment, so phases never
overlap and their sum is the clock's span: a store write inside an evaluation is `mlflow`, not
`eval`. A run's phases (`RUN_PHASES`):

- `startup`: importing the training code (torch, charrnn) for the first run of a process; 0 after;
- `open`: creating (or reopening) the MLflow run and its dataset input, by the grid's session;
- `setup`: the task's data, the model and the evaluation batches (`Trainer()`), and a resume's checkpoint;
- `provenance`: git state, package list and machine facts (`provenance.collect`);
- `mlflow`: every call into the run's sink: params, tags, metric rows, flushes, text and checkpoint
  uploads (a Ray worker's sink puts them on the driver's queue; the driver's writes overlap training);
- `train`: the training steps (forward, backward, update);
- `eval`: validation and train-eval scoring at each eval interval, the final test scoring, baselines;
- `checkpoint`: serialising the checkpoint to a local file (its upload is `mlflow`);
- `outputs`: the sample text and the teacher-forced vs free-running predictions;
- `other`: the rest of what the clock spanned (control flow between phases).

What no phase covers is the run's own end (`RunHandle.end`: the last flush, its status, dropping the
bookkeeping tags), after its phases are logged, and for a Ray run the queue between worker and driver:
`charrnn.grid.suite_times` prints it as `unaccounted` (a run's MLflow duration minus its phases).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator

from charrnn.tags import OPENING, RUN_PHASES, phase_metric

CLOCK_PHASES = tuple(p for p in RUN_PHASES if p != OPENING)   # OPENING: measured and logged by the session


class PhaseClock:
    """Exclusive seconds per phase: time is charged to the innermost open phase, `other` outside any."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._open: list[str] = []
        self._since = time.perf_counter()

    def _charge(self) -> None:
        now = time.perf_counter()
        name = self._open[-1] if self._open else "other"
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._since
        self._since = now

    def enter(self, name: str) -> None:
        self._charge()
        self._open.append(name)

    def leave(self) -> None:
        self._charge()
        self._open.pop()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.enter(name)
        try:
            yield
        finally:
            self.leave()

    def add(self, name: str, seconds: float) -> None:
        """Seconds measured before this clock started (a Ray worker's imports)."""
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def metrics(self) -> dict[str, float]:
        """`time_<phase>_s` of every phase in CLOCK_PHASES (0 where nothing was charged), up to now."""
        self._charge()
        return {phase_metric(p): self.seconds.get(p, 0.0) for p in CLOCK_PHASES}


class TimedSink:
    """A run sink (RunHandle, QueueRun, LogOnce) whose every call is charged to the `mlflow` phase."""

    def __init__(self, run: Any, clock: PhaseClock):
        self._run, self._clock = run, clock

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._run, name)
        if not callable(target):
            return target
        clock = self._clock

        def timed(*args: Any, **kwargs: Any) -> Any:
            clock.enter("mlflow")
            try:
                return target(*args, **kwargs)
            finally:
                clock.leave()
        return timed
