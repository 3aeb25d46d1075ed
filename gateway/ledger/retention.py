"""Retention: which incidents' footage is past its keeping time, and deleting it on the record.

Footage is kept ``[retention] days`` after its last segment arrived, then a custodian may
delete it. An incident on legal hold is never due. Deleting removes the sealed segment files
from the vault (a file another incident's segment also names is kept), records a custody
entry ``retention-delete`` and a row in ``retention_deletions`` in one transaction; the
incident, segment and ledger rows stay, as the record that the footage existed and was
deleted. Export and playback of a deleted incident are refused with ``deletion_notice``.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import astuple, dataclass

from gateway.alerts.live import iso_time
from gateway.errors import RetentionError
from gateway.ledger.custody import CustodyLog
from gateway.ledger.ledger import write_transaction
from gateway.storage.vault import DirectoryVault

DAY_NS = 86_400 * 10**9


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
    " GROUP BY i.badge_id, i.incident_id"
    " HAVING last_ns < ?"
    " ORDER BY last_ns, i.badge_id, i.incident_id"
)


def due_incidents(connection: sqlite3.Connection, now_ns: int, days: int) -> list[DueIncident]:
    """Incidents last received more than ``days`` before ``now_ns``, not held, not deleted."""
    if days < 1:
        raise RetentionError(f"a retention period is at least one day, not {days}")
    rows = connection.execute(_DUE, (now_ns - days * DAY_NS,)).fetchall()
    return [DueIncident(str(b), str(i), int(last), int(count)) for b, i, last, count in rows]


def deletion(
    connection: sqlite3.Connection, badge_id: str, incident_id: str
) -> RetentionDeletion | None:
    """The retention deletion of an incident's footage, or None while it is kept."""
    row = connection.execute(
        "SELECT badge_id, incident_id, deleted_at_ns, actor, segments, ledger_index"
        " FROM retention_deletions WHERE badge_id = ? AND incident_id = ?",
        (badge_id, incident_id),
    ).fetchone()
    return None if row is None else RetentionDeletion(*row)


def deletion_notice(connection: sqlite3.Connection, badge_id: str, incident_id: str) -> str | None:
    """Why the incident's footage cannot be exported or played, or None while it is kept."""
    found = deletion(connection, badge_id, incident_id)
    if found is None:
        return None
    return (
        f"the footage of incident {incident_id} of badge {badge_id} was deleted under "
        f"retention on {iso_time(found.deleted_at_ns)[:10]} by {found.actor}"
    )


def delete_incident_footage(
    connection: sqlite3.Connection,
    vault: DirectoryVault,
    custody: CustodyLog,
    incident: DueIncident,
    *,
    actor: str,
    justification: str,
) -> RetentionDeletion:
    """Delete a due incident's sealed segments from ``vault``, on the custody record.

    ``connection`` must be the custody log's. RetentionError if no justification is given,
    or the incident is on legal hold, already deleted or (now) not the one ``incident`` says.
    """
    justification = justification.strip()
    where = f"incident {incident.incident_id} of badge {incident.badge_id}"
    if not justification:
        raise RetentionError(f"deleting the footage of {where} needs a justification")
    with write_transaction(connection):
        _check_still_due(connection, incident, where)
        shas = [
            bytes(row[0])
            for row in connection.execute(
                "SELECT sealed_sha256 FROM segments WHERE badge_id = ? AND incident_id = ?"
                " ORDER BY seq",
                (incident.badge_id, incident.incident_id),
            )
        ]
        entry = custody.record(
            actor,
            "retention-delete",
            incident.incident_id,
            justification,
            detail={
                "badge": incident.badge_id,
                "segments": len(shas),
                "sha256_list": hashlib.sha256(b"".join(shas)).hexdigest(),
            },
        )
        deletion = RetentionDeletion(
            incident.badge_id,
            incident.incident_id,
            entry.at_ns,
            actor,
            len(shas),
            entry.ledger_index,
        )
        connection.execute(
            "INSERT INTO retention_deletions (badge_id, incident_id, deleted_at_ns, actor,"
            " segments, ledger_index) VALUES (?, ?, ?, ?, ?, ?)",
            astuple(deletion),
        )
        kept_elsewhere = {sha for sha in shas if _shared(connection, sha, incident)}
    for sha in dict.fromkeys(shas):
        if sha not in kept_elsewhere:
            try:
                vault.path_for(sha).unlink(missing_ok=True)
            except OSError as error:
                raise RetentionError(
                    f"{where}: segment {sha.hex()} could not be removed from {vault.root} "
                    f"({error}); the deletion is recorded, remove the file by hand"
                ) from None
    return deletion


def _check_still_due(connection: sqlite3.Connection, incident: DueIncident, where: str) -> None:
    row = connection.execute(
        "SELECT legal_hold FROM incident_index WHERE badge_id = ? AND incident_id = ?",
        (incident.badge_id, incident.incident_id),
    ).fetchone()
    if row is not None and row[0]:
        raise RetentionError(f"{where} is on legal hold; its footage may not be deleted")
    if deletion(connection, incident.badge_id, incident.incident_id) is not None:
        raise RetentionError(f"the footage of {where} is already deleted")
    exists = connection.execute(
        "SELECT 1 FROM incidents WHERE badge_id = ? AND incident_id = ?",
        (incident.badge_id, incident.incident_id),
    ).fetchone()
    if exists is None:
        raise RetentionError(f"the gateway holds no {where}")


def _shared(connection: sqlite3.Connection, sha: bytes, incident: DueIncident) -> bool:
    """Whether a segment of another incident whose footage is kept names these bytes."""
    row = connection.execute(
        "SELECT 1 FROM segments s LEFT JOIN retention_deletions d"
        " ON d.badge_id = s.badge_id AND d.incident_id = s.incident_id"
        " WHERE s.sealed_sha256 = ? AND d.badge_id IS NULL"
        " AND NOT (s.badge_id = ? AND s.incident_id = ?) LIMIT 1",
        (sha, incident.badge_id, incident.incident_id),
    ).fetchone()
    return row is not None
