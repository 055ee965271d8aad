"""How long one training batch takes to build (B=64, T=64), per task, fresh and carried-state
batching. A speed target lives here as a pytest-benchmark number, never as a timed assertion;
under `make test` (--benchmark-disable) each case runs once as a check that it builds."""
import itertools

import pytest

from charrnn.config import TrainConfig
from charrnn.tasks.data import make_task

TASKS = ("tinyshakespeare", "nietzsche", "names", "arithmetic", "bitflip")
B, T = 64, 64


@pytest.mark.parametrize("carry", [False, True], ids=["fresh", "carry"])
@pytest.mark.parametrize("name", TASKS)
def test_train_batch(benchmark, name, carry):
    task = make_task(TrainConfig(task=name))
    task.train_batch(0, B, T, 0, carry)           # first call builds any per-epoch index
    steps = itertools.count(1)
    batch = benchmark(lambda: task.train_batch(next(steps), B, T, 0, carry))
    assert batch.x.shape == batch.y.shape and batch.x.shape[0] == B
