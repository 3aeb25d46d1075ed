"""Durable file writes: temp file with its final mode, write, fsync, rename, fsync the directory.

Readers see the old file or the new one, never half of one; after a crash at any moment the
file is whole or absent, and a stray ``<name>.tmp`` is the only trace (callers that keep a
directory of such files remove those at start). A secret's temp file is created with its
final mode, so it is never readable by others, not even briefly.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def write_durably(
    path: Path, parts: bytes | Iterable[bytes], mode: int = 0o600, *, replace: bool = True
) -> None:
    """Write ``parts`` to ``path`` durably; raise OSError (``path`` unchanged) on failure.

    With ``replace=False`` an existing ``path`` is left alone and FileExistsError is raised,
    without a check-then-write race (the rename is a hard link that fails if it exists).
    """
    temp = path.with_name(path.name + TEMP_SUFFIX)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW
    descriptor = os.open(temp, flags, mode)
    try:
        try:
            os.fchmod(descriptor, mode)  # the umask may have removed bits we want
            _write_all(descriptor, [parts] if isinstance(parts, bytes) else parts)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        if replace:
            os.replace(temp, path)
        else:
            os.link(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    fsync_directory(path.parent)


def _write_all(descriptor: int, parts: Iterable[bytes]) -> None:
    """Write every part with ``writev``, without joining them, resuming after short writes."""
    views = [memoryview(part) for part in parts if part]
    while views:
        written = os.writev(descriptor, views)
        if written == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if written:
            views[0] = views[0][written:]


def fsync_directory(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def unlink_durably(path: Path) -> None:
    """Remove ``path`` (if present) and make the removal durable."""
    path.unlink(missing_ok=True)
    fsync_directory(path.parent)
