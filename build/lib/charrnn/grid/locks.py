"""Ownership on one host: an advisory lock file per owned thing, through `filelock`'s flock lock.

The kernel drops a flock when the file descriptor closes, so a lock held by a process killed with
`kill -9` is free again at once: a free lock on a RUNNING run means its owner is dead. Locks live under
`<results dir>/locks/`; they order processes on one host (or hosts sharing a POSIX-lock filesystem).
Descriptors are non-inheritable (PEP 446), so child processes never keep a lock alive. Where the
filesystem has no flock, acquiring fails loudly instead of falling back to a lock a crash would leave
behind. A `FileLock` is not reentrant and not thread-local: one acquire, one release, any thread.
"""
from __future__ import annotations

import re
from pathlib import Path

from filelock import Timeout, UnixFileLock

_UNSAFE = re.compile(r"[^A-Za-z0-9_.=-]")


def lock_path(root: Path, *parts: str) -> Path:
    """`root/locks/<part>/.../<last>.lock`, every part made filesystem-safe."""
    safe = [_UNSAFE.sub("_", part) or "_" for part in parts]
    return root.joinpath("locks", *safe[:-1], safe[-1] + ".lock")


class FileLock:
    """An exclusive flock on `path`, taken with `acquire()` and dropped with `release()` (or exit)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = UnixFileLock(self.path, thread_local=False, fallback_to_soft=False)

    @property
    def held(self) -> bool:
        return self._lock.is_locked

    def acquire(self, blocking: bool = False) -> bool:
        """Take the lock; without `blocking`, return False at once when another owner holds it."""
        if self.held:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(blocking=blocking)
        except Timeout:
            return False
        return True

    def release(self) -> None:
        if self.held:
            self._lock.release(force=True)  # closing the descriptor drops the flock

    def __enter__(self) -> "FileLock":
        self.acquire(blocking=True)
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def is_held(path: Path) -> bool:
    """True when some live process holds the lock at `path` (probing takes and drops it)."""
    if not Path(path).exists():
        return False
    probe = FileLock(path)
    if probe.acquire():
        probe.release()
        return False
    return True
