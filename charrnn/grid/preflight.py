"""Before any run of a grid exists: its data builds, its backend and dtype run here, and `backend:
auto` is resolved, one probe at a time, at the torch threads each run will train with."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from charrnn.config import ConfigError
from charrnn.grid.spec import Grid, GridError, RunSpec
from charrnn.tags import ROLE_TAG, RUN_ROLE
from charrnn.tracking.failures import store_error
from charrnn.tracking.store import Tracker

ThreadsOf = Callable[[RunSpec], "int | None"]   # the torch threads a run will train with (None: this process's)


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `threads` inside the block (unchanged for None), restored after."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def preflight(grid: Grid, specs: tuple[RunSpec, ...], local_devices: bool = True,
              threads_of: ThreadsOf = lambda spec: None) -> None:
    """Build every RunSpec's data (task, validation batches, a first batch) before any run exists,
    so unusable data (a corpus shorter than seq_len, ...) is a bad-input error, not a failed run.
    With `local_devices` (runs train on this machine) a backend or dtype this machine cannot run is one too,
    and `backend: auto` is resolved here, one probe at a time, at the threads the run will train with
    (`threads_of`: a kernel's speed, and so the choice, depends on them), so the runs read the cached choice."""
    if not specs:
        return
    from charrnn.capabilities import check_device, resolve_backend
    from charrnn.tasks.data import make_task

    for spec in specs:
        cfg = spec.config
        try:
            task = make_task(cfg)
            if local_devices:
                with torch_threads(threads_of(spec)):
                    resolve_backend(cfg, check_device(cfg).type, task)
            for split in ("val", "test") if task.has_test else ("val",):
                task.eval_batches(split, cfg.batch_size, cfg.seq_len, cfg.eval_batches)
            task.train_batch(0, cfg.batch_size, cfg.seq_len, cfg.seed, cfg.hidden_init.startswith("epoch_"))
        except ConfigError as err:
            raise GridError(f"{grid.path}: profile {spec.profile}, run {spec.run_name}: {err}") from None


def unfinished(grid: Grid, specs: tuple[RunSpec, ...], tracker: Tracker | None) -> tuple[RunSpec, ...]:
    """The specs with no FINISHED run in the store: every other one is skipped whatever happens, so
    pre-flight (and torch) is for these alone, and a rerun that trains nothing loads neither."""
    if tracker is None:
        return specs
    try:
        stored = tracker.runs(grid.name, {ROLE_TAG: RUN_ROLE})
    except Exception as exc:
        if store_error(exc, tracker.uri) is None:
            raise
        return specs   # the store failed: the session reports it, with what was done so far
    finished = {run.identity for run in stored if run.status == "FINISHED"}
    return tuple(spec for spec in specs if spec.identity not in finished)
