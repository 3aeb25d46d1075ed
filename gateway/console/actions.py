"""What console users do to an incident: acknowledge and resolve its alert, hold it for court.

Each action is a row (``alert_actions``, or the incident's hold flag) and a custody entry,
written in one transaction, so the custody log and the console never disagree.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Literal

from gateway.errors import ConsoleError
from gateway.ledger.custody import CustodyEntry, CustodyLog
from gateway.ledger.ledger import write_transaction
from gateway.storage.incident_index import IncidentIndex, IncidentStatus

AlertActionKind = Literal["acknowledge", "resolve"]
_NEXT_STATUS: dict[str, IncidentStatus] = {"acknowledge": "acknowledged", "resolve": "resolved"}


@dataclass(frozen=True)
class AlertAction:
    """Someone acknowledged or resolved an incident's alert."""

    badge_id: str
    incident_id: str
    action: str
    username: str
    at_ns: int
    ledger_index: int


class AlertDesk:
    """Acknowledgements, resolutions and legal holds, with their custody entries."""

    def __init__(
        self, connection: sqlite3.Connection, custody: CustodyLog, index: IncidentIndex
    ) -> None:
        """Write through ``connection``, the custody log's own."""
        self._db = connection
        self._custody = custody
        self._index = index

    def act(
        self, username: str, badge_id: str, incident_id: str, action: AlertActionKind
    ) -> AlertAction:
        """Acknowledge or resolve an incident's alert; ConsoleError if that makes no sense now."""
        if action not in _NEXT_STATUS:
            raise ConsoleError(f"{action!r} is not something done to an alert")
        with write_transaction(self._db):
            summary = self._index.require(badge_id, incident_id)
            if summary.status == "resolved":
                raise ConsoleError(f"incident {incident_id} is resolved already")
            if action == "acknowledge" and summary.status == "acknowledged":
                raise ConsoleError(f"incident {incident_id} is acknowledged already")
            entry = self._custody.record(username, action, incident_id, detail={"badge": badge_id})
            self._db.execute(
                "INSERT INTO alert_actions (badge_id, incident_id, action, username, at_ns,"
                " ledger_index) VALUES (?, ?, ?, ?, ?, ?)",
                (badge_id, incident_id, action, username, entry.at_ns, entry.ledger_index),
            )
            self._index.set_status(badge_id, incident_id, _NEXT_STATUS[action])
        return AlertAction(badge_id, incident_id, action, username, entry.at_ns, entry.ledger_index)

    def actions(self, badge_id: str, incident_id: str) -> list[AlertAction]:
        """Every acknowledgement and resolution of an incident, oldest first."""
        rows = self._db.execute(
            "SELECT badge_id, incident_id, action, username, at_ns, ledger_index"
            " FROM alert_actions WHERE badge_id = ? AND incident_id = ? ORDER BY action_id",
            (badge_id, incident_id),
        ).fetchall()
        return [AlertAction(*row) for row in rows]

    def hold(
        self, username: str, badge_id: str, incident_id: str, held: bool, reason: str
    ) -> CustodyEntry:
        """Place (``held``) or release a legal hold; the reason (a case number) is required."""
        if not reason.strip():
            raise ConsoleError("a legal hold or its release needs a reason, such as a case number")
        with write_transaction(self._db):
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
        return entry
