"""Corpora shipped in `charrnn/tasks/corpora/`: their provenance and checksums, reading them verified, and
`fetch` (a checksummed download that writes its destination whole or not at all)."""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from charrnn.config import ConfigError


@dataclass(frozen=True)
class CorpusSource:
    """Provenance of a corpus shipped in `charrnn/tasks/corpora/` (see docs/references.md#datasets)."""
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


def _decode_utf8(raw: bytes, label: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"path={label!r}: not valid UTF-8 (byte {raw[err.start]:#04x} at offset {err.start}); "
                          "valid: a UTF-8 text file") from None


def _packaged_bytes(name: str) -> bytes:
    """Bytes of a shipped corpus, verified against CORPORA."""
    raw = (files("charrnn.tasks") / "corpora" / f"{name}.txt").read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != CORPORA[name].sha256:
        raise ChecksumError(f"charrnn/tasks/corpora/{name}.txt: sha256 {digest} != expected {CORPORA[name].sha256}")
    return raw


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
