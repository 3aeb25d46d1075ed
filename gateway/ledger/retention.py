"""Retention: which incidents' footage is past its keeping time, and deleting it on the record.

Footage is kept ``[retention] days`` after its last segment arrived, then a custodian may
delete it. An incident on legal hold is never due. Deleting removes the sealed segments
from the vault (one another incident's segment also names is kept), records a custody
entry ``retention-delete`` and a retention deletion in one transaction; the incident,
segment and ledger rows stay, as the record that the footage existed and was deleted.
Export and playback of a deleted incident are refused with ``deletion_notice``.
"""

from __future__ import annotations

import hashlib

from gateway.alerts.live import iso_time
from gateway.errors import RetentionError, VaultError
from gateway.ledger.custody import CustodyLog
from gateway.storage import Storage
from gateway.storage.retention import DueIncident, RetentionDeletion

DAY_NS = 86_400 * 10**9


def due_incidents(storage: Storage, now_ns: int, days: int) -> list[DueIncident]:
    """Incidents last received more than ``days`` before ``now_ns``, not held, not deleted."""
    if days < 1:
        raise RetentionError(f"a retention period is at least one day, not {days}")
    return storage.retention.due(now_ns - days * DAY_NS)


def deletion(storage: Storage, badge_id: str, incident_id: str) -> RetentionDeletion | None:
    """The retention deletion of an incident's footage, or None while it is kept."""
    return storage.retention.deletion(badge_id, incident_id)


def deletion_notice(storage: Storage, badge_id: str, incident_id: str) -> str | None:
    """Why the incident's footage cannot be exported or played, or None while it is kept."""
    found = deletion(storage, badge_id, incident_id)
    if found is None:
        return None
    return (
        f"the footage of incident {incident_id} of badge {badge_id} was deleted under "
        f"retention on {iso_time(found.deleted_at_ns)[:10]} by {found.actor}"
    )


def delete_incident_footage(
    custody: CustodyLog,
    incident: DueIncident,
    *,
    actor: str,
    justification: str,
) -> RetentionDeletion:
    """Delete a due incident's sealed segments from the vault, on the custody record.

    The custody log's storage holds the records and the vault. RetentionError if no
    justification is given, or the incident is on legal hold, already deleted or (now)
    not the one ``incident`` says.
    """
    justification = justification.strip()
    where = f"incident {incident.incident_id} of badge {incident.badge_id}"
    if not justification:
        raise RetentionError(f"deleting the footage of {where} needs a justification")
    storage = custody.storage
    records = storage.retention
    with storage.transaction():
        _check_still_due(storage, incident, where)
        shas = records.footage(incident.badge_id, incident.incident_id)
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
        done = RetentionDeletion(
            incident.badge_id,
            incident.incident_id,
            entry.at_ns,
            actor,
            len(shas),
            entry.ledger_index,
        )
        records.add(done)
        kept_elsewhere = {
            sha
            for sha in shas
            if records.kept_elsewhere(sha, incident.badge_id, incident.incident_id)
        }
    for sha in dict.fromkeys(shas):
        if sha not in kept_elsewhere:
            try:
                storage.vault.delete(sha)
            except VaultError as error:
                raise RetentionError(
                    f"{where}: {error}; the deletion is recorded, remove the segment by hand"
                ) from None
    return done


def _check_still_due(storage: Storage, incident: DueIncident, where: str) -> None:
    summary = storage.incident_index.get(incident.badge_id, incident.incident_id)
    if summary is not None and summary.legal_hold:
        raise RetentionError(f"{where} is on legal hold; its footage may not be deleted")
    if deletion(storage, incident.badge_id, incident.incident_id) is not None:
        raise RetentionError(f"the footage of {where} is already deleted")
    if storage.catalogue.incident(incident.badge_id, incident.incident_id) is None:
        raise RetentionError(f"the gateway holds no {where}")
