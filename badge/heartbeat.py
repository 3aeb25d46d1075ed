"""The badge's heartbeat: health, storage, ring state and both clocks, read now."""

from __future__ import annotations

import time

from badge.health import HealthReading, read_health
from badge.outbox import Outbox
from badge.ring import Ring
from evidence.messages import Heartbeat


def read_heartbeat(
    badge_id: str,
    ring: Ring,
    outbox: Outbox,
    health: HealthReading | None = None,
    *,
    dropped_frames: int = 0,
    recording: bool = False,
) -> Heartbeat:
    """A heartbeat for ``badge_id`` from its ring, outbox and ``health`` as they are now.

    Without ``health``, temperature and clock are read now and the battery is unknown (no
    gauge). Battery, temperature and clock sync state are None where no sensor says them.
    """
    if health is None:
        health = read_health(None)
    status = ring.status()
    battery = health.battery
    return Heartbeat(
        badge=badge_id,
        boot=ring.boot,
        mono_ns=time.monotonic_ns(),
        wall_ns=time.time_ns(),
        battery_percent=None if battery is None else battery.percent,
        storage_free_bytes=status.free_bytes,
        ring_bytes=status.bytes_used,
        ring_segments=status.segments,
        pinned_segments=status.pinned_segments,
        dropped_frames=dropped_frames,
        outbox_pending=len(outbox.pending()),
        recording=recording,
        battery_millivolts=None if battery is None else battery.millivolts,
        battery_rate_millipercent_per_hour=(
            None if battery is None else battery.rate_millipercent_per_hour
        ),
        soc_temperature_millicelsius=health.soc_temperature_millicelsius,
        clock_synchronised=health.clock_synchronised,
    )
