"""The one hash helper: SHA-256 over bytes or files, streamed in large blocks."""

from __future__ import annotations

import hashlib
from pathlib import Path

DIGEST_SIZE = 32
ZERO_DIGEST = bytes(DIGEST_SIZE)
"""The 'previous header' hash of the very first segment a badge ever seals."""

_BLOCK = 1 << 20


def sha256(data: bytes | bytearray | memoryview) -> bytes:
    """Return the SHA-256 digest of ``data``."""
    return hashlib.sha256(data).digest()


def sha256_file(path: Path) -> bytes:
    """Return the SHA-256 digest of a file's contents, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(_BLOCK):
            digest.update(block)
    return digest.digest()
