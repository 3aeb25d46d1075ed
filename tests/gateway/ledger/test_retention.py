"""Retention: due selection, deletion on the custody record, refused export, custodian only."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from badge.media import EncodedSegment
from gateway.errors import ExportError, RetentionError
from gateway.intake.intake import VAULT_DIR
from gateway.ledger.custody import CustodyLog
from gateway.ledger.ledger import Ledger, open_ledger
from gateway.ledger.retention import (
    DAY_NS,
    delete_incident_footage,
    deletion,
    due_incidents,
)
from gateway.storage.incident_index import IncidentIndex
from gateway.storage.vault import DirectoryVault
from tests.gateway.badge_messages import Hospital, make_hospital
from tests.gateway.console_support import WebClient, running_console
from tests.gateway.court_package import deliver_incident, export, record_footage


@cache
def _footage() -> tuple[EncodedSegment, ...]:
    return tuple(record_footage(2.0))


@dataclass
class Stored:
    """A hospital holding one complete incident, with its database opened."""

    hospital: Hospital
    incident_id: str
    connection: sqlite3.Connection
    ledger: Ledger
    vault: DirectoryVault

    def last_received_ns(self) -> int:
        """When the incident's last segment arrived."""
        (last,) = self.connection.execute(
            "SELECT MAX(received_wall_ns) FROM segments WHERE incident_id = ?",
            (self.incident_id,),
        ).fetchone()
        return int(last)

    def shas(self) -> list[bytes]:
        """The sealed segments' SHA-256s."""
        rows = self.connection.execute(
            "SELECT sealed_sha256 FROM segments WHERE incident_id = ? ORDER BY seq",
            (self.incident_id,),
        ).fetchall()
        return [bytes(row[0]) for row in rows]


@pytest.fixture
def stored(tmp_path: Path) -> Iterator[Stored]:
    hospital = make_hospital(tmp_path)
    incident = deliver_incident(hospital, list(_footage()))
    connection = hospital.data_dir.database()
    ledger = open_ledger(hospital.data_dir, connection)
    vault = DirectoryVault(hospital.data_dir.root / VAULT_DIR)
    try:
        yield Stored(hospital, incident.incident_id, connection, ledger, vault)
    finally:
        connection.close()


def test_an_incident_is_due_only_after_its_days_and_never_on_legal_hold(stored: Stored) -> None:
    last = stored.last_received_ns()
    assert due_incidents(stored.connection, last + 30 * DAY_NS, 30) == []
    due = due_incidents(stored.connection, last + 30 * DAY_NS + 1, 30)
    assert [(item.badge_id, item.incident_id) for item in due] == [("badge-a", "inc-0417")]
    assert due[0].segments == len(stored.shas()) > 0
    index = IncidentIndex(stored.connection)
    index.catch_up()
    index.set_legal_hold("badge-a", stored.incident_id, True)
    assert due_incidents(stored.connection, last + 400 * DAY_NS, 30) == []
    index.set_legal_hold("badge-a", stored.incident_id, False)
    assert len(due_incidents(stored.connection, last + 400 * DAY_NS, 30)) == 1


def test_deleting_removes_the_vault_files_and_keeps_the_record(
    stored: Stored, tmp_path: Path
) -> None:
    shas = stored.shas()
    assert all(stored.vault.has(sha) for sha in shas)
    ledger_size = stored.ledger.size
    custody = CustodyLog(stored.ledger, stored.connection)
    (due,) = due_incidents(stored.connection, stored.last_received_ns() + 2 * DAY_NS, 1)
    done = delete_incident_footage(
        stored.connection,
        stored.vault,
        custody,
        due,
        actor="carl",
        justification="Retention policy: one year",
    )
    assert not any(stored.vault.has(sha) for sha in shas)
    assert stored.shas() == shas  # the segment rows stay
    assert stored.ledger.size == ledger_size + 1
    (entry,) = custody.entries(action="retention-delete")
    assert (entry.actor, entry.subject, entry.ledger_index) == (
        "carl",
        stored.incident_id,
        done.ledger_index,
    )
    assert entry.detail["segments"] == len(shas)
    assert deletion(stored.connection, "badge-a", stored.incident_id) == done
    assert due_incidents(stored.connection, stored.last_received_ns() + 9 * DAY_NS, 1) == []
    with pytest.raises(ExportError, match=r"deleted under retention on \d{4}-\d\d-\d\d by carl"):
        export(stored.hospital, stored.incident_id, tmp_path / "deleted.zip")
    assert not (tmp_path / "deleted.zip").exists()


def test_a_legal_hold_placed_after_listing_stops_the_deletion(stored: Stored) -> None:
    (due,) = due_incidents(stored.connection, stored.last_received_ns() + 2 * DAY_NS, 1)
    index = IncidentIndex(stored.connection)
    index.catch_up()
    index.set_legal_hold("badge-a", stored.incident_id, True)
    custody = CustodyLog(stored.ledger, stored.connection)
    with pytest.raises(RetentionError, match="legal hold"):
        delete_incident_footage(
            stored.connection, stored.vault, custody, due, actor="carl", justification="policy"
        )
    assert all(stored.vault.has(sha) for sha in stored.shas())


def test_only_a_custodian_may_apply_retention(tmp_path: Path) -> None:
    with running_console(tmp_path) as harness:
        officer = WebClient(harness.url)
        officer.login("olga")
        token = officer.csrf("/alerts")
        assert officer.request("/retention").status == 403
        form = {"csrf": token, "badge": "badge-a", "incident": "x", "justification": "policy"}
        assert officer.request("/retention", form).status == 403
        custodian = WebClient(harness.url)
        custodian.login("carl")
        page = custodian.request("/retention")
        assert page.status == 200
        assert "No incident is due for deletion" in page.text
        token = custodian.csrf("/retention")
        refused = custodian.request("/retention", {**form, "csrf": token})
        assert refused.status == 400
        assert "not due for deletion" in refused.text
