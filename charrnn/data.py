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

import functools
from abc import ABC, abstractmethod
import hashlib
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from charrnn.config import ConfigError, TrainConfig

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


@dataclass(frozen=True)
class CorpusSource:
    """Provenance of a corpus shipped in `charrnn/corpora/` (see docs/references.md#datasets)."""
    url: str
    sha256: str            # of the shipped copy
    url_verified: bool     # True when the bytes at `url` are identical to the shipped copy (fetch() can check them)


CORPORA: dict[str, CorpusSource] = {
    "tinyshakespeare": CorpusSource(
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed", True),
    "nietzsche": CorpusSource(  # shipped copy has CRLF->LF and the BOM removed: not byte-identical to the URL
        "https://s3.amazonaws.com/text-datasets/nietzsche.txt",
        "dea01ca2da603db6736fd856c585d073ccf3dca68efe4a59c5e73242cdf0b028", False),
    "names": CorpusSource(
        "https://raw.githubusercontent.com/karpathy/makemore/master/names.txt",
        "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d", True),
}


class ChecksumError(ValueError):
    """Downloaded or shipped bytes do not have the expected sha256."""


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


# ----------------------------------------------------------------------------------------- text streams

@dataclass(frozen=True)
class _Stream:
    """A whole corpus, encoded once."""
    vocab: Vocab
    ids: torch.Tensor  # (N,) int64


def _decode_utf8(raw: bytes, label: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"path={label!r}: not valid UTF-8 (byte {raw[err.start]:#04x} at offset {err.start}); "
                          "valid: a UTF-8 text file") from None


def _stream_from_text(text: str) -> _Stream:
    """Vocabulary = sorted distinct characters; ids via one vectorised unique/inverse pass."""
    chars, inverse = np.unique(_codepoints(text), return_inverse=True)
    vocab = Vocab(tuple(map(chr, chars.tolist())))
    return _Stream(vocab, torch.from_numpy(inverse.reshape(-1).astype(np.int64)))


def _packaged_bytes(name: str) -> bytes:
    """Bytes of a shipped corpus, verified against CORPORA."""
    raw = (files("charrnn") / "corpora" / f"{name}.txt").read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != CORPORA[name].sha256:
        raise ChecksumError(f"charrnn/corpora/{name}.txt: sha256 {digest} != expected {CORPORA[name].sha256}")
    return raw


@functools.lru_cache(maxsize=4)
def _packaged_stream(name: str) -> _Stream:
    return _stream_from_text(_decode_utf8(_packaged_bytes(name), name))


@functools.lru_cache(maxsize=4)
def _file_stream(path: str, stamp: tuple[int, int]) -> _Stream:
    """Encoded user file; `stamp` = (mtime_ns, size) so an edited file is re-read."""
    text = _decode_utf8(Path(path).read_bytes(), path)
    if len(text) < MIN_TEXT_CHARS:
        raise ConfigError(f"path={path!r}: too short ({len(text)} characters); "
                          f"valid: a UTF-8 text file of at least {MIN_TEXT_CHARS} characters")
    return _stream_from_text(text)


def _text_stream(path: str) -> _Stream:
    """Stream for task=text, with one-line ConfigErrors for missing or unreadable files."""
    if not path:
        raise ConfigError("path='': task=text needs path=FILE (a UTF-8 text file)")
    try:
        info = os.stat(path)
        return _file_stream(str(Path(path).resolve()), (info.st_mtime_ns, info.st_size))
    except FileNotFoundError:
        raise ConfigError(f"path={path!r}: file not found (task=text needs an existing UTF-8 file)") from None
    except OSError as err:
        raise ConfigError(f"path={path!r}: cannot read ({err.strerror}); valid: a readable UTF-8 text file") from None


def _too_short(split: str, tokens: int, need: int, what: str) -> ConfigError:
    return ConfigError(f"{what}: needs {need} tokens but the {split} split has only {tokens}; "
                       "valid: a smaller seq_len or batch_size, or more data")


def _windows(ids: torch.Tensor, starts: torch.Tensor, seq_len: int) -> Batch:
    """Gather windows ids[s : s+T+1] for every start: x = w[:, :-1], y = w[:, 1:].

    index_select, not ids[idx]: advanced indexing into a long 1-D tensor goes multi-threaded and
    stalls for milliseconds when another process is using the cores.
    """
    idx = starts[:, None] + torch.arange(seq_len + 1)              # (B, T+1)
    w = ids.index_select(0, idx.reshape(-1)).view(idx.shape)      # (B, T+1)
    x, y = w[:, :-1], w[:, 1:]                                     # (B, T) each
    return Batch(x, y, torch.ones_like(x, dtype=torch.bool))


def _track_batches(ids: torch.Tensor, starts: torch.Tensor, track_len: int, seq_len: int) -> list[Batch]:
    """Windows of T along B tracks ids[s : s+L+1] (one per start s): row b of window k+1 continues
    row b of window k, the last window is shorter when T does not divide L. Every target of every
    track is scored exactly once, whatever T is.
    """
    return [_windows(ids, starts + lo, min(seq_len, track_len - lo)) for lo in range(0, track_len, seq_len)]


class StreamTask(Task):
    """Character-level language modelling over one text: tinyshakespeare, nietzsche, text (cfg.path)."""

    def __init__(self, cfg: TrainConfig) -> None:
        stream = _text_stream(cfg.path) if cfg.task == "text" else _packaged_stream(cfg.task)
        cut = int(len(stream.ids) * (1 - VAL_FRACTION))
        test_cut = cut - int(len(stream.ids) * TEST_FRACTION) if cfg.test_split else cut
        self.name, self.vocab = cfg.task, stream.vocab
        self.train_ids = stream.ids[:_fraction(test_cut, cfg.dataset_fraction)]  # (N_train,)
        self.val_ids = stream.ids[cut:]                                           # (N_val,)
        self.test_ids = stream.ids[test_cut:cut] if cfg.test_split else None     # (N_test,)
        self.train_tokens = len(self.train_ids)

    @property
    def has_test(self) -> bool:
        return self.test_ids is not None

    def split_ids(self, split: str) -> torch.Tensor:
        """The token ids of `split`: "train" (fraction-reduced), "val" or "test"."""
        ids = {"train": self.train_ids, "val": self.val_ids, "test": self.test_ids}.get(split)
        if ids is None:
            raise self._split_error(split)
        return ids

    def _track_len(self, batch_size: int, seq_len: int) -> int:
        """Length L of each of the B parallel tracks, leaving room for a per-epoch offset < T."""
        return (self.train_tokens - seq_len + 1) // batch_size

    def batches_per_epoch(self, batch_size: int, seq_len: int) -> int:
        return max(1, (self._track_len(batch_size, seq_len) - 1) // seq_len)

    def train_batch(self, step: int, batch_size: int, seq_len: int, seed: int, carry: bool) -> Batch:
        starts = (self._track_starts if carry else self._random_starts)(step, batch_size, seq_len, seed)
        return _windows(self.train_ids, starts, seq_len)

    def _random_starts(self, step: int, batch_size: int, seq_len: int, seed: int) -> torch.Tensor:
        """(B,) independent random window starts."""
        high = self.train_tokens - seq_len
        if high < 1:
            raise _too_short("train", self.train_tokens, seq_len + 1, f"seq_len={seq_len}")
        return torch.randint(high, (batch_size,), generator=_generator(seed, step, _TAG_WINDOWS))

    def _track_starts(self, step: int, batch_size: int, seq_len: int, seed: int) -> torch.Tensor:
        """(B,) starts of chunk k of every track (batchify): row b of step k+1 continues row b of step k.

        The tracks are the train split cut into B contiguous pieces of length L, shifted by a random
        offset in [0, T) drawn once per epoch from (seed, epoch); continuity holds within an epoch.
        """
        track_len = self._track_len(batch_size, seq_len)
        if track_len < seq_len + 1:
            raise _too_short("train", self.train_tokens, batch_size * (seq_len + 1) + seq_len - 1,
                             f"batch_size={batch_size}, seq_len={seq_len} with a carried hidden state")
        epoch, k = divmod(step, self.batches_per_epoch(batch_size, seq_len))
        offset = torch.randint(seq_len, (1,), generator=_generator(seed, epoch, _TAG_OFFSET))
        return offset + torch.arange(batch_size) * track_len + k * seq_len

    def eval_batches(self, split: str, batch_size: int, seq_len: int, n: int) -> list[Batch]:
        """n batches of B windows whose starts are evenly spaced over `split`."""
        ids = self.split_ids(split)
        last = len(ids) - seq_len - 1
        if last < 0:
            raise _too_short(split, len(ids), seq_len + 1, f"seq_len={seq_len}")
        starts = torch.linspace(0, last, n * batch_size).round().long().view(n, batch_size)  # (n, B)
        return [_windows(ids, row, seq_len) for row in starts]

    def stateful_batches(self, split: str, batch_size: int, seq_len: int) -> list[Batch]:
        """The split as B parallel tracks read window by window, char-rnn style (eval_mode=stateful).

        val / test: the whole split cut into B contiguous tracks of L = (N-1) // B targets (the
        last < B targets are dropped). train: B tracks of the same L (shorter if the train split
        is), evenly spaced over it, so train and val are scored alike. Example, N = 13, B = 3, T = 2:

            split      a b c d e f g h i j k l m       L = (13 - 1) // 3 = 4
            tracks     row 0: a b c d [e]              x = track[:, :-1], y = track[:, 1:]
                       row 1: e f g h [i]              ([.] is a target only)
                       row 2: i j k l [m]
            windows    k=0: x = [[a b] [e f] [i j]]    y = [[b c] [f g] [j k]]
                       k=1: x = [[c d] [g h] [k l]]    y = [[d e] [h i] [l m]]

        The evaluator carries the hidden state of row b from window k to window k+1, so every
        target is predicted from its whole track prefix: the loss does not depend on T (up to
        float rounding), only on B through the B cold starts.
        """
        val_len = (len(self.val_ids) - 1) // batch_size
        ids = self.split_ids(split)
        if split == "train":
            track_len = min(val_len, (len(ids) - 1) // batch_size)
            starts = torch.linspace(0, len(ids) - 1 - track_len, batch_size).round().long()  # (B,)
        else:
            track_len = (len(ids) - 1) // batch_size
            starts = torch.arange(batch_size) * track_len                                      # (B,)
        if track_len < 1:
            raise _too_short(split, len(ids), batch_size + 1, f"batch_size={batch_size} with eval_mode=stateful")
        return _track_batches(ids, starts, track_len, seq_len)

    def val_text(self, length: int) -> str:
        return self.vocab.decode(self.val_ids[:length])

    def sample_prime(self) -> str:
        return "\n" if "\n" in self.vocab.itos else self.vocab.itos[int(self.val_ids[0])]


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


# ----------------------------------------------------------------------------------------- registry

TASKS: dict[str, Callable[[TrainConfig], Task]] = {
    "tinyshakespeare": StreamTask,
    "nietzsche": StreamTask,
    "names": NamesTask,
    "arithmetic": ArithmeticTask,
    "bitflip": BitflipTask,
    "text": StreamTask,
}


def make_task(cfg: TrainConfig) -> Task:
    """The task named by cfg.task; ConfigError (one line) for an unknown task or unusable data."""
    factory = TASKS.get(cfg.task)
    if factory is None:
        raise ConfigError(f"task={cfg.task!r}: unknown value; valid choices: {', '.join(TASKS)}")
    return factory(cfg)


# ----------------------------------------------------------------------------------------- download

def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, sha256: str, dest: str | Path, timeout: float = 60.0) -> Path:
    """Download `url` to `dest`, verifying its sha256; returns dest.

    Writes to a temporary file next to dest and renames it into place only when the checksum
    matches, so dest is either complete and verified or untouched. A dest that already has the
    checksum is returned without downloading. Raises ChecksumError on a mismatch.
    """
    dest, expected = Path(dest), sha256.lower()
    if dest.is_file() and _sha256_file(dest) == expected:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            for block in iter(lambda: resp.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != expected:
            raise ChecksumError(f"{url}: sha256 {digest.hexdigest()} does not match the expected {expected}; "
                                f"{dest} was not written")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest
