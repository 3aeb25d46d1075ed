"""What console users do to an incident: acknowledge and resolve its alert, hold it for court.

Each action is a row (an alert action, or the incident's hold flag) and a custody entry,
written in one transaction, so the custody log and the console never disagree.
"""

from __future__ import annotations

from typing import Literal

from gateway.errors import ConsoleError
from gateway.ledger.custody import CustodyEntry, CustodyLog
from gateway.storage.alert_actions import AlertAction
from gateway.storage.incident_index import IncidentStatus

AlertActionKind = Literal["acknowledge", "resolve"]
_NEXT_STATUS: dict[str, IncidentStatus] = {"acknowledge": "acknowledged", "resolve": "resolved"}


class AlertDesk:
    """Acknowledgements, resolutions and legal holds, with their custody entries."""

    def __init__(self, custody: CustodyLog) -> None:
        """Record through ``custody``, and the rows in its storage."""
        self._custody = custody
        self._storage = custody.storage
        self._index = custody.storage.incident_index

    def act(
        self, username: str, badge_id: str, incident_id: str, action: AlertActionKind
    ) -> AlertAction:
        """Acknowledge or resolve an incident's alert; ConsoleError if that makes no sense now."""
        if action not in _NEXT_STATUS:
            raise ConsoleError(f"{action!r} is not something done to an alert")
        with self._storage.transaction():
            summary = self._index.require(badge_id, incident_id)
            if summary.status == "resolved":
                raise ConsoleError(f"incident {incident_id} is resolved already")
            if action == "acknowledge" and summary.status == "acknowledged":
                raise ConsoleError(f"incident {incident_id} is acknowledged already")
            entry = self._custody.record(username, action, incident_id, detail={"badge": badge_id})
            done = AlertAction(
                badge_id, incident_id, action, username, entry.at_ns, entry.ledger_index
            )
            self._storage.alert_actions.add(done)
            self._index.set_status(badge_id, incident_id, _NEXT_STATUS[action])
        return done

    def actions(self, badge_id: str, incident_id: str) -> list[AlertAction]:
        """Every acknowledgement and resolution of an incident, oldest first."""
        return self._storage.alert_actions.of_incident(badge_id, incident_id)

    def hold(
        self, username: str, badge_id: str, incident_id: str, held: bool, reason: str
    ) -> CustodyEntry:
        """Place (``held``) or release a legal hold; the reason (a case number) is required."""
        if not reason.strip():
            raise ConsoleError("a legal hold or its release needs a reason, such as a case number")
        with self._storage.transaction():
            summary = self._index.require(badge_id, incident_id)
            if summary.legal_hold == held:
                state = "under a legal hold" if held else "not under a legal hold"
                raise ConsoleError(f"incident {incident_id} is {state} already")
            entry = self._custody.record(
                username,
                "legal-hold" if held else "release-hold",
                incident_id,
                reason,
                detail={"badge": badge_id},
            )
            self._index.set_legal_hold(badge_id, incident_id, held)
        # the store's own hold too, where it has one (S3 Object Lock): a hold placed there
        # keeps the footage even from the gateway's own account
        for sha in dict.fromkeys(self._storage.retention.footage(badge_id, incident_id)):
            self._storage.vault.hold(sha, held)
        return entry
