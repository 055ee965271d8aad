"""Tasks for char-level training: vocabularies, corpora, synthetic problems, batches, downloads.

Every task pre-encodes its data once into int64 tensors; building a batch is index arithmetic plus one
gather. `Task.train_batch` is a pure function of its arguments and the task config (its randomness
comes from a `torch.Generator` seeded from (seed, step) or (seed, epoch)), so resuming from a
checkpoint at step k replays exactly the batches an uninterrupted run would have seen.

Splits never depend on the run seed: corpora split 90/10 by position, the sequence tasks by a fixed
permutation drawn from `DATA_SEED`.
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
    """A training task: vocabulary, deterministic train batches, fixed validation batches."""
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
    def val_batches(self, batch_size: int, seq_len: int, n: int) -> list[Batch]:
        """Implemented by every task."""

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


class StreamTask(Task):
    """Character-level language modelling over one text: tinyshakespeare, nietzsche, text (cfg.path)."""

    def __init__(self, cfg: TrainConfig) -> None:
        stream = _text_stream(cfg.path) if cfg.task == "text" else _packaged_stream(cfg.task)
        cut = int(len(stream.ids) * (1 - VAL_FRACTION))
        self.name, self.vocab = cfg.task, stream.vocab
        self.train_ids = stream.ids[:_fraction(cut, cfg.dataset_fraction)]  # (N_train,)
        self.val_ids = stream.ids[cut:]                                      # (N_val,)
        self.train_tokens = len(self.train_ids)

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

    def val_batches(self, batch_size: int, seq_len: int, n: int) -> list[Batch]:
        """n batches of B windows whose starts are evenly spaced over the val split."""
        last = len(self.val_ids) - seq_len - 1
        if last < 0:
            raise _too_short("val", len(self.val_ids), seq_len + 1, f"seq_len={seq_len}")
        starts = torch.linspace(0, last, n * batch_size).round().long().view(n, batch_size)  # (n, B)
        return [_windows(self.val_ids, row, seq_len) for row in starts]

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


def _split_space(space: int, tag: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (train, val) problem ids from range(space), drawn from DATA_SEED.

    val = min(VAL_CAP, 10 % of the space); train = all the rest up to TRAIN_CAP (every remaining
    problem when the space is small). Val is the tail of one random order of distinct ids.
    """
    rng = np.random.default_rng([DATA_SEED, tag])
    n_val = min(VAL_CAP, max(1, int(space * VAL_FRACTION)))
    need = min(space, TRAIN_CAP + n_val)
    ids = rng.permutation(space)[:need] if space <= ENUMERATE_LIMIT else _distinct(rng, space, need)
    return ids[:-n_val].astype(np.uint64), ids[-n_val:].astype(np.uint64)


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
                 val_texts: Sequence[str]) -> None:
        self.name, self.vocab = cfg.task, vocab
        self.train = train.rows(slice(_fraction(len(train), cfg.dataset_fraction)))
        self.val = val
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

    def val_batches(self, batch_size: int, seq_len: int, n: int) -> list[Batch]:
        """n batches of consecutive val examples (wrapping around when n*B exceeds the val set)."""
        idx = (torch.arange(n * batch_size) % len(self.val)).view(n, batch_size)  # (n, B)
        return [self.val.take(row) for row in idx]

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
    """Language-model-style examples [bos]+text+[eos]: the first n_train texts train, the rest val."""

    def __init__(self, cfg: TrainConfig, vocab: Vocab, texts: Sequence[str], loss_from: np.ndarray,
                 n_train: int) -> None:
        data = _pack_lm(texts, vocab, loss_from, seq_len=max(map(len, texts)) + 1)
        super().__init__(cfg, vocab, data.rows(slice(n_train)), data.rows(slice(n_train, None)),
                         [t + EOS for t in texts[n_train:]])


@functools.lru_cache(maxsize=1)
def _names() -> tuple[tuple[str, ...], int]:
    """All distinct names in split order (fixed DATA_SEED permutation) and the number of training
    names. names.txt repeats about 2.5k names; splitting distinct names keeps val out of train."""
    lines = list(dict.fromkeys(s for s in _decode_utf8(_packaged_bytes("names"), "names").splitlines()
                               if s.strip()))
    order = np.random.default_rng([DATA_SEED, _TAG_NAMES]).permutation(len(lines))
    n_val = max(1, int(len(lines) * VAL_FRACTION))
    return tuple(lines[i] for i in order), len(lines) - n_val


class NamesTask(LMSequenceTask):
    """One name per example: [bos] + name + [eos], padded to the longest name; loss on every real target."""

    def __init__(self, cfg: TrainConfig) -> None:
        texts, n_train = _names()
        vocab = _special_vocab("".join(texts))
        super().__init__(cfg, vocab, texts, np.zeros(len(texts), dtype=np.int64), n_train)

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
def _arith_problems(digits: int, ops: str) -> tuple[tuple[str, ...], int]:
    """Train problems then val problems (disjoint), and the number of train problems."""
    base = 10 ** digits
    train_ids, val_ids = _split_space(len(ops) * base**2, _TAG_ARITH)
    texts = tuple(_problem(int(p), base, ops) for p in np.concatenate([train_ids, val_ids]).tolist())
    return texts, len(train_ids)


class ArithmeticTask(LMSequenceTask):
    """Grade-school problems "a+b=" -> answer; loss and accuracy on the answer characters and eos only."""
    has_accuracy = True

    def __init__(self, cfg: TrainConfig) -> None:
        ops = _canonical_ops(cfg.arith_ops)
        texts, n_train = _arith_problems(cfg.arith_digits, ops)
        vocab = _special_vocab("0123456789=-" + ops)
        loss_from = np.array([t.index("=") + 1 for t in texts], dtype=np.int64)
        super().__init__(cfg, vocab, texts, loss_from, n_train)

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
        train_ids, val_ids = _split_space(2 ** width, _TAG_BITFLIP)
        vocab = Vocab(("0", "1"))
        val = _flip_examples(val_ids, width)
        val_texts = [vocab.decode(row) for row in val.x]
        super().__init__(cfg, vocab, _flip_examples(train_ids, width), val, val_texts)

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
