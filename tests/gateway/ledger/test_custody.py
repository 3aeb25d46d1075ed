"""The custody log: justified access, searchable entries, each one provable in the ledger."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from badge.errors import EnrolmentError as BadgeEnrolmentError
from evidence.bundle import EnrolmentBundle
from evidence.keys import SigningKey
from evidence.ledger.checkpoint import NoteVerifier, open_note
from evidence.ledger.merkle import leaf_hash, verify_inclusion
from gateway.cli import main
from gateway.datadir import GatewayDataDir
from gateway.errors import CustodyError, LedgerIntegrityError, StorageError
from gateway.ledger.custody import CustodyEntry, CustodyLog
from gateway.ledger.ledger import Ledger, LedgerEntry, open_ledger
from gateway.storage import StorageSettings, open_storage
from tests.enrol import enrol_by_cli
from tests.storage_backends import DatabaseFactory, TestDatabase

ORIGIN = "test-hospital/medbadge-ledger"
START_NS = 1_800_000_000_000_000_000


class Clock:
    """Gateway time that moves one second per reading."""

    def __init__(self) -> None:
        self.now_ns = START_NS

    def __call__(self) -> int:
        self.now_ns += 1_000_000_000
        return self.now_ns


class Custody:
    """A custody log on a fresh gateway database, with its ledger."""

    def __init__(self, root: Path, database: TestDatabase) -> None:
        self.key = SigningKey.generate()
        self.database = database
        self.settings = StorageSettings(database.location, root / "vault")
        self.storage = open_storage(self.settings)
        self.ledger = Ledger(self.storage, self.key, ORIGIN, clock=Clock())
        self.log = CustodyLog(self.ledger)


@pytest.fixture
def custody(tmp_path: Path, database_factory: DatabaseFactory) -> Iterator[Custody]:
    custody = Custody(tmp_path, database_factory(tmp_path))
    yield custody
    custody.storage.close()


def record_day(log: CustodyLog) -> list[CustodyEntry]:
    """A morning in the security office."""
    return [
        log.record("guard-ivanova", "login", "guard-ivanova"),
        log.record("guard-ivanova", "view", "inc-1", "alert answered at the ER door"),
        log.record("guard-ivanova", "view", "inc-2", "patient complaint 2024-117"),
        log.record("officer-sadykov", "login", "officer-sadykov"),
        log.record(
            "officer-sadykov",
            "export",
            "inc-1",
            "police request 55/2031",
            {"package_sha256": bytes(32), "files": ["clip.ts", "VERIFY.txt"]},
        ),
        log.record("officer-sadykov", "legal-hold", "inc-1", "court case pending"),
    ]


@pytest.mark.parametrize("action", ["view", "export"])
@pytest.mark.parametrize("justification", ["", "   \n"])
def test_footage_access_without_a_justification_is_refused(
    custody: Custody, action: str, justification: str
) -> None:
    with pytest.raises(CustodyError, match=f"guard-ivanova may not {action} inc-1 without"):
        custody.log.record("guard-ivanova", action, "inc-1", justification)  # type: ignore[arg-type]
    assert custody.ledger.size == 0
    assert custody.log.entries() == []


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (("", "login", "x", {}), "needs who acted"),
        (("guard", "login", " ", {}), "needs who acted"),
        (("guard", "peek", "inc-1", {}), "action 'peek' is not one of"),
        (("guard", "login", "guard", {"when": 1.5}), "cannot encode a value of type float"),
        (("g" * 2001, "login", "guard", {}), "actor is longer than 2000"),
    ],
)
def test_malformed_entries_are_refused(
    custody: Custody, entry: tuple[str, str, str, dict[str, object]], message: str
) -> None:
    actor, action, subject, detail = entry
    with pytest.raises(CustodyError, match=message):
        custody.log.record(actor, action, subject, "", detail)  # type: ignore[arg-type]
    assert custody.ledger.size == 0


def test_entries_are_searchable(custody: Custody) -> None:
    made = record_day(custody.log)
    log = custody.log
    assert log.entries() == made
    assert [e.action for e in log.entries(subject="inc-1")] == ["view", "export", "legal-hold"]
    assert [e.subject for e in log.entries(actor="guard-ivanova", action="view")] == [
        "inc-1",
        "inc-2",
    ]
    assert log.entries(since_ns=made[2].at_ns, until_ns=made[4].at_ns) == made[2:4]
    assert log.entries(limit=2, offset=1) == made[1:3]
    assert log.entries(newest_first=True, limit=1) == [made[-1]]
    assert log.entries(action="revoke") == []
    (export,) = log.entries(action="export")
    assert export.justification == "police request 55/2031"
    assert export.detail == {"package_sha256": bytes(32), "files": ["clip.ts", "VERIFY.txt"]}
    with pytest.raises(CustodyError, match=r"0\.\.1000 entries"):
        log.entries(limit=5000)


def test_entries_survive_reopen(custody: Custody, tmp_path: Path) -> None:
    made = record_day(custody.log)
    custody.storage.close()
    storage = open_storage(custody.settings)
    try:
        ledger = Ledger(storage, custody.key, ORIGIN)
        assert CustodyLog(ledger).entries() == made
    finally:
        storage.close()
    custody.storage = open_storage(custody.settings)  # for the fixture to close


def test_each_entry_is_provable_in_the_ledger(custody: Custody) -> None:
    made = record_day(custody.log)
    checkpoint = custody.ledger.checkpoint()
    open_note(checkpoint.note, [NoteVerifier(ORIGIN, custody.key.public_key.ed25519_key)])
    for entry in made:
        leaf = custody.ledger.leaf(entry.ledger_index)
        proof = custody.ledger.inclusion_proof(entry.ledger_index, checkpoint.size)
        verify_inclusion(
            leaf_hash(leaf), entry.ledger_index, checkpoint.size, proof, checkpoint.root
        )
        recorded = LedgerEntry.from_bytes(leaf, "custody leaf")
        assert (recorded.kind, recorded.at_ns) == ("custody", entry.at_ns)
        assert recorded.body == {
            "actor": entry.actor,
            "action": entry.action,
            "subject": entry.subject,
            "justification": entry.justification,
            "detail": entry.detail,
            "previous": entry.previous,
        }


def test_the_entries_about_one_subject_form_a_chain(custody: Custody) -> None:
    made = record_day(custody.log)
    chains = {
        subject: [
            (entry.ledger_index, entry.previous) for entry in made if entry.subject == subject
        ]
        for subject in ("inc-1", "inc-2", "guard-ivanova")
    }
    assert chains == {
        "inc-1": [(1, None), (4, 1), (5, 4)],
        "inc-2": [(2, None)],
        "guard-ivanova": [(0, None)],
    }
    assert CustodyLog(custody.ledger).entries(subject="inc-1") == [
        entry for entry in made if entry.subject == "inc-1"
    ]


def test_a_search_row_that_differs_from_its_leaf_is_refused(custody: Custody) -> None:
    record_day(custody.log)
    custody.database.edit("UPDATE custody_entries SET justification = 'routine' WHERE entry_id = 3")
    with pytest.raises(LedgerIntegrityError, match=r"custody entry 3 .* differs from the ledger"):
        custody.log.entries()


def test_a_custody_entry_and_its_leaf_commit_together(custody: Custody) -> None:
    custody.database.edit("ALTER TABLE custody_entries RENAME COLUMN at_ns TO gone")
    with pytest.raises(StorageError, match="at_ns"):
        custody.log.record("guard", "login", "guard")
    assert custody.ledger.size == 0  # the leaf was rolled back with the failed row


# -- enrolment ------------------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path) -> GatewayDataDir:
    assert main(["--data", str(tmp_path / "gw"), "init", "--hospital", "City Hospital 4"]) == 0
    return GatewayDataDir(tmp_path / "gw")


def enroll(data_dir: GatewayDataDir, bundle: Path, *extra: str) -> int:
    return enrol_by_cli(data_dir.root, "badge-x", bundle, *extra)


def test_enrolment_and_key_rotation_are_custody_entries(
    data_dir: GatewayDataDir, tmp_path: Path
) -> None:
    assert enroll(data_dir, tmp_path / "b1", "--operator", "admin-kim", "--wearer", "Nurse X") == 0
    first = EnrolmentBundle.load(tmp_path / "b1").identity.signing_key
    shutil.copytree(tmp_path / "b1", tmp_path / "b2")
    assert enroll(data_dir, tmp_path / "b2", "--operator", "admin-lee", "--rotate") == 0
    storage = data_dir.storage()
    try:
        ledger = open_ledger(data_dir, storage)
        entries = CustodyLog(ledger).entries(subject="badge-x")
        assert [(e.actor, e.action) for e in entries] == [
            ("admin-kim", "enrol"),
            ("admin-lee", "key-rotation"),
        ]
        keys = [first, EnrolmentBundle.load(tmp_path / "b2").identity.signing_key]
        assert keys[0].public_key.raw != keys[1].public_key.raw
        for entry, key, generation, wearer in zip(
            entries, keys, (1, 2), ("Nurse X", ""), strict=True
        ):
            assert entry.detail["key_generation"] == generation
            assert entry.detail["public_key"] == key.public_key.raw
            assert entry.detail["key_origin"] == "badge-generated"
            assert entry.detail["wearer"] == wearer
            signature = entry.detail["proof_of_possession"]
            assert isinstance(signature, bytes) and len(signature) == 64
        assert [e.kind for e in storage.badges.events("badge-x")] == [
            "enrolled",
            "rotated",
        ]
        checkpoint = ledger.checkpoint()
        assert checkpoint.checkpoint.origin == "city-hospital-4/medbadge-ledger"
        rotation = entries[1]
        proof = ledger.inclusion_proof(rotation.ledger_index, checkpoint.size)
        leaf = leaf_hash(ledger.leaf(rotation.ledger_index))
        verify_inclusion(leaf, rotation.ledger_index, checkpoint.size, proof, checkpoint.root)
    finally:
        storage.close()


def test_enrolment_refuses_an_altered_ledger(
    data_dir: GatewayDataDir, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert enroll(data_dir, tmp_path / "b1") == 0
    storage = data_dir.storage()
    open_ledger(data_dir, storage).checkpoint()
    storage.close()
    editor = sqlite3.connect(data_dir.database_path)
    editor.execute("UPDATE ledger_leaves SET leaf_hash = zeroblob(32) WHERE leaf_index = 0")
    editor.commit()
    editor.close()
    shutil.copytree(tmp_path / "b1", tmp_path / "b2")
    with pytest.raises(BadgeEnrolmentError, match="ledger leaf 0's stored hash 0000"):
        enroll(data_dir, tmp_path / "b2", "--rotate")
    storage = data_dir.storage()
    try:
        assert storage.badges.get("badge-x").key_generation == 1
    finally:
        storage.close()


@pytest.mark.parametrize(
    ("justification", "message"),
    [(".", "does not say why"), ("\u200b", "ZERO WIDTH SPACE"), ("ok\x00 fine", "\\\\x00")],
)
def test_footage_access_with_a_reason_that_says_nothing_is_refused(
    custody: Custody, justification: str, message: str
) -> None:
    with pytest.raises(CustodyError, match=message):
        custody.log.record("guard-ivanova", "view", "inc-1", justification)
    assert custody.ledger.size == 0
