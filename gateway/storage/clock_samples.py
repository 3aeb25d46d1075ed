"""Badge clock samples as stored: each heartbeat's clocks, the last few per badge and boot."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.storage.database import Database


@dataclass(frozen=True)
class ClockSample:
    """One heartbeat's clocks: the badge's two, read when sent, and the gateway's on receipt."""

    boot: int
    mono_ns: int
    badge_wall_ns: int
    gateway_wall_ns: int

    @property
    def offset_ns(self) -> int:
        """Gateway receive time minus badge wall time: the offset plus the transit delay."""
        return self.gateway_wall_ns - self.badge_wall_ns


class ClockSamples:
    """The ``clock_samples`` table."""

    def __init__(self, db: Database) -> None:
        """Use ``db``."""
        self._db = db

    def add(self, badge_id: str, sample: ClockSample, *, keep: int) -> None:
        """Keep ``sample`` (a repeated heartbeat is kept once) and prune its boot's samples
        to the newest ``keep``."""
        with self._db.transaction():
            self._db.execute(
                "INSERT INTO clock_samples (badge_id, boot, mono_ns, badge_wall_ns,"
                " gateway_wall_ns) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    badge_id,
                    sample.boot,
                    sample.mono_ns,
                    sample.badge_wall_ns,
                    sample.gateway_wall_ns,
                ),
            )
            self._db.execute(
                "DELETE FROM clock_samples WHERE badge_id = ? AND boot = ? AND mono_ns <"
                " (SELECT mono_ns FROM clock_samples WHERE badge_id = ? AND boot = ?"
                "  ORDER BY mono_ns DESC LIMIT 1 OFFSET ?)",
                (badge_id, sample.boot, badge_id, sample.boot, keep - 1),
            )

    def of_boot(self, badge_id: str, boot: int) -> list[ClockSample]:
        """The kept samples of one boot of a badge, oldest first."""
        rows = self._db.fetch_all(
            "SELECT boot, mono_ns, badge_wall_ns, gateway_wall_ns FROM clock_samples"
            " WHERE badge_id = ? AND boot = ? ORDER BY mono_ns",
            (badge_id, boot),
        )
        return [ClockSample(*row) for row in rows]
