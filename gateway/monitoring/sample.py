"""One reading of everything health and metrics report: intake, queues, badges, ledger, disk.

A ``Sampler`` keeps a database connection of its own and reads a ``GatewaySample`` per
request; nothing here writes. The quarantine's use is summed from its directory, which its
own quota keeps small.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.alerts.live import AlertChannel
from gateway.alerts.webhooks import AlertWebhooks
from gateway.datadir import GatewayDataDir
from gateway.intake.intake import QUARANTINE_DIR
from gateway.intake.quarantine import COUNTS_DIR
from gateway.intake.service import IntakeProbe, IntakeService
from gateway.storage import Storage
from gateway.storage.badge_states import BadgeState
from gateway.storage.checkpoints import CheckpointRow


@dataclass(frozen=True)
class DiskUse:
    """The filesystem of the data directory."""

    free_bytes: int
    """What an unprivileged writer may still use."""
    total_bytes: int


@dataclass(frozen=True)
class QuarantineUse:
    """What the quarantine directory holds."""

    files: int
    bytes: int


@dataclass(frozen=True)
class GatewaySample:
    """Everything ``/healthz`` and ``/metrics`` report, read at ``at_ns``."""

    at_ns: int
    intake: IntakeProbe
    webhook_queued: int
    """Alerts waiting for a webhook, over every webhook."""
    webhook_undelivered: int
    """Alerts given up on (written to the undelivered file) since the start."""
    live_subscribers: int
    enrolled_badges: int
    """Badges enrolled and not revoked."""
    badges: tuple[BadgeState, ...]
    """Each unrevoked badge that has reported, with its presence and last heartbeat."""
    ledger_size: int
    last_checkpoint: CheckpointRow | None
    disk: DiskUse
    quarantine: QuarantineUse

    @property
    def connected_badges(self) -> int:
        """Badges whose last word was that they are online."""
        return sum(1 for badge in self.badges if badge.online)


class Sampler:
    """Reads a GatewaySample from the running daemon's parts and its own database connection."""

    def __init__(
        self,
        data_dir: GatewayDataDir,
        intake: IntakeService,
        webhooks: AlertWebhooks,
        channel: AlertChannel,
        *,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        """Read from these parts; ``open`` opens the database connection."""
        self._data_dir = data_dir
        self._intake = intake
        self._webhooks = webhooks
        self._channel = channel
        self._clock = clock
        self._storage: Storage | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        """Open the sampler's own database connection."""
        with self._lock:
            if self._storage is None:
                self._storage = self._data_dir.storage()

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            if self._storage is not None:
                self._storage.close()
                self._storage = None

    def sample(self) -> GatewaySample:
        """Read everything now; StorageError if the database cannot be read."""
        with self._lock:
            if self._storage is None:
                self._storage = self._data_dir.storage()
            storage = self._storage
            enrolled = storage.badges.count_active()
            badges = tuple(storage.badge_states.of_active_badges())
            ledger_size = storage.leaves.size()
            last = storage.checkpoints.latest()
        counts = self._webhooks.counts().values()
        return GatewaySample(
            at_ns=self._clock(),
            intake=self._intake.probe(),
            webhook_queued=sum(count.queued for count in counts),
            webhook_undelivered=sum(count.undelivered for count in counts),
            live_subscribers=self._channel.subscribers,
            enrolled_badges=enrolled,
            badges=badges,
            ledger_size=ledger_size,
            last_checkpoint=last,
            disk=disk_use(self._data_dir.root),
            quarantine=quarantine_use(self._data_dir.root / QUARANTINE_DIR),
        )


def disk_use(path: Path) -> DiskUse:
    """Free and total bytes of the filesystem holding ``path``."""
    stats = os.statvfs(path)
    return DiskUse(stats.f_bavail * stats.f_frsize, stats.f_blocks * stats.f_frsize)


def quarantine_use(directory: Path) -> QuarantineUse:
    """How many files, and bytes, the quarantine holds (its tallies aside)."""
    files = size = 0
    for folder, subfolders, names in os.walk(directory):
        if Path(folder) == directory and COUNTS_DIR in subfolders:
            subfolders.remove(COUNTS_DIR)
        for name in names:
            try:
                size += (Path(folder) / name).stat().st_size
            except FileNotFoundError:
                continue  # removed while counting
            files += 1
    return QuarantineUse(files, size)
