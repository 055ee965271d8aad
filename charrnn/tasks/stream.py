"""Character-level language modelling over one contiguous text (tinyshakespeare, nietzsche, a user
file): the corpus encoded once, windows gathered by index arithmetic, batchified tracks for a
carried hidden state."""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from charrnn.config import ConfigError, TrainConfig
from charrnn.tasks.corpus_sources import _decode_utf8, _packaged_bytes
from charrnn.tasks.base import (_TAG_OFFSET, _TAG_WINDOWS, MIN_TEXT_CHARS, TEST_FRACTION, VAL_FRACTION, Batch, Task,
                                Vocab, _codepoints, _fraction, _generator)


# ----------------------------------------------------------------------------------------- text streams

@dataclass(frozen=True)
class _Stream:
    """A whole corpus, encoded once."""
    vocab: Vocab
    ids: torch.Tensor  # (N,) int64


def _stream_from_text(text: str) -> _Stream:
    """Vocabulary = sorted distinct characters; ids via one vectorised unique/inverse pass."""
    chars, inverse = np.unique(_codepoints(text), return_inverse=True)
    vocab = Vocab(tuple(map(chr, chars.tolist())))
    return _Stream(vocab, torch.from_numpy(inverse.reshape(-1).astype(np.int64)))


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

    def train_pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.train_ids[:-1], self.train_ids[1:]

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
