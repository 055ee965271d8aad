"""Tasks of fixed-length examples: names, arithmetic and bitflip, their problem spaces cut into
disjoint train / test / val splits by a fixed permutation (see `charrnn/tasks/data.py`)."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from charrnn.config import ConfigError, TrainConfig
from charrnn.tasks.corpus_sources import _decode_utf8, _packaged_bytes
from charrnn.tasks.base import (_TAG_ARITH, _TAG_BITFLIP, _TAG_EXAMPLES, _TAG_NAMES, ARITH_OPS, DATA_SEED,
                                ENUMERATE_LIMIT, EOS, MIN_HOLDOUT, TRAIN_CAP, VAL_CAP, VAL_FRACTION, Batch, Task, Vocab,
                                _epoch_permutation, _fraction, _generator, _special_vocab)


# ----------------------------------------------------------------------------------------- sequences

@dataclass(frozen=True)
class _Examples:
    """A fixed-length example set, every row one example."""
    x: torch.Tensor     # (N, T) int64
    y: torch.Tensor     # (N, T) int64
    mask: torch.Tensor  # (N, T) bool

    def __len__(self) -> int:
        return len(self.x)

    def take(self, idx: torch.Tensor) -> Batch:
        """Batch of the rows `idx` (B,)."""
        return Batch(self.x.index_select(0, idx), self.y.index_select(0, idx), self.mask.index_select(0, idx))

    def rows(self, part: slice) -> _Examples:
        """A contiguous range of examples (views, no copy)."""
        return _Examples(self.x[part], self.y[part], self.mask[part])


def _pack_lm(texts: Sequence[str], vocab: Vocab, loss_from: np.ndarray, seq_len: int) -> _Examples:
    """Examples [bos]+text+[eos] right-padded to seq_len+1, then shifted: x = ex[:-1], y = ex[1:].

    Padding before the shift keeps x[:, 1:] == y[:, :-1] exactly (x holds the eos of every example
    shorter than T, at a position whose target is pad and so is never scored).

    mask = (y != pad) & (position >= loss_from[i]): loss_from = 0 scores every target, len(question)
    scores only the answer and eos.
    """
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))      # (N,)
    ex = np.full((len(texts), seq_len + 1), vocab.pad_id, dtype=np.int64)         # (N, T+1)
    col = np.arange(seq_len + 1)[None, :]                                          # (1, T+1)
    ex[:, 0] = vocab.bos_id
    ex[(col >= 1) & (col <= lengths[:, None])] = vocab.encode_array("".join(texts))  # row-major = text order
    ex[np.arange(len(texts)), lengths + 1] = vocab.eos_id
    x, y = torch.from_numpy(ex[:, :-1].copy()), torch.from_numpy(ex[:, 1:].copy())  # (N, T) each
    mask = (y != vocab.pad_id) & torch.from_numpy(col[:, :-1] >= loss_from[:, None])
    return _Examples(x, y, mask)


def _holdout_size(n: int, test_split: bool) -> int:
    """Items in val (and as many in test): 10 % of n, capped at VAL_CAP; with a test split at least
    MIN_HOLDOUT where that leaves train half of a small space."""
    share = int(n * VAL_FRACTION)
    if test_split:
        share = max(share, min(MIN_HOLDOUT, n // 4))
    return min(VAL_CAP, max(1, share))


def _split_space(space: int, tag: int, test_split: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint (train, test, val) problem ids from range(space), drawn from DATA_SEED.

    val = _holdout_size(space) ids; test = as many (none without test_split); train = all the rest
    up to TRAIN_CAP (every remaining problem when the space is small). One random order of
    distinct ids is cut [train | test | val], so val is the same with and without a test split.
    """
    rng = np.random.default_rng([DATA_SEED, tag])
    n_val = _holdout_size(space, test_split)
    n_test = n_val if test_split else 0
    need = min(space, TRAIN_CAP + n_val + n_test)
    if need - n_val - n_test < 1:
        raise ConfigError(f"space of {space} problems: too small for train, test and val splits; "
                          "valid: a larger problem space (more bits or digits) or test_split=false")
    ids = rng.permutation(space)[:need] if space <= ENUMERATE_LIMIT else _distinct(rng, space, need)
    ids = ids.astype(np.uint64)
    return ids[:-n_val - n_test], ids[len(ids) - n_val - n_test:-n_val], ids[-n_val:]


def _distinct(rng: np.random.Generator, space: int, k: int) -> np.ndarray:
    """k distinct uniform ids from range(space) (space >> k), in draw order."""
    draws = np.empty(0, dtype=np.uint64)
    while True:
        draws = np.concatenate([draws, rng.integers(0, space, size=2 * k, dtype=np.uint64)])
        _, first = np.unique(draws, return_index=True)
        if len(first) >= k:
            return draws[np.sort(first)[:k]]


class SequenceTask(Task):
    """Fixed-length examples (x, y, mask); `seq_len` is ignored, T is fixed by the data."""

    def __init__(self, cfg: TrainConfig, vocab: Vocab, train: _Examples, val: _Examples,
                 val_texts: Sequence[str], test: _Examples | None = None) -> None:
        self.name, self.vocab = cfg.task, vocab
        self.train = train.rows(slice(_fraction(len(train), cfg.dataset_fraction)))
        self.val = val
        self.test = test if test is not None and len(test) else None
        self.val_texts = tuple(val_texts)  # each val example as text (with its eos newline where it has one)
        self.fixed_seq_len = train.x.shape[1]
        real = self.train.y if vocab.pad_id is None else self.train.y[self.train.y != vocab.pad_id]
        self.train_tokens = real.numel()  # real targets (no padding)

    def batches_per_epoch(self, batch_size: int, seq_len: int) -> int:
        return max(1, len(self.train) // batch_size)

    def train_batch(self, step: int, batch_size: int, seq_len: int, seed: int, carry: bool) -> Batch:
        """carry: slice k of the epoch's permutation of examples; else B uniform random examples."""
        n = len(self.train)
        if carry:
            epoch, k = divmod(step, self.batches_per_epoch(batch_size, seq_len))
            pos = (k * batch_size + torch.arange(batch_size)) % n         # (B,)
            idx = _epoch_permutation(n, seed, epoch).index_select(0, pos)
        else:
            idx = torch.randint(n, (batch_size,), generator=_generator(seed, step, _TAG_EXAMPLES))
        return self.train.take(idx)

    def train_pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.train.x[self.train.mask], self.train.y[self.train.mask]

    @property
    def has_test(self) -> bool:
        return self.test is not None

    def eval_batches(self, split: str, batch_size: int, seq_len: int, n: int) -> list[Batch]:
        """n batches of consecutive examples of `split` (wrapping around when n*B exceeds it)."""
        examples = {"train": self.train, "val": self.val, "test": self.test}.get(split)
        if examples is None:
            raise self._split_error(split)
        idx = (torch.arange(n * batch_size) % len(examples)).view(n, batch_size)  # (n, B)
        return [examples.take(row) for row in idx]

    def val_text(self, length: int) -> str:
        """Whole val examples concatenated, as many as fit in `length` characters (at least one)."""
        out, total = [], 0
        for text in self.val_texts:
            if out and total + len(text) > length:
                break
            out.append(text)
            total += len(text)
        return "".join(out)

class LMSequenceTask(SequenceTask):
    """Language-model-style examples [bos]+text+[eos]: the first n_train texts train, the next
    n_test test, the rest val."""

    def __init__(self, cfg: TrainConfig, vocab: Vocab, texts: Sequence[str], loss_from: np.ndarray,
                 n_train: int, n_test: int = 0) -> None:
        data = _pack_lm(texts, vocab, loss_from, seq_len=max(map(len, texts)) + 1)
        held = n_train + n_test
        super().__init__(cfg, vocab, data.rows(slice(n_train)), data.rows(slice(held, None)),
                         [t + EOS for t in texts[held:]], test=data.rows(slice(n_train, held)))


@functools.lru_cache(maxsize=2)
def _names(test_split: bool = False) -> tuple[tuple[str, ...], int, int]:
    """All distinct names in split order (fixed DATA_SEED permutation) [train | test | val], the
    number of train names and of test names. names.txt repeats about 2.5k names; splitting
    distinct names keeps val and test out of train."""
    lines = list(dict.fromkeys(s for s in _decode_utf8(_packaged_bytes("names"), "names").splitlines()
                               if s.strip()))
    order = np.random.default_rng([DATA_SEED, _TAG_NAMES]).permutation(len(lines))
    n_val = max(1, int(len(lines) * VAL_FRACTION))
    n_test = n_val if test_split else 0
    return tuple(lines[i] for i in order), len(lines) - n_val - n_test, n_test


class NamesTask(LMSequenceTask):
    """One name per example: [bos] + name + [eos], padded to the longest name; loss on every real target."""

    def __init__(self, cfg: TrainConfig) -> None:
        texts, n_train, n_test = _names(cfg.test_split)
        vocab = _special_vocab("".join(texts))
        super().__init__(cfg, vocab, texts, np.zeros(len(texts), dtype=np.int64), n_train, n_test)

    def sample_prime(self) -> str:
        return ""  # the trainer starts from <bos>


def _canonical_ops(ops: str) -> str:
    if not ops or set(ops) - set(ARITH_OPS):
        raise ConfigError(f"arith_ops={ops!r}: unknown or missing operator; valid characters: + - *")
    return "".join(op for op in ARITH_OPS if op in ops)


def _problem(pid: int, base: int, ops: str) -> str:
    """Problem number `pid` of range(len(ops) * base**2) as text, e.g. "12+7=19"."""
    op, a, b = ops[pid // base**2], pid // base % base, pid % base
    answer = a + b if op == "+" else a - b if op == "-" else a * b
    return f"{a}{op}{b}={answer}"


@functools.lru_cache(maxsize=8)
def _arith_problems(digits: int, ops: str, test_split: bool = False) -> tuple[tuple[str, ...], int, int]:
    """Train, test, then val problems (disjoint), the number of train and of test problems."""
    base = 10 ** digits
    parts = _split_space(len(ops) * base**2, _TAG_ARITH, test_split)
    texts = tuple(_problem(int(p), base, ops) for p in np.concatenate(parts).tolist())
    return texts, len(parts[0]), len(parts[1])


class ArithmeticTask(LMSequenceTask):
    """Grade-school problems "a+b=" -> answer; loss and accuracy on the answer characters and eos only."""
    has_accuracy = True

    def __init__(self, cfg: TrainConfig) -> None:
        ops = _canonical_ops(cfg.arith_ops)
        texts, n_train, n_test = _arith_problems(cfg.arith_digits, ops, cfg.test_split)
        vocab = _special_vocab("0123456789=-" + ops)
        loss_from = np.array([t.index("=") + 1 for t in texts], dtype=np.int64)
        super().__init__(cfg, vocab, texts, loss_from, n_train, n_test)

    def sample_prime(self) -> str:
        question = self.val_texts[0]
        return question[:question.index("=") + 1]


def _bits(ids: np.ndarray, width: int) -> torch.Tensor:
    """(N,) uint64 integers -> (N, width) int64 bits, most significant first."""
    shifts = np.arange(width - 1, -1, -1, dtype=np.uint64)
    return torch.from_numpy(((ids[:, None] >> shifts) & np.uint64(1)).astype(np.int64))


def _flip_examples(ids: np.ndarray, width: int) -> _Examples:
    x = _bits(ids, width)  # (N, width)
    return _Examples(x, 1 - x, torch.ones_like(x, dtype=torch.bool))


class BitflipTask(SequenceTask):
    """x = the N bits of an integer (MSB first), y = every bit flipped; mask all True, T = N (write-up 004)."""
    has_accuracy = True
    autoregressive = False

    def __init__(self, cfg: TrainConfig) -> None:
        width = cfg.bitflip_bits
        train_ids, test_ids, val_ids = _split_space(2 ** width, _TAG_BITFLIP, cfg.test_split)
        vocab = Vocab(("0", "1"))
        val = _flip_examples(val_ids, width)
        val_texts = [vocab.decode(row) for row in val.x]
        super().__init__(cfg, vocab, _flip_examples(train_ids, width), val, val_texts,
                         test=_flip_examples(test_ids, width))

    def sample_prime(self) -> str:
        return self.val_texts[0]
