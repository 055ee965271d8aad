"""A store that refuses work, as one line: read-only, out of disk space, unreachable, or corrupt.

MLflow and SQLAlchemy wrap the cause (sqlite's message, an OSError, a refused connection) in
exceptions of their own, so the whole chain of causes is read, by type, errno and text; nothing
here imports MLflow. `charrnn` prints the line and exits 1; `charrnn grid` first prints what it
did so far and ends the runs in flight with the line as their reason where the store still takes it.
"""
from __future__ import annotations

import errno
import os

from charrnn.paths import results_dir

RERUN = "then run the same command again (it resumes)"
SQLITE_PREFIX = "sqlite:///"
CORRUPT_SQLITE = ("file is not a database", "database disk image is malformed")   # sqlite's own messages


class StoreError(RuntimeError):
    """The store failed; the message names the cause and the fix."""


def store_error(exc: BaseException, uri: str | None = None) -> StoreError | None:
    """`exc` as a StoreError when the store at `uri` (default: this process's), or the disk under
    it, is what failed; else None."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or f"{SQLITE_PREFIX}{results_dir() / 'mlflow.db'}"
    chain = causes(exc)
    text = " ".join(str(e) for e in chain).lower()
    codes = {getattr(e, "errno", None) for e in chain}
    where = failed_path(chain) or uri.removeprefix(SQLITE_PREFIX)
    if errno.ENOSPC in codes or "disk is full" in text or "no space left" in text:
        return StoreError(f"no space left on the disk holding {where}: free some space there or set "
                          f"CHARRNN_RESULTS_DIR to a disk with room, {RERUN}")
    if codes & {errno.EROFS, errno.EACCES, errno.EPERM} or "readonly database" in text \
            or "read-only file system" in text:
        return StoreError(f"the store is read-only ({where} cannot be written): make it writable or "
                          f"set CHARRNN_RESULTS_DIR to a writable directory, {RERUN}")
    if uri.startswith(SQLITE_PREFIX) and any(sign in text for sign in CORRUPT_SQLITE):
        return StoreError(f"the store {uri.removeprefix(SQLITE_PREFIX)} is not a readable sqlite database (corrupt or "
                          "not a store): move it aside and restore a backup of it, or set CHARRNN_RESULTS_DIR to "
                          "another directory (a new store starts empty), then run the command again")
    unreachable = any(isinstance(e, ConnectionError) for e in chain) or "max retries exceeded" in text
    if not uri.startswith(SQLITE_PREFIX) and unreachable:
        return StoreError(f"the tracking server {uri} is unreachable (after MLflow's retries): start it "
                          f"(make server) or fix MLFLOW_TRACKING_URI, {RERUN}")
    return None


def causes(exc: BaseException) -> list[BaseException]:
    """`exc` and every exception it was raised from or during, nearest first."""
    chain: list[BaseException] = []
    while exc is not None and exc not in chain and len(chain) < 50:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def failed_path(chain: list[BaseException]) -> str | None:
    """The file an OSError names: the destination where it names two (a copy into the store)."""
    for exc in chain:
        if isinstance(exc, OSError) and (exc.filename2 or exc.filename):
            return str(exc.filename2 or exc.filename)
    return None
