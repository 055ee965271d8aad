"""What every task shares: split constants and seed tags, the vocabulary, batches, seeded generators,
and the `Task` interface (see `charrnn/tasks/data.py` for how the splits are cut)."""
from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch

from charrnn.config import ConfigError

DATA_SEED = 1234            # fixes synthetic datasets and the names split, independent of the run seed
VAL_FRACTION = 0.1          # share held out for validation (the tail of the corpus / of the permutation)
VAL_CAP = 1000              # synthetic tasks: at most this many validation problems
TRAIN_CAP = 50_000          # synthetic tasks: at most this many training problems
ENUMERATE_LIMIT = 1 << 20   # synthetic spaces up to this size are permuted in full, larger ones sampled
TEST_FRACTION = 0.1         # test_split=true: share held out for test, just before val
MIN_HOLDOUT = 100           # test_split=true, sequence tasks: at least this many val and test items each
MIN_TEXT_CHARS = 20         # task=text: shortest usable file (the 10 % val split needs >= 2 characters)
PAD, BOS, EOS = "<pad>", "<bos>", "\n"   # special tokens; EOS is a newline so that decoded text reads naturally
ARITH_OPS = "+-*"

# Seed-stream tags: keep the random streams for different purposes independent.
_TAG_WINDOWS, _TAG_OFFSET, _TAG_EXAMPLES, _TAG_EPOCH = 1, 2, 3, 4
_TAG_NAMES, _TAG_ARITH, _TAG_BITFLIP = 11, 12, 13


# ----------------------------------------------------------------------------------------- vocab

@dataclass(frozen=True)
class Vocab:
    """id -> token table. Tokens are single characters, except special tokens such as "<pad>"."""
    itos: tuple[str, ...]
    pad_id: int | None = None
    bos_id: int | None = None
    eos_id: int | None = None

    def __post_init__(self) -> None:
        if len(set(self.itos)) != len(self.itos):
            raise ValueError(f"Vocab.itos has duplicate tokens: {self.itos!r}")
        for key in ("pad_id", "bos_id", "eos_id"):
            value = getattr(self, key)
            if value is not None and not 0 <= value < len(self.itos):
                raise ValueError(f"Vocab.{key}={value}: outside 0..{len(self.itos) - 1}")

    @property
    def size(self) -> int:
        return len(self.itos)

    @functools.cached_property
    def _lookup(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted codepoints of the single-character tokens, their ids), for vectorised encoding."""
        pairs = sorted((ord(tok), i) for i, tok in enumerate(self.itos) if len(tok) == 1)
        codes = np.array([c for c, _ in pairs], dtype=np.uint32)
        ids = np.array([i for _, i in pairs], dtype=np.int64)
        return codes, ids

    def encode_array(self, text: str) -> np.ndarray:
        """`text` -> (len(text),) int64 ids, one per character; ConfigError for unknown characters."""
        cps = _codepoints(text)
        codes, ids = self._lookup
        pos = np.searchsorted(codes, cps).clip(max=max(len(codes) - 1, 0))
        bad = codes[pos] != cps if len(codes) else np.ones(len(cps), dtype=bool)
        if bad.any():
            unknown = sorted({chr(c) for c in cps[bad].tolist()})
            raise ConfigError(f"text {text[:40]!r}: characters {unknown!r} are not in the task vocabulary; "
                              f"valid characters: {''.join(t for t in self.itos if len(t) == 1)!r}")
        return ids[pos]

    def encode(self, text: str) -> list[int]:
        """`text` -> token ids, one per character."""
        return self.encode_array(text).tolist()

    def decode(self, ids: Iterable[int] | torch.Tensor) -> str:
        """Token ids -> text; pad and bos are skipped, eos is rendered (as a newline), nothing stops."""
        ids = ids.tolist() if isinstance(ids, (torch.Tensor, np.ndarray)) else ids
        skip = {self.pad_id, self.bos_id} - {None}
        return "".join(self.itos[i] for i in ids if i not in skip)


def _codepoints(text: str) -> np.ndarray:
    """Unicode codepoints of `text` as a (len(text),) uint32 array, without a Python loop."""
    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4").astype(np.uint32)


def _special_vocab(chars: Iterable[str]) -> Vocab:
    """<pad>=0, <bos>=1, <eos>=2 (a newline), then the sorted distinct `chars`."""
    body = sorted(set(chars) - {EOS})
    return Vocab((PAD, BOS, EOS, *body), pad_id=0, bos_id=1, eos_id=2)


# ----------------------------------------------------------------------------------------- batches

@dataclass(frozen=True)
class Batch:
    """One training or validation batch."""
    x: torch.Tensor     # (B, T) int64 input ids
    y: torch.Tensor     # (B, T) int64 target ids
    mask: torch.Tensor  # (B, T) bool, True where loss and accuracy count


def _generator(*key: int) -> torch.Generator:
    """A CPU generator seeded by a hash of `key` (distinct keys give independent streams)."""
    state = np.random.SeedSequence([int(k) for k in key]).generate_state(1, dtype=np.uint64)[0]
    gen = torch.Generator()
    gen.manual_seed(int(state))
    return gen


@functools.lru_cache(maxsize=4)
def _epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """(n,) permutation of the training examples for one epoch (cached: consecutive steps reuse it)."""
    return torch.randperm(n, generator=_generator(seed, epoch, _TAG_EPOCH))


def _fraction(n: int, fraction: float) -> int:
    """Leading share of `n` items kept by dataset_fraction (at least one)."""
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"dataset_fraction={fraction!r}: out of range; valid: a number in (0, 1]")
    return max(1, int(n * fraction))


# ----------------------------------------------------------------------------------------- task base

class Task(ABC):
    """A training task: vocabulary, deterministic train batches, fixed evaluation batches of its
    splits ("train", "val" and, with test_split=true, "test")."""
    name: str
    vocab: Vocab
    has_accuracy: bool = False   # the trainer logs val_accuracy + val_exact_match
    autoregressive: bool = True  # y is x shifted by one (language modelling); False for bitflip
    fixed_seq_len: int | None = None  # sequence tasks have a fixed T and ignore seq_len
    train_tokens: int            # characters/tokens in the (fraction-reduced) train split

    @abstractmethod
    def train_batch(self, step: int, batch_size: int, seq_len: int, seed: int, carry: bool) -> Batch:
        """Implemented by every task."""

    @abstractmethod
    def batches_per_epoch(self, batch_size: int, seq_len: int) -> int:
        """Implemented by every task."""

    @abstractmethod
    def eval_batches(self, split: str, batch_size: int, seq_len: int, n: int) -> list[Batch]:
        """n fixed batches of `split` ("train", "val", "test"), each row scored from a fresh state."""

    @abstractmethod
    def train_pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(context, target), each (N,) int64: every scored target of the train split and the token
        it follows (its input position's id), for the trivial baselines of `charrnn.tasks.baseline`."""

    @property
    @abstractmethod
    def has_test(self) -> bool:
        """Implemented by every task: True when a test split is held out (test_split=true)."""

    def val_batches(self, batch_size: int, seq_len: int, n: int) -> list[Batch]:
        return self.eval_batches("val", batch_size, seq_len, n)

    def stateful_batches(self, split: str, batch_size: int, seq_len: int) -> list[Batch]:
        """Consecutive windows whose rows continue each other (eval_mode=stateful); corpora only."""
        raise ConfigError(f"eval_mode='stateful': task={self.name} has independent examples, no "
                          "stream to carry a state along; valid: eval_mode=windows for this task")

    def _split_error(self, split: str) -> ConfigError:
        valid = "train, val, test" if self.has_test else "train, val (test needs test_split=true)"
        return ConfigError(f"split={split!r}: task={self.name} has no such split; valid: {valid}")

    @abstractmethod
    def val_text(self, length: int) -> str:
        """Implemented by every task."""

    @abstractmethod
    def sample_prime(self) -> str:
        """Implemented by every task."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, vocab={self.vocab.size}, train_tokens={self.train_tokens})"
