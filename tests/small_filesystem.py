"""A file system that runs out of space: a tmpfs of a chosen size, so a test meets the file
system's own ENOSPC (needs root), and, where mounting is not allowed, a capacity imposed on the
writes of the modules under test (:class:`CappedWrites`), failing them exactly as the kernel
fails a write to a full disk."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

FILLER = "filler.bin"
"""The file :func:`fill` writes to use up a file system's space."""


@contextlib.contextmanager
def small_filesystem(mount_point: Path, size_bytes: int) -> Iterator[Path]:
    """Mount a tmpfs of ``size_bytes`` at ``mount_point`` (created) for the block.

    The calling test is skipped, saying why, where mounting is not allowed: it needs root.
    """
    mount_point.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; the real ENOSPC path is not exercised")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"mounting a small tmpfs is not permitted here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


def fill(directory: Path) -> None:
    """Write ``directory/FILLER`` until its file system has no byte left."""
    descriptor = os.open(directory / FILLER, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for block_size in (1 << 20, 1 << 12):  # then the last pages, a page at a time
            block = bytes(block_size)
            while True:
                try:
                    os.write(descriptor, block)
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(descriptor)


def free(directory: Path) -> None:
    """Remove what :func:`fill` wrote."""
    (directory / FILLER).unlink()


class CappedWrites:
    """Fault injection: the ``os`` module as the modules under test see it, whose writes to
    files under ``root`` behave as on a file system of ``capacity`` bytes.

    Space used is the size of every file under ``root`` at the moment of the write, so
    deleting a file frees its bytes, as on a disk. A write that fits is made; one that
    would cross the capacity writes what fits and returns the short count; one with no
    room raises ``OSError(ENOSPC)``, the kernel's own answer. Writes to files elsewhere,
    and every other call, go straight to ``os``. ``capacity=None`` is a disk with room.
    """

    def __init__(self, root: Path, capacity: int | None = None) -> None:
        self.root = root.resolve()
        self.capacity = capacity
        self.refused = 0
        """How many writes were answered with ENOSPC."""

    def install(self, monkeypatch: pytest.MonkeyPatch, *modules: ModuleType) -> CappedWrites:
        """Give each of ``modules`` this view of ``os`` for the rest of the test."""
        for module in modules:
            monkeypatch.setattr(module, "os", _CappedOs(self))
        return self

    def fill(self, leaving: int = 0) -> None:
        """From now on only ``leaving`` more bytes fit."""
        self.capacity = self.used() + leaving

    def free(self) -> None:
        """Room again, as after an operator cleared the disk."""
        self.capacity = None

    def used(self) -> int:
        """The bytes of every file under ``root``."""
        return sum(
            (Path(directory) / name).lstat().st_size
            for directory, _, names in os.walk(self.root)
            for name in names
        )

    def allow(self, descriptor: int, offset: int | None, length: int) -> int:
        """How many of ``length`` bytes at ``offset`` (None: the file position) may be written."""
        if self.capacity is None or length == 0 or not self._under_root(descriptor):
            return length
        size = os.fstat(descriptor).st_size
        if offset is not None:
            start = offset
        elif fcntl.fcntl(descriptor, fcntl.F_GETFL) & os.O_APPEND:
            start = size
        else:
            start = os.lseek(descriptor, 0, os.SEEK_CUR)
        growth = max(0, start + length - size)
        room = max(0, self.capacity - self.used())
        if growth <= room:
            return length
        allowed = length - (growth - room)
        if allowed <= 0:
            self.refused += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return allowed

    def _under_root(self, descriptor: int) -> bool:
        target = Path(os.readlink(f"/proc/self/fd/{descriptor}"))
        return target.is_relative_to(self.root)


class _CappedOs:
    """``os`` with ``write``, ``pwrite`` and ``writev`` held to a :class:`CappedWrites`."""

    def __init__(self, cap: CappedWrites) -> None:
        self._cap = cap

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def write(self, descriptor: int, data: bytes | memoryview, /) -> int:
        allowed = self._cap.allow(descriptor, None, len(data))
        return os.write(descriptor, memoryview(data)[:allowed])

    def pwrite(self, descriptor: int, data: bytes | memoryview, offset: int, /) -> int:
        allowed = self._cap.allow(descriptor, offset, len(data))
        return os.pwrite(descriptor, memoryview(data)[:allowed], offset)

    def writev(self, descriptor: int, buffers: Sequence[bytes | memoryview], /) -> int:
        views = [memoryview(buffer).cast("B") for buffer in buffers]
        allowed = self._cap.allow(descriptor, None, sum(len(view) for view in views))
        kept = []
        for view in views:
            kept.append(view[:allowed])
            allowed -= len(kept[-1])
        return os.writev(descriptor, kept)
