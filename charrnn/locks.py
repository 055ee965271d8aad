"""Ownership on one host: an advisory `fcntl.flock` lock file per owned thing.

The kernel drops a flock when the file descriptor closes, so a lock held by a process killed with
`kill -9` is free again at once: a free lock on a RUNNING run means its owner is dead. Locks live under
`<results dir>/locks/`; they order processes on one host (or hosts sharing a POSIX-lock filesystem).
Descriptors are opened non-inheritable (PEP 446), so child processes never keep a lock alive.
"""
from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9_.=-]")


def lock_path(root: Path, *parts: str) -> Path:
    """`root/locks/<part>/.../<last>.lock`, every part made filesystem-safe."""
    safe = [_UNSAFE.sub("_", part) or "_" for part in parts]
    return root.joinpath("locks", *safe[:-1], safe[-1] + ".lock")


class FileLock:
    """An exclusive flock on `path`, taken with `acquire()` and dropped with `release()` (or exit)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, blocking: bool = False) -> bool:
        """Take the lock; without `blocking`, return False at once when another owner holds it."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

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
