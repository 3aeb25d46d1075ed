"""Alerts in the order they arrived, for a process that follows the intake from the database.

The console runs apart from the intake (decision 1740) and learns of each new alert by
reading the ``alerts`` rows past the last arrival number it has seen, with the wearer and the
registered location of the badge that sent it.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.storage.database import Database

FEED_BATCH = 64
"""Alerts one read returns at most; a reader that is behind reads again at once."""


@dataclass(frozen=True)
class ArrivedAlert:
    """One stored alert, as the live channel needs it."""

    arrival: int
    """Its place in the order alerts were stored (one more than the alert before)."""
    badge_id: str
    incident_id: str
    press_boot: int
    press_mono_ns: int
    press_wall_ns: int
    location: str
    received_wall_ns: int
    wearer: str
    registered_location: str


class AlertFeed:
    """The ``alerts`` table read by arrival number."""

    def __init__(self, db: Database) -> None:
        """Use ``db``."""
        self._db = db

    def last_arrival(self) -> int:
        """The arrival number of the newest stored alert (0 when there is none)."""
        row = self._db.fetch_one("SELECT COALESCE(MAX(arrival), 0) FROM alerts")
        return 0 if row is None else int(row[0])

    def after(self, arrival: int, limit: int = FEED_BATCH) -> list[ArrivedAlert]:
        """The alerts stored after ``arrival``, oldest first, at most ``limit`` of them."""
        rows = self._db.fetch_all(
            "SELECT a.arrival, a.badge_id, a.incident_id, a.press_boot, a.press_mono_ns,"
            " a.press_wall_ns, a.location, a.received_wall_ns, COALESCE(b.wearer, ''),"
            " COALESCE(b.location, '') FROM alerts a LEFT JOIN badges b"
            " ON b.badge_id = a.badge_id WHERE a.arrival > ? ORDER BY a.arrival LIMIT ?",
            (arrival, limit),
        )
        return [ArrivedAlert(*row) for row in rows]
