"""The free-space reserve: room on the data directory's disk kept for alerts and evidence.

Below the reserve only what the gateway must keep is written (alerts, receipts, segments,
the ledger); what can be lost without losing evidence (the quarantine's bytes) is refused
first (decision 1701). The state is read with one ``statvfs``, cheap enough to ask before
every quarantined message.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from gateway.config import ReserveSettings
from gateway.errors import StorageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiskState:
    """The data directory's file system as the console shows it."""

    free_bytes: int
    """What an unprivileged process may still write."""
    total_bytes: int
    reserve_bytes: int
    """The reserve in bytes: the larger of the configured bytes and percentage."""

    @property
    def low(self) -> bool:
        """True when free space is at or below the reserve."""
        return self.free_bytes <= self.reserve_bytes


class DiskReserve:
    """The reserve on the file system holding ``path``."""

    def __init__(self, path: Path, settings: ReserveSettings | None = None) -> None:
        """Watch the file system of ``path`` (which must exist) against ``settings``."""
        self.path = Path(path)
        self.settings = settings or ReserveSettings()

    def state(self) -> DiskState:
        """Free space, size and reserve now; StorageError if the file system cannot be read."""
        try:
            stats = os.statvfs(self.path)
        except OSError as error:
            raise StorageError(f"cannot read free space of {self.path}: {error}") from None
        total = stats.f_blocks * stats.f_frsize
        reserve = max(self.settings.bytes, int(total * self.settings.percent / 100))
        return DiskState(
            free_bytes=stats.f_bavail * stats.f_frsize, total_bytes=total, reserve_bytes=reserve
        )

    def state_or_none(self) -> DiskState | None:
        """``state()``, or None (logged) when the file system cannot be read: for pages."""
        try:
            return self.state()
        except StorageError:
            log.exception("cannot read the free space of the data directory")
            return None

    def room_for(self, size: int) -> bool:
        """True when ``size`` more bytes still leave the reserve free."""
        state = self.state()
        return state.free_bytes - size > state.reserve_bytes
