"""The badge's heartbeat: health, storage, ring state and both clocks, read now."""

from __future__ import annotations

import time

from badge.outbox import Outbox
from badge.ring import Ring
from evidence.messages import Heartbeat


def read_heartbeat(
    badge_id: str, ring: Ring, outbox: Outbox, *, dropped_frames: int = 0, recording: bool = False
) -> Heartbeat:
    """A heartbeat for ``badge_id`` from its ring and outbox as they are at this moment.

    Battery is None: no battery gauge is wired to the badge yet, and a guess would mislead.
    """
    status = ring.status()
    return Heartbeat(
        badge=badge_id,
        boot=ring.boot,
        mono_ns=time.monotonic_ns(),
        wall_ns=time.time_ns(),
        battery_percent=None,
        storage_free_bytes=status.free_bytes,
        ring_bytes=status.bytes_used,
        ring_segments=status.segments,
        pinned_segments=status.pinned_segments,
        dropped_frames=dropped_frames,
        outbox_pending=len(outbox.pending()),
        recording=recording,
    )
