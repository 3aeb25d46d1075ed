"""Retention as stored: which incidents' footage is due, and the record of each deletion."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from gateway.storage.database import Database, blob


@dataclass(frozen=True)
class DueIncident:
    """An incident whose footage is past its retention period and not on legal hold."""

    badge_id: str
    incident_id: str
    last_received_ns: int
    """Gateway time the incident's last segment (or, without any, its record) arrived."""
    segments: int


@dataclass(frozen=True)
class RetentionDeletion:
    """The record of one incident's footage deleted under retention."""

    badge_id: str
    incident_id: str
    deleted_at_ns: int
    actor: str
    segments: int
    ledger_index: int


_DUE = (
    "SELECT i.badge_id, i.incident_id,"
    " COALESCE(MAX(s.received_wall_ns), i.received_wall_ns) AS last_ns, COUNT(s.seq)"
    " FROM incidents i"
    " LEFT JOIN segments s ON s.badge_id = i.badge_id AND s.incident_id = i.incident_id"
    " LEFT JOIN incident_index x ON x.badge_id = i.badge_id AND x.incident_id = i.incident_id"
    " LEFT JOIN retention_deletions d"
    " ON d.badge_id = i.badge_id AND d.incident_id = i.incident_id"
    " WHERE COALESCE(x.legal_hold, 0) = 0 AND d.badge_id IS NULL"
    " GROUP BY i.badge_id, i.incident_id, i.received_wall_ns"
    " HAVING COALESCE(MAX(s.received_wall_ns), i.received_wall_ns) < ?"
    " ORDER BY last_ns, i.badge_id, i.incident_id"
)


class RetentionRecords:
    """The ``retention_deletions`` table and the queries retention makes of the catalogue."""

    def __init__(self, db: Database) -> None:
        """Use ``db``."""
        self._db = db

    def due(self, last_received_before_ns: int) -> list[DueIncident]:
        """Incidents last received before the given time, not held and not deleted, oldest
        first."""
        rows = self._db.fetch_all(_DUE, (last_received_before_ns,))
        return [DueIncident(str(b), str(i), int(last), int(count)) for b, i, last, count in rows]

    def deletion(self, badge_id: str, incident_id: str) -> RetentionDeletion | None:
        """The retention deletion of an incident's footage, or None while it is kept."""
        row = self._db.fetch_one(
            "SELECT badge_id, incident_id, deleted_at_ns, actor, segments, ledger_index"
            " FROM retention_deletions WHERE badge_id = ? AND incident_id = ?",
            (badge_id, incident_id),
        )
        return None if row is None else RetentionDeletion(*row)

    def add(self, deletion: RetentionDeletion) -> None:
        """Record a deletion (inside the caller's transaction, with its custody entry)."""
        self._db.execute(
            "INSERT INTO retention_deletions (badge_id, incident_id, deleted_at_ns, actor,"
            " segments, ledger_index) VALUES (?, ?, ?, ?, ?, ?)",
            (
                deletion.badge_id,
                deletion.incident_id,
                deletion.deleted_at_ns,
                deletion.actor,
                deletion.segments,
                deletion.ledger_index,
            ),
        )

    def footage(self, badge_id: str, incident_id: str) -> list[bytes]:
        """The SHA-256 of each sealed segment of an incident, in seq order."""
        rows = self._db.fetch_all(
            "SELECT sealed_sha256 FROM segments WHERE badge_id = ? AND incident_id = ?"
            " ORDER BY seq",
            (badge_id, incident_id),
        )
        return [blob(row[0]) for row in rows]

    def kept_elsewhere(self, sealed_sha256: bytes, badge_id: str, incident_id: str) -> bool:
        """Whether a segment of another incident whose footage is kept names these bytes."""
        row = self._db.fetch_one(
            "SELECT 1 FROM segments s LEFT JOIN retention_deletions d"
            " ON d.badge_id = s.badge_id AND d.incident_id = s.incident_id"
            " WHERE s.sealed_sha256 = ? AND d.badge_id IS NULL"
            " AND NOT (s.badge_id = ? AND s.incident_id = ?) LIMIT 1",
            (sealed_sha256, badge_id, incident_id),
        )
        return row is not None

    def footage_kept(self) -> Iterator[bytes]:
        """The SHA-256 of every sealed segment the vault must hold: each stored segment's,
        unless retention deleted its incident's footage; one at a time."""
        for (digest,) in self._db.scan(
            "SELECT DISTINCT s.sealed_sha256 FROM segments s LEFT JOIN retention_deletions d"
            " ON d.badge_id = s.badge_id AND d.incident_id = s.incident_id"
            " WHERE d.badge_id IS NULL"
        ):
            yield blob(digest)
