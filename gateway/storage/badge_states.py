"""Each badge's latest known state: presence, health from its heartbeats, and its clock estimate."""

from __future__ import annotations

from dataclasses import dataclass

from evidence.messages import Heartbeat
from gateway.storage.database import Database, Row


@dataclass(frozen=True)
class BadgeState:
    """What the gateway last heard from a badge (None: never reported)."""

    badge_id: str
    online: bool
    status_boot: int | None
    status_wall_ns: int | None
    boot: int | None
    battery_percent: int | None
    storage_free_bytes: int | None
    ring_bytes: int | None
    ring_segments: int | None
    pinned_segments: int | None
    dropped_frames: int | None
    outbox_pending: int | None
    recording: bool | None
    last_heartbeat_wall_ns: int | None
    clock_offset_ns: int | None
    clock_drift_ppb: int | None
    clock_error_ns: int | None
    clock_samples: int | None
    battery_millivolts: int | None = None
    battery_rate_millipercent_per_hour: int | None = None
    soc_temperature_millicelsius: int | None = None
    clock_synchronised: bool | None = None
    """Whether the badge's kernel said its wall clock was synchronised (None: unknown)."""


@dataclass(frozen=True)
class ClockReading:
    """A badge's clock estimate at one heartbeat, as the badge list shows it."""

    offset_ns: int
    drift_ppb: int
    error_ns: int
    samples: int


_COLUMNS = (
    "badge_id, online, status_boot, status_wall_ns, boot, battery_percent, storage_free_bytes,"
    " ring_bytes, ring_segments, pinned_segments, dropped_frames, outbox_pending, recording,"
    " last_heartbeat_wall_ns, clock_offset_ns, clock_drift_ppb, clock_error_ns, clock_samples,"
    " battery_millivolts, battery_rate_millipercent_per_hour, soc_temperature_millicelsius,"
    " clock_synchronised"
)


class BadgeStates:
    """The ``badge_state`` table."""

    def __init__(self, db: Database) -> None:
        """Use ``db``."""
        self._db = db

    def heartbeat(
        self, heartbeat: Heartbeat, received_wall_ns: int, clock: ClockReading | None
    ) -> None:
        """Record a verified heartbeat and the badge's clock estimate after it.

        A heartbeat also shows the badge is online.
        """
        offset = error = drift = samples = None
        if clock is not None:
            offset, error = clock.offset_ns, clock.error_ns
            drift, samples = clock.drift_ppb, clock.samples
        self._db.execute(
            "INSERT INTO badge_state (badge_id, online, boot, battery_percent,"
            " storage_free_bytes, ring_bytes, ring_segments, pinned_segments, dropped_frames,"
            " outbox_pending, recording, last_heartbeat_wall_ns, clock_offset_ns,"
            " clock_drift_ppb, clock_error_ns, clock_samples, battery_millivolts,"
            " battery_rate_millipercent_per_hour, soc_temperature_millicelsius,"
            " clock_synchronised)"
            " VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (badge_id) DO UPDATE SET online = 1, boot = excluded.boot,"
            " battery_percent = excluded.battery_percent,"
            " storage_free_bytes = excluded.storage_free_bytes,"
            " ring_bytes = excluded.ring_bytes, ring_segments = excluded.ring_segments,"
            " pinned_segments = excluded.pinned_segments,"
            " dropped_frames = excluded.dropped_frames,"
            " outbox_pending = excluded.outbox_pending, recording = excluded.recording,"
            " last_heartbeat_wall_ns = excluded.last_heartbeat_wall_ns,"
            " clock_offset_ns = excluded.clock_offset_ns,"
            " clock_drift_ppb = excluded.clock_drift_ppb,"
            " clock_error_ns = excluded.clock_error_ns, clock_samples = excluded.clock_samples,"
            " battery_millivolts = excluded.battery_millivolts,"
            " battery_rate_millipercent_per_hour = excluded.battery_rate_millipercent_per_hour,"
            " soc_temperature_millicelsius = excluded.soc_temperature_millicelsius,"
            " clock_synchronised = excluded.clock_synchronised",
            (
                heartbeat.badge,
                heartbeat.boot,
                heartbeat.battery_percent,
                heartbeat.storage_free_bytes,
                heartbeat.ring_bytes,
                heartbeat.ring_segments,
                heartbeat.pinned_segments,
                heartbeat.dropped_frames,
                heartbeat.outbox_pending,
                int(heartbeat.recording),
                received_wall_ns,
                offset,
                drift,
                error,
                samples,
                heartbeat.battery_millivolts,
                heartbeat.battery_rate_millipercent_per_hour,
                heartbeat.soc_temperature_millicelsius,
                None if heartbeat.clock_synchronised is None else int(heartbeat.clock_synchronised),
            ),
        )

    def status(self, badge_id: str, online: bool, boot: int, received_wall_ns: int) -> None:
        """Record a badge's presence: its ``online`` status, or its last will (offline)."""
        self._db.execute(
            "INSERT INTO badge_state (badge_id, online, status_boot, status_wall_ns)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (badge_id) DO UPDATE SET online = excluded.online,"
            " status_boot = excluded.status_boot, status_wall_ns = excluded.status_wall_ns",
            (badge_id, int(online), boot, received_wall_ns),
        )

    def get(self, badge_id: str) -> BadgeState | None:
        """The badge's state, or None if it has never reported."""
        row = self._db.fetch_one(
            f"SELECT {_COLUMNS} FROM badge_state WHERE badge_id = ?",  # noqa: S608
            (badge_id,),
        )
        return None if row is None else _state(row)

    def of_active_badges(self) -> list[BadgeState]:
        """The state of every badge that has reported and is not revoked, by badge id."""
        rows = self._db.fetch_all(
            f"SELECT {_COLUMNS} FROM badge_state WHERE badge_id IN"  # noqa: S608
            " (SELECT badge_id FROM badges WHERE revoked_at_ns IS NULL) ORDER BY badge_id"
        )
        return [_state(row) for row in rows]


def _state(row: Row) -> BadgeState:
    """A BadgeState from a row in ``_COLUMNS`` order."""
    values = list(row)
    values[1] = bool(values[1])
    values[12] = None if values[12] is None else bool(values[12])
    values[21] = None if values[21] is None else bool(values[21])
    return BadgeState(*values)
