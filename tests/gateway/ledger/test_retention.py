"""Retention: due selection, deletion on the custody record, refused export, custodian only."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from badge.media import EncodedSegment
from gateway.console.actions import AlertDesk
from gateway.errors import ExportError, RetentionError
from gateway.ledger.custody import CustodyLog
from gateway.ledger.ledger import Ledger, open_ledger
from gateway.ledger.retention import (
    DAY_NS,
    delete_incident_footage,
    deletion,
    due_incidents,
)
from gateway.storage import Storage, Vault
from gateway.storage.catalogue import StoredSegment
from tests.gateway.badge_messages import Hospital, make_hospital
from tests.gateway.console_support import WebClient, running_console
from tests.gateway.court_package import deliver_incident, export, record_footage
from tests.postgres import PostgresServer
from tests.seaweedfs import SeaweedServer
from tests.storage_backends import DatabaseFactory, TestDatabase


@cache
def _footage() -> tuple[EncodedSegment, ...]:
    return tuple(record_footage(2.0))


@dataclass
class Stored:
    """A hospital holding one complete incident, with its storage opened."""

    hospital: Hospital
    incident_id: str
    storage: Storage
    ledger: Ledger

    @property
    def vault(self) -> Vault:
        """The hospital's vault."""
        return self.storage.vault

    def segments(self) -> tuple[StoredSegment, ...]:
        """The incident's stored segments, in order."""
        incident = self.storage.catalogue.incident("badge-a", self.incident_id)
        assert incident is not None
        return self.storage.catalogue.segments("badge-a", incident.first_seq, incident.last_seq)

    def last_received_ns(self) -> int:
        """When the incident's last segment arrived."""
        return max(segment.received_wall_ns for segment in self.segments())

    def shas(self) -> list[bytes]:
        """The sealed segments' SHA-256s."""
        return [segment.sealed_sha256 for segment in self.segments()]


@pytest.fixture
def stored(tmp_path: Path, database_factory: DatabaseFactory) -> Iterator[Stored]:
    database = database_factory(tmp_path / "gateway")
    hospital = make_hospital(tmp_path, config=database.gateway_toml(tmp_path / "gateway"))
    incident = deliver_incident(hospital, list(_footage()))
    storage = hospital.data_dir.storage()
    ledger = open_ledger(hospital.data_dir, storage)
    try:
        yield Stored(hospital, incident.incident_id, storage, ledger)
    finally:
        storage.close()


def test_an_incident_is_due_only_after_its_days_and_never_on_legal_hold(stored: Stored) -> None:
    last = stored.last_received_ns()
    assert due_incidents(stored.storage, last + 30 * DAY_NS, 30) == []
    due = due_incidents(stored.storage, last + 30 * DAY_NS + 1, 30)
    assert [(item.badge_id, item.incident_id) for item in due] == [("badge-a", "inc-0417")]
    assert due[0].segments == len(stored.shas()) > 0
    index = stored.storage.incident_index
    index.catch_up()
    index.set_legal_hold("badge-a", stored.incident_id, True)
    assert due_incidents(stored.storage, last + 400 * DAY_NS, 30) == []
    index.set_legal_hold("badge-a", stored.incident_id, False)
    assert len(due_incidents(stored.storage, last + 400 * DAY_NS, 30)) == 1


def test_deleting_removes_the_vault_files_and_keeps_the_record(
    stored: Stored, tmp_path: Path
) -> None:
    shas = stored.shas()
    assert all(stored.vault.exists(sha) for sha in shas)
    ledger_size = stored.ledger.size
    custody = CustodyLog(stored.ledger)
    (due,) = due_incidents(stored.storage, stored.last_received_ns() + 2 * DAY_NS, 1)
    done = delete_incident_footage(
        custody,
        due,
        actor="carl",
        justification="Retention policy: one year",
    )
    assert not any(stored.vault.exists(sha) for sha in shas)
    assert stored.shas() == shas  # the segment rows stay
    assert stored.ledger.size == ledger_size + 1
    (entry,) = custody.entries(action="retention-delete")
    assert (entry.actor, entry.subject, entry.ledger_index) == (
        "carl",
        stored.incident_id,
        done.ledger_index,
    )
    assert entry.detail["segments"] == len(shas)
    assert deletion(stored.storage, "badge-a", stored.incident_id) == done
    assert due_incidents(stored.storage, stored.last_received_ns() + 9 * DAY_NS, 1) == []
    with pytest.raises(ExportError, match=r"deleted under retention on \d{4}-\d\d-\d\d by carl"):
        export(stored.hospital, stored.incident_id, tmp_path / "deleted.zip")
    assert not (tmp_path / "deleted.zip").exists()


def test_a_legal_hold_placed_after_listing_stops_the_deletion(stored: Stored) -> None:
    (due,) = due_incidents(stored.storage, stored.last_received_ns() + 2 * DAY_NS, 1)
    index = stored.storage.incident_index
    index.catch_up()
    index.set_legal_hold("badge-a", stored.incident_id, True)
    custody = CustodyLog(stored.ledger)
    with pytest.raises(RetentionError, match="legal hold"):
        delete_incident_footage(custody, due, actor="carl", justification="policy")
    assert all(stored.vault.exists(sha) for sha in stored.shas())


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


def test_on_s3_the_store_refuses_an_early_deletion_and_a_console_hold_is_the_stores(
    tmp_path: Path, postgres_server: PostgresServer, seaweed_server: SeaweedServer
) -> None:
    """The retention policy's clock says due; the store's lock, set from the days at
    arrival, says not yet: the store refuses, the footage stays, the ledger has the record.
    A legal hold placed and released in the console is placed and released in the store."""
    root = tmp_path / "gateway"
    database = TestDatabase("postgresql", postgres_server.create_database())
    bucket = seaweed_server.create_bucket("retention-vault")
    config = database.gateway_toml(root) + (
        f'[vault]\nurl = "s3://{bucket}"\nendpoint = "{seaweed_server.endpoint}"\n'
        f'credentials_file = "{seaweed_server.credentials_file(tmp_path)}"\n'
        "[retention]\ndays = 1\n"
    )
    hospital = make_hospital(tmp_path, config=config)
    incident = deliver_incident(hospital, list(_footage()))
    storage = hospital.data_dir.storage()
    try:
        ledger = open_ledger(hospital.data_dir, storage)
        shas = [bytes(sha) for (sha,) in database.rows("SELECT sealed_sha256 FROM segments")]
        assert shas and all(storage.vault.exists(sha) for sha in shas)
        last = max(int(n) for (n,) in database.rows("SELECT received_wall_ns FROM segments"))
        (due,) = due_incidents(storage, last + 2 * DAY_NS, 1)
        size = ledger.size
        custody = CustodyLog(ledger)
        with pytest.raises(RetentionError, match=r"refused to delete.*the deletion is recorded"):
            delete_incident_footage(custody, due, actor="carl", justification="policy: 1 day")
        assert all(storage.vault.exists(sha) for sha in shas)
        assert ledger.size == size + 1
        (entry,) = custody.entries(action="retention-delete")
        assert entry.subject == incident.incident_id
        assert deletion(storage, "badge-a", incident.incident_id) is not None

        def s3_holds() -> set[str]:
            client = seaweed_server.client()
            return {
                client.get_object_legal_hold(
                    Bucket=bucket, Key=f"{sha.hex()[:2]}/{sha.hex()}.mbseal"
                )["LegalHold"]["Status"]
                for sha in shas
            }

        storage.incident_index.catch_up()
        desk = AlertDesk(custody)
        desk.hold("carl", "badge-a", incident.incident_id, True, "case 2026-0417")
        assert s3_holds() == {"ON"}  # the console's hold is the store's own too
        desk.hold("carl", "badge-a", incident.incident_id, False, "case closed")
        assert s3_holds() == {"OFF"}
    finally:
        storage.close()
