"""Tasks for char-level training: vocabularies, corpora, synthetic problems, batches, downloads.

Every task pre-encodes its data once into int64 tensors; building a batch is index arithmetic plus one
gather. `Task.train_batch` is a pure function of its arguments and the task config (its randomness
comes from a `torch.Generator` seeded from (seed, step) or (seed, epoch)), so resuming from a
checkpoint at step k replays exactly the batches an uninterrupted run would have seen.

Splits never depend on the run seed: corpora split by position, the sequence tasks by a fixed
permutation drawn from `DATA_SEED`. By default a task has train and val only (90/10). With
`test_split=true` it also holds out a test split, scored once at the end of a run and never used
for selection. The test split is carved so that the val split stays exactly what it was:

    corpus (by position):      | train 80 %                  | test 10 % | val 10 % |
    sequence tasks (by the     | train (the rest, <= 50k)    | test      | val      |
      fixed permutation):        val and test: distinct items, same size, never in train

Sequence tasks with `test_split=true` hold out at least `MIN_HOLDOUT` items each for val and test
(at most a quarter of a small space each), so that e.g. 8-bit bitflip is judged on 64 distinct
integers, not 25. `dataset_fraction` shrinks the train split only.
"""
from __future__ import annotations

from charrnn import registry
from charrnn.config import TrainConfig
from charrnn.tasks.corpus_sources import CORPORA, ChecksumError, CorpusSource, fetch
from charrnn.tasks.sequence import ArithmeticTask, BitflipTask, LMSequenceTask, NamesTask, SequenceTask
from charrnn.tasks.stream import StreamTask
from charrnn.tasks.base import Batch, Task, Vocab

__all__ = ["CORPORA", "ArithmeticTask", "Batch", "BitflipTask", "ChecksumError", "CorpusSource",
           "LMSequenceTask", "NamesTask", "SequenceTask", "StreamTask", "Task", "Vocab", "fetch", "make_task"]


def make_task(cfg: TrainConfig) -> Task:
    """The task named by cfg.task (a choice `make_config` checked), built by the class its registry
    entry names (`registry.TASKS[name].build`); ConfigError (one line) for unusable data."""
    return registry.load(registry.TASKS[cfg.task].build)(cfg)
