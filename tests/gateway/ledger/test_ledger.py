"""The ledger: durable appends, RFC 9162 proofs, signed time-stamped checkpoints, tampering."""

from __future__ import annotations

import itertools
import sqlite3
import threading
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

import pytest
from cryptography import x509

from evidence.errors import LedgerError
from evidence.hashing import sha256
from evidence.keys import SigningKey
from evidence.ledger.checkpoint import (
    Checkpoint,
    NoteSigner,
    NoteVerifier,
    open_note,
    parse_checkpoint,
    sign_note,
)
from evidence.ledger.merkle import (
    leaf_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from evidence.messages import Receipt
from evidence.segment import SealedSegment
from evidence.timestamp import verify_timestamp
from gateway.errors import LedgerIntegrityError, StorageError, TimestampAuthorityError
from gateway.intake.intake import Intake
from gateway.ledger.audit import StreamingRoot
from gateway.ledger.ledger import (
    Ledger,
    LedgerEntry,
    SignedCheckpoint,
    ledger_origin,
    open_ledger,
)
from gateway.ledger.schedule import CheckpointSchedule
from gateway.pki.ca import EvidenceCA
from gateway.storage import Storage, StorageSettings, open_storage
from gateway.storage.database import SqliteDatabase
from gateway.timestamping import TimeStampAuthority, Timestamper
from tests.gateway.badge_messages import (
    BASE_WALL_NS,
    BadgeMessages,
    make_hospital,
    receipts,
)
from tests.storage_backends import DatabaseFactory, TestDatabase

ORIGIN = "test-hospital/medbadge-ledger"


@cache
def hospital_tsa() -> TimeStampAuthority:
    """A hospital's own TSA under its evidence CA, made once for this module."""
    ca = EvidenceCA.create("Test Hospital")
    return TimeStampAuthority(*ca.issue_tsa_certificate("Test Hospital TSA"), ca.certificate)


class RecordingTimestamper:
    """A real TSA that notes each digest it is asked for; ``down`` makes it refuse them all."""

    def __init__(self, tsa: TimeStampAuthority | None = None, *, down: bool = False) -> None:
        self._tsa = tsa or hospital_tsa()
        self.down = down
        self.digests: list[bytes] = []

    def stamp(self, digest: bytes) -> bytes:
        self.digests.append(digest)
        if self.down:
            raise TimestampAuthorityError("the TSA at http://tsa.invalid/ refused the connection")
        return self._tsa.stamp(digest)

    @property
    def trust_anchors(self) -> tuple[x509.Certificate, ...]:
        return self._tsa.trust_anchors

    @property
    def certificates(self) -> tuple[x509.Certificate, ...]:
        return self._tsa.certificates


class SteppingClock:
    """Gateway time that moves 1 ms per reading."""

    def __init__(self, start_ns: int = BASE_WALL_NS) -> None:
        self.now_ns = start_ns

    def __call__(self) -> int:
        self.now_ns += 1_000_000
        return self.now_ns


class Store:
    """A gateway database and the key that signs its checkpoints."""

    def __init__(self, root: Path, database: TestDatabase) -> None:
        self.database = database
        self.settings = StorageSettings(database.location, root / "vault")
        self.key = SigningKey.generate()
        self.opened: list[Storage] = []

    def storage(self) -> Storage:
        storage = open_storage(self.settings)
        self.opened.append(storage)
        return storage

    def open(self, timestamper: Timestamper | None = None) -> Ledger:
        return Ledger(self.storage(), self.key, ORIGIN, timestamper, clock=SteppingClock())

    def tamper(self, sql: str, *args: object) -> None:
        """Change the database as an intruder with direct access would (no ledger code)."""
        self.database.edit(sql, *args)

    def close(self) -> None:
        for storage in self.opened:
            storage.close()


@pytest.fixture
def store(tmp_path: Path, database_factory: DatabaseFactory) -> Iterator[Store]:
    store = Store(tmp_path, database_factory(tmp_path))
    yield store
    store.close()


def fill(ledger: Ledger, count: int) -> None:
    for number in range(count):
        ledger.append("custody", {"actor": "test", "number": number})


def trusted(store: Store) -> NoteVerifier:
    """The checkpoint key as a court would build it: from the gateway's public key alone."""
    return NoteVerifier(ORIGIN, store.key.public_key.ed25519_key)


# -- the tree -----------------------------------------------------------------------------


def test_streaming_root_matches_the_rfc_root_at_every_size() -> None:
    hashes = [leaf_hash(bytes([n])) for n in range(70)]
    accumulator = StreamingRoot()
    assert accumulator.root() == root_from_leaf_hashes([])
    for count, digest in enumerate(hashes, start=1):
        accumulator.add(digest)
        assert accumulator.root() == root_from_leaf_hashes(hashes[:count]), count


def test_appends_survive_reopen(store: Store) -> None:
    ledger = store.open()
    indices = [
        ledger.append("segment", {"seq": seq, "sealed_sha256": sha256(bytes([seq]))})
        for seq in range(20)
    ]
    assert indices == list(range(20))
    root = ledger.root()
    store.close()

    reopened = store.open()
    assert reopened.size == 20
    assert reopened.root() == root
    entry = reopened.entry(7)
    assert (entry.kind, entry.body) == ("segment", {"seq": 7, "sealed_sha256": sha256(b"\x07")})
    assert LedgerEntry.from_bytes(reopened.leaf(7), "leaf 7") == entry
    assert reopened.verify_against_last_checkpoint() is None  # nothing signed yet, leaves intact


def test_entry_bytes_are_canonical_and_typed(store: Store) -> None:
    ledger = store.open()
    index = ledger.append("alert", {"badge": "badge-a"}, at_ns=5)
    assert ledger.leaf(index) == LedgerEntry("alert", 5, {"badge": "badge-a"}).to_bytes()
    with pytest.raises(LedgerError, match="kind 'video'"):
        ledger.append("video", {})  # type: ignore[arg-type]
    with pytest.raises(LedgerIntegrityError, match=r"not a medbadge\.ledger\.v1 entry"):
        LedgerEntry.from_bytes(LedgerEntry("alert", 5).to_bytes()[:-1] + b"\xa0", "leaf x")
    assert ledger.size == 1


def test_the_storage_refuses_a_connection_that_is_not_durable(tmp_path: Path) -> None:
    open_storage(StorageSettings(tmp_path / "g.db", tmp_path / "vault")).close()
    plain = sqlite3.connect(tmp_path / "g.db")
    plain.execute("PRAGMA synchronous=NORMAL")  # a commit could be lost on power failure
    try:
        with pytest.raises(StorageError, match="synchronous=FULL"):
            SqliteDatabase(plain)
    finally:
        plain.close()


def test_proofs_verify_against_the_signed_checkpoint(store: Store) -> None:
    ledger = store.open()
    fill(ledger, 37)
    made = ledger.checkpoint()
    text, signers = open_note(made.note, [trusted(store)])
    assert signers == (ORIGIN,)
    assert text == Checkpoint(ORIGIN, 37, ledger.root()).body()
    assert parse_checkpoint(text) == made.checkpoint
    for index in range(37):
        proof = ledger.inclusion_proof(index, made.size)
        verify_inclusion(leaf_hash(ledger.leaf(index)), index, made.size, proof, made.root)
    assert ledger.latest_checkpoint() == made


def test_successive_checkpoints_are_consistent(store: Store) -> None:
    ledger = store.open()
    made: list[SignedCheckpoint] = []
    for grow in (1, 4, 11, 16, 3):
        fill(ledger, grow)
        made.append(ledger.checkpoint())
    for older, newer in itertools.pairwise(made):
        proof = ledger.consistency_proof(older.size, newer.size)
        verify_consistency(older.size, newer.size, older.root, newer.root, proof)
    assert [c.size for c in made] == [1, 5, 16, 32, 35]
    assert made[-1].number > made[0].number


def test_uncommitted_leaves_never_enter_the_memo(store: Store) -> None:
    ledger = store.open()
    fill(ledger, 16)
    with pytest.raises(RuntimeError), ledger.storage.transaction():
        fill(ledger, 16)  # joins the open transaction
        ledger.root(32)  # a complete 16-leaf subtree over uncommitted leaves
        raise RuntimeError("the caller gives up: rollback")
    assert ledger.size == 16
    for number in range(16):
        ledger.append("receipt", {"other": number})
    stored = [leaf_hash(ledger.leaf(index)) for index in range(32)]
    assert ledger.root(32) == root_from_leaf_hashes(stored)


def test_checkpoint_inside_an_open_transaction_is_refused(store: Store) -> None:
    ledger = store.open()
    fill(ledger, 2)
    with (
        pytest.raises(LedgerError, match="outside any open transaction"),
        ledger.storage.transaction(),
    ):
        ledger.checkpoint()


# -- time-stamps --------------------------------------------------------------------------


def test_a_checkpoint_is_time_stamped_over_its_note(store: Store) -> None:
    tsa = RecordingTimestamper()
    ledger = store.open(tsa)
    fill(ledger, 3)
    made = ledger.checkpoint()
    assert tsa.digests == [sha256(made.note)]
    assert made.timestamp_token is not None
    info = verify_timestamp(made.timestamp_token, sha256(made.note), tsa.trust_anchors)
    assert info.digest == sha256(made.note)
    assert store.open().latest_checkpoint() == made  # stored with its token


def test_a_failed_stamp_keeps_the_checkpoint_and_the_schedule_retries(store: Store) -> None:
    tsa_down = RecordingTimestamper(down=True)
    ledger = store.open(tsa_down)
    fill(ledger, 3)
    unstamped = ledger.checkpoint()
    assert unstamped.timestamp_token is None
    assert ledger.latest_checkpoint() == unstamped

    tsa = RecordingTimestamper()
    schedule = CheckpointSchedule(store.open(tsa))
    stamped = schedule.tick()  # the log did not grow, but the stamp is still owed
    assert stamped is not None and stamped.number == unstamped.number
    assert tsa.digests == [sha256(unstamped.note)]
    assert ledger.latest_checkpoint() == stamped
    assert schedule.tick() is None


# -- the schedule -------------------------------------------------------------------------


def test_schedule_checkpoints_only_a_grown_log(store: Store) -> None:
    ledger = store.open()
    schedule = CheckpointSchedule(store.open())  # its own connection, as in the daemon
    assert schedule.tick() is None  # empty log
    fill(ledger, 4)
    first = schedule.tick()
    assert first is not None and first.size == 4
    assert schedule.tick() is None
    fill(ledger, 1)
    ledger.checkpoint()  # an incident close made one meanwhile
    assert schedule.tick() is None
    fill(ledger, 2)
    second = schedule.tick()
    assert second is not None and second.size == 7
    assert schedule.tick() is None


def test_schedule_thread_checkpoints_in_the_background(store: Store) -> None:
    ledger = store.open()
    fill(ledger, 3)
    done = threading.Event()
    schedule_ledger = store.open()

    class Watched(CheckpointSchedule):
        def tick(self) -> SignedCheckpoint | None:
            made = super().tick()
            if made is not None:
                done.set()
            return made

    with Watched(schedule_ledger, interval_s=0.01):
        assert done.wait(10)
    latest = ledger.latest_checkpoint()
    assert latest is not None and latest.size == 3


# -- tampering ----------------------------------------------------------------------------


@pytest.fixture
def signed(store: Store) -> Ledger:
    """Ten leaves with checkpoints at sizes 2, 6 and 10, all verifying."""
    ledger = store.open()
    for grow in (2, 4, 4):
        fill(ledger, grow)
        ledger.checkpoint()
    verified = ledger.verify_against_last_checkpoint()
    assert verified is not None and verified.size == 10
    assert verified == ledger.latest_checkpoint()
    return ledger


def altered_leaf(store: Store, index: int) -> bytes:
    leaf = store.open().leaf(index)
    return leaf.replace(b"test", b"TEST")


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (
            lambda s: s.tamper(
                "UPDATE ledger_leaves SET leaf = ? WHERE leaf_index = 3", altered_leaf(s, 3)
            ),
            r"ledger leaf 3's stored hash [0-9a-f]{64} does not match its bytes",
        ),
        (
            lambda s: s.tamper(
                "UPDATE ledger_leaves SET leaf = ?, leaf_hash = ? WHERE leaf_index = 3",
                altered_leaf(s, 3),
                leaf_hash(altered_leaf(s, 3)),
            ),
            r"root of the ledger's first 10 leaves is [0-9a-f]{64}, but the last checkpoint "
            r"\(number 3\) signed [0-9a-f]{64}.*in leaves 2\.\.5 \(the checkpoint of size 2 "
            r"still matches\)",
        ),
        (
            lambda s: s.tamper("DELETE FROM ledger_leaves WHERE leaf_index = 4"),
            r"ledger leaf 4 is missing \(the next stored leaf is 5\)",
        ),
        (
            lambda s: s.tamper("DELETE FROM ledger_leaves WHERE leaf_index = 9"),
            r"holds 9 leaves but its last checkpoint covers 10: leaves 9\.\.9 are missing",
        ),
        (
            lambda s: s.tamper(
                "UPDATE checkpoints SET root = ? WHERE checkpoint_id = 3", bytes(32)
            ),
            r"checkpoint 3's stored root 0{64} differs from the root [0-9a-f]{64} its signed note",
        ),
        (
            lambda s: s.tamper("UPDATE checkpoints SET size = 9 WHERE checkpoint_id = 3"),
            r"checkpoint 3's stored size 9 differs from the size 10 its signed note carries",
        ),
    ],
    ids=["leaf-bytes", "leaf-and-hash", "middle-leaf-deleted", "last-leaf-deleted", "root", "size"],
)
def test_tampering_is_refused_with_what_differs(
    store: Store, signed: Ledger, tamper: Callable[[Store], None], message: str
) -> None:
    tamper(store)
    with pytest.raises(LedgerIntegrityError, match=message):
        store.open().verify_against_last_checkpoint()


def test_a_checkpoint_signed_by_another_key_is_refused(store: Store, signed: Ledger) -> None:
    last = signed.latest_checkpoint()
    assert last is not None
    forged_root = leaf_hash(b"forged")
    forger = NoteSigner(ORIGIN, SigningKey.generate().key)
    forged = sign_note(Checkpoint(ORIGIN, last.size, forged_root).body(), [forger])
    store.tamper(
        "UPDATE checkpoints SET note = ?, root = ? WHERE checkpoint_id = ?",
        forged,
        forged_root,
        last.number,
    )
    with pytest.raises(LedgerIntegrityError, match="not signed by this gateway's key"):
        store.open().verify_against_last_checkpoint()


def test_an_edited_checkpoint_note_is_refused(store: Store, signed: Ledger) -> None:
    last = signed.latest_checkpoint()
    assert last is not None
    edited = last.note.replace(b"\n10\n", b"\n11\n", 1)
    store.tamper("UPDATE checkpoints SET note = ?, size = 11 WHERE checkpoint_id = 3", edited)
    with pytest.raises(LedgerIntegrityError, match="does not verify over the note"):
        store.open().verify_against_last_checkpoint()


def test_a_new_checkpoint_is_not_signed_over_an_altered_log(store: Store, signed: Ledger) -> None:
    store.tamper(
        "UPDATE ledger_leaves SET leaf = ?, leaf_hash = ? WHERE leaf_index = 8",
        altered_leaf(store, 8),
        leaf_hash(altered_leaf(store, 8)),
    )
    ledger = store.open()
    fill(ledger, 1)
    with pytest.raises(LedgerIntegrityError, match="does not extend checkpoint 3 \\(size 10\\)"):
        ledger.checkpoint()


def test_a_changed_origin_is_refused(store: Store, signed: Ledger) -> None:
    renamed = Ledger(store.storage(), store.key, "another-name/medbadge-ledger")
    with pytest.raises(LedgerIntegrityError, match="keeps its origin for life"):
        renamed.verify_against_last_checkpoint()


def test_origin_is_a_valid_note_key_name() -> None:
    assert ledger_origin("City Hospital 4") == "city-hospital-4/medbadge-ledger"
    assert ledger_origin(" A+B\tclinic ") == "a-b-clinic/medbadge-ledger"
    assert ledger_origin("Қалалық аурухана №1") == "қалалық-аурухана-№1/medbadge-ledger"
    NoteSigner(ledger_origin("A+B\tclinic"), SigningKey.generate().key)  # accepted


# -- the intake ---------------------------------------------------------------------------


def test_a_full_incident_is_in_the_ledger_in_order_with_proofs(tmp_path: Path) -> None:
    hospital = make_hospital(tmp_path, ("badge-a",))
    published: list[tuple[str, bytes]] = []
    tsa = RecordingTimestamper(hospital.data_dir.timestamper())
    intake = Intake(
        hospital.data_dir,
        lambda topic, payload: published.append((topic, payload)),
        lambda _event: None,
        clock=SteppingClock(BASE_WALL_NS + 10**9),
        timestamper=tsa,
    )
    badge = BadgeMessages.of(hospital.bundles["badge-a"])
    try:
        ledger = intake.ledger
        start = ledger.size  # the enrolment's custody entry comes first
        assert ledger.entry(start - 1).kind == "custody"
        intake.handle(badge.topic("alert"), badge.alert("inc-1"))
        segments = badge.seal(3)
        intake.handle(badge.topic("incident"), badge.incident("inc-1", 0, 2))
        for segment in segments:
            for chunk in badge.chunks(segment, "inc-1"):
                intake.handle(badge.topic("segment"), chunk)

        found = receipts(published, hospital.gateway_key)
        assert [(r.subject, r.key) for r in found[-1:]] == [("incident", "inc-1")]
        entries = [ledger.entry(index) for index in range(start, ledger.size)]
        assert [(e.kind, e.body.get("subject")) for e in entries] == [
            ("alert", None),
            ("receipt", "alert"),
            *[("segment", None), ("receipt", "segment")] * 3,
            ("incident", None),
            ("receipt", "incident"),
        ]
        times = [e.at_ns for e in entries]
        assert times == sorted(times)

        # the bodies say what was stored, and the rows point at their entries
        sent = [payload for topic, payload in published if topic.endswith("/receipt")]
        receipt_entries = [e for e in entries if e.kind == "receipt"]
        assert [e.body["receipt_sha256"] for e in receipt_entries] == [sha256(p) for p in sent]
        assert [e.body["sha256"] for e in receipt_entries] == [r.sha256 for r in found]
        check_rows(hospital.data_dir.database_path, ledger, segments)

        # the incident close made a time-stamped checkpoint over everything
        last = ledger.latest_checkpoint()
        assert last is not None and last.size == ledger.size
        assert tsa.digests == [sha256(last.note)] and last.timestamp_token is not None
        open_note(last.note, [NoteVerifier(ledger.origin, hospital.gateway_key.ed25519_key)])
        for index in range(last.size):
            proof = ledger.inclusion_proof(index, last.size)
            verify_inclusion(leaf_hash(ledger.leaf(index)), index, last.size, proof, last.root)

        # a badge that missed its receipts gets them again, without new entries
        size = ledger.size
        for chunk in badge.chunks(segments[1], "inc-1"):
            intake.handle(badge.topic("segment"), chunk)
        intake.handle(badge.topic("alert"), badge.alert("inc-1"))
        assert ledger.size == size
        assert receipts(published, hospital.gateway_key)[-1].subject == "alert"
    finally:
        intake.close()


def check_rows(database: Path, ledger: Ledger, segments: list[SealedSegment]) -> None:
    connection = sqlite3.connect(database)
    try:
        rows = connection.execute(
            "SELECT seq, sealed_sha256, header_sha256, capture_error_ns, ledger_index"
            " FROM segments ORDER BY seq"
        ).fetchall()
        for seq, sealed, header, error, index in rows:
            body = ledger.entry(index).body
            assert (body["seq"], body["sealed_sha256"], body["header_sha256"]) == (
                seq,
                sealed,
                header,
            )
            assert body["capture_error_ns"] == error
        assert len(rows) == len(segments)
        ((record_sha, incident_index),) = connection.execute(
            "SELECT record_sha256, ledger_index FROM incidents"
        ).fetchall()
        incident = ledger.entry(incident_index)
        assert (incident.kind, incident.body["record_sha256"]) == ("incident", record_sha)
        ((alert_sha, alert_index),) = connection.execute(
            "SELECT alert_sha256, ledger_index FROM alerts"
        ).fetchall()
        assert ledger.entry(alert_index).body["alert_sha256"] == alert_sha
        for receipt, index in connection.execute("SELECT receipt, ledger_index FROM receipts"):
            assert ledger.entry(index).body["receipt_sha256"] == sha256(receipt)
    finally:
        connection.close()


def test_the_intake_refuses_to_start_on_an_altered_ledger(tmp_path: Path) -> None:
    hospital = make_hospital(tmp_path, ("badge-a",))
    intake = Intake(hospital.data_dir, lambda _t, _p: None, lambda _e: None)
    badge = BadgeMessages.of(hospital.bundles["badge-a"])
    intake.handle(badge.topic("alert"), badge.alert("inc-1"))
    intake.ledger.checkpoint()
    intake.close()
    Intake(hospital.data_dir, lambda _t, _p: None, lambda _e: None).close()  # intact: starts

    connection = sqlite3.connect(hospital.data_dir.database_path)
    connection.execute("UPDATE ledger_leaves SET leaf = leaf || x'00' WHERE leaf_index = 1")
    connection.commit()
    connection.close()
    with pytest.raises(LedgerIntegrityError, match="ledger leaf 1's stored hash"):
        Intake(hospital.data_dir, lambda _t, _p: None, lambda _e: None)
    storage = hospital.data_dir.storage()
    try:
        with pytest.raises(LedgerIntegrityError):
            open_ledger(hospital.data_dir, storage)
        open_ledger(hospital.data_dir, storage, verify=False)  # opened only when asked
    finally:
        storage.close()


def test_receipt_entries_name_the_receipt_the_badge_can_check(tmp_path: Path) -> None:
    hospital = make_hospital(tmp_path, ("badge-a",))
    published: list[tuple[str, bytes]] = []
    intake = Intake(hospital.data_dir, lambda t, p: published.append((t, p)), lambda _e: None)
    badge = BadgeMessages.of(hospital.bundles["badge-a"])
    try:
        intake.handle(badge.topic("alert"), badge.alert("inc-9"))
        ((_, payload),) = published
        entry = intake.ledger.entry(intake.ledger.size - 1)
        receipt = Receipt.open(payload, hospital.gateway_key, "receipt")
        assert entry.body == {
            "badge": "badge-a",
            "subject": "alert",
            "key": "inc-9",
            "sha256": receipt.sha256,
            "receipt_sha256": sha256(payload),
        }
    finally:
        intake.close()


def test_the_hospitals_own_tsa_stamps_checkpoints_through_the_seam(store: Store) -> None:
    ca = EvidenceCA.create("Test Hospital")
    tsa = TimeStampAuthority(*ca.issue_tsa_certificate("Test Hospital TSA"), ca.certificate)
    ledger = store.open(tsa)
    fill(ledger, 5)
    made = ledger.checkpoint()
    assert made.timestamp_token is not None
    info = verify_timestamp(made.timestamp_token, sha256(made.note), ca.certificate)
    assert info.digest == sha256(made.note)


def test_gateway_processes_on_one_database_append_through_one_sequencer(store: Store) -> None:
    """Each worker has its own connection; the database's write lock is the one sequencer,
    so the log stays contiguous and every index is given once."""
    ledgers = [store.open() for _ in range(3)]
    given: list[int] = []
    failures: list[BaseException] = []

    def work(ledger: Ledger, worker: int) -> None:
        try:
            for number in range(15):
                given.append(ledger.append("custody", {"worker": worker, "number": number}))
        except BaseException as error:
            failures.append(error)

    threads = [
        threading.Thread(target=work, args=(ledger, worker))
        for worker, ledger in enumerate(ledgers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sorted(given) == list(range(45))
    checkpoint = ledgers[0].checkpoint()
    assert checkpoint.size == 45
    assert store.open().verify_against_last_checkpoint() == checkpoint
