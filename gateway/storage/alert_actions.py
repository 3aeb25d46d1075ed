"""Acknowledgements and resolutions of alerts as stored, each naming its custody entry."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.storage.database import Database


@dataclass(frozen=True)
class AlertAction:
    """Someone acknowledged or resolved an incident's alert."""

    badge_id: str
    incident_id: str
    action: str
    username: str
    at_ns: int
    ledger_index: int


class AlertActions:
    """The ``alert_actions`` table (``gateway.console.actions`` writes it with custody)."""

    def __init__(self, db: Database) -> None:
        """Use ``db``."""
        self._db = db

    def add(self, action: AlertAction) -> None:
        """Record an action (inside the caller's transaction, with its custody entry)."""
        self._db.execute(
            "INSERT INTO alert_actions (badge_id, incident_id, action, username, at_ns,"
            " ledger_index) VALUES (?, ?, ?, ?, ?, ?)",
            (
                action.badge_id,
                action.incident_id,
                action.action,
                action.username,
                action.at_ns,
                action.ledger_index,
            ),
        )

    def of_incident(self, badge_id: str, incident_id: str) -> list[AlertAction]:
        """Every acknowledgement and resolution of an incident, oldest first."""
        rows = self._db.fetch_all(
            "SELECT badge_id, incident_id, action, username, at_ns, ledger_index"
            " FROM alert_actions WHERE badge_id = ? AND incident_id = ? ORDER BY action_id",
            (badge_id, incident_id),
        )
        return [AlertAction(*row) for row in rows]
