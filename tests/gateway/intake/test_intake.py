"""The intake, driven directly: real keys, real sealed segments, real files and SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evidence.canonical import encode
from evidence.hashing import sha256
from evidence.incident import SignedIncident
from evidence.keys import BadgeIdentity
from evidence.messages import Receipt, Rejection, SegmentChunk
from evidence.segment import SealedSegment
from gateway.alerts.alerts import AlertEvent
from gateway.config import CutoffSettings, IntakeLimits
from gateway.intake.intake import MAX_PAYLOAD_BYTES, PARTIAL_DIR, Intake
from gateway.intake.reassembly import DEFAULT_TIMEOUT_NS, Reassembly
from gateway.storage.badge_states import BadgeState
from tests.gateway.badge_messages import (
    BASE_WALL_NS,
    BOOT_MONO_NS,
    SEGMENT_NS,
    BadgeMessages,
    Hospital,
    make_hospital,
    receipts,
    rejections,
)
from tests.storage_backends import DatabaseFactory, TestDatabase

CLOCK_OFFSET_NS = 3_000_000_000
"""The gateway's clock runs this far ahead of the badges' in these tests."""


class SteppingClock:
    """Gateway wall time for the intake: moves 1 ms per reading, and on ``advance``."""

    def __init__(self, start_ns: int) -> None:
        self.now_ns = start_ns

    def __call__(self) -> int:
        self.now_ns += 1_000_000
        return self.now_ns

    def advance(self, ns: int) -> None:
        self.now_ns += ns


class Gateway:
    """An Intake on a fresh hospital, with what it published and announced."""

    def __init__(self, root: Path, database: TestDatabase) -> None:
        self.database = database
        self.hospital: Hospital = make_hospital(root, config=database.gateway_toml(root))
        self.clock = SteppingClock(BASE_WALL_NS + CLOCK_OFFSET_NS)
        self.published: list[tuple[str, bytes]] = []
        self.alerts: list[AlertEvent] = []
        self.limits = IntakeLimits()
        self.intake = self.open()
        self.a = BadgeMessages.of(self.hospital.bundles["badge-a"])
        self.b = BadgeMessages.of(self.hospital.bundles["badge-b"])

    def open(self) -> Intake:
        return Intake(
            self.hospital.data_dir,
            lambda topic, payload: self.published.append((topic, payload)),
            self.alerts.append,
            clock=self.clock,
            limits=self.limits,
        )

    def restart(self) -> None:
        self.intake.close()
        self.intake = self.open()

    def send(self, topic: str, payload: bytes) -> None:
        self.intake.handle(topic, payload)

    def send_segment(self, badge: BadgeMessages, segment: SealedSegment, incident: str) -> None:
        for chunk in badge.chunks(segment, incident):
            self.send(badge.topic("segment"), chunk)

    def receipts(self) -> list[Receipt]:
        return receipts(self.published, self.hospital.gateway_key)

    def rejections(self) -> list[Rejection]:
        return rejections(self.published, self.hospital.gateway_key)

    def rows(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        return self.database.rows(sql, *args)

    def alter(self, sql: str) -> None:
        """Change the database from outside the gateway, as someone with direct access would."""
        self.database.edit(sql)

    def refuse_segment_receipts(self, refused: bool) -> None:
        """A trigger that makes every segment receipt's insert fail (or its removal)."""
        if self.database.backend == "sqlite":
            self.alter(
                "CREATE TRIGGER no_segment_receipts BEFORE INSERT ON receipts"
                " WHEN NEW.subject = 'segment' BEGIN SELECT RAISE(ABORT, 'receipts are full');"
                " END"
                if refused
                else "DROP TRIGGER no_segment_receipts"
            )
            return
        if not refused:
            self.alter("DROP TRIGGER no_segment_receipts ON receipts")
            return
        self.alter(
            "CREATE FUNCTION receipts_are_full() RETURNS trigger LANGUAGE plpgsql"
            " AS $$ BEGIN RAISE EXCEPTION 'receipts are full'; END $$"
        )
        self.alter(
            "CREATE TRIGGER no_segment_receipts BEFORE INSERT ON receipts FOR EACH ROW"
            " WHEN (NEW.subject = 'segment') EXECUTE FUNCTION receipts_are_full()"
        )

    def badge_state(self, badge_id: str) -> BadgeState | None:
        storage = self.hospital.data_dir.storage()
        try:
            return storage.badge_states.get(badge_id)
        finally:
            storage.close()

    def quarantined(self) -> list[Path]:
        return sorted((self.intake.quarantine.directory).glob("*/*.bin"))


@pytest.fixture
def gateway(tmp_path: Path, database_factory: DatabaseFactory) -> Iterator[Gateway]:
    gateway = Gateway(tmp_path, database_factory(tmp_path / "gateway"))
    yield gateway
    gateway.intake.close()


@pytest.fixture
def sqlite_gateway(tmp_path: Path) -> Iterator[Gateway]:
    """The gateway on SQLite alone, for a test of what is refused before any storage."""
    gateway = Gateway(tmp_path, TestDatabase("sqlite", tmp_path / "gateway" / "gateway.db"))
    yield gateway
    gateway.intake.close()


def send_heartbeats(gateway: Gateway, badge: BadgeMessages, count: int = 3) -> None:
    for index in range(count):
        mono = BOOT_MONO_NS - (count - index) * 10 * 1_000_000_000
        wall = BASE_WALL_NS + (mono - BOOT_MONO_NS)
        gateway.clock.now_ns = wall + CLOCK_OFFSET_NS + 4_000_000
        gateway.send(badge.topic("heartbeat"), badge.heartbeat(mono, wall))


def test_full_incident_is_stored_and_receipted(gateway: Gateway) -> None:
    a = gateway.a
    send_heartbeats(gateway, a)
    gateway.clock.now_ns = a.press(0).wall_ns + CLOCK_OFFSET_NS + 5_000_000
    gateway.send(a.topic("alert"), a.alert("inc-1"))
    segments = a.seal(5)
    gateway.clock.advance(30 * SEGMENT_NS)  # the post-roll is over: the upload begins
    gateway.send(a.topic("incident"), a.incident("inc-1", 0, 4))
    for seq in (0, 2, 1, 4):  # out of order: each links to whichever neighbour is stored
        gateway.send_segment(a, segments[seq], "inc-1")
    assert [r.subject for r in gateway.receipts()] == ["alert", *["segment"] * 4]
    gateway.send_segment(a, segments[3], "inc-1")

    found = gateway.receipts()
    assert [(r.subject, r.key) for r in found] == [
        ("alert", "inc-1"),
        *[("segment", str(seq)) for seq in (0, 2, 1, 4, 3)],
        ("incident", "inc-1"),
    ]
    for receipt in found[1:6]:
        assert receipt.sha256 == sha256(segments[int(receipt.key)].to_bytes())
        with gateway.intake.vault.open(receipt.sha256) as stored:
            assert stored.read() == segments[int(receipt.key)].to_bytes()
    assert found[0].sha256 == sha256(a.alert("inc-1"))
    assert found[6].sha256 == sha256(a.incident("inc-1", 0, 4))
    assert gateway.rejections() == []
    assert gateway.intake.counts() == {}
    assert not list((gateway.hospital.data_dir.root / PARTIAL_DIR).glob("*/*"))

    # the alert went to the console, with the press placed in gateway time
    (event,) = gateway.alerts
    assert (event.badge_id, event.wearer, event.incident_id) == (
        "badge-a",
        "Nurse badge-a",
        "inc-1",
    )
    assert event.estimated_press_wall_ns is not None and event.latency_error_ns is not None
    true_press = a.press(0).wall_ns + CLOCK_OFFSET_NS
    assert abs(event.estimated_press_wall_ns - true_press) <= event.latency_error_ns

    # every segment row holds badge times, gateway time and an estimated capture time
    rows = gateway.rows(
        "SELECT seq, badge_wall_start_ns, received_wall_ns, capture_start_ns, capture_error_ns"
        " FROM segments ORDER BY seq"
    )
    assert [row[0] for row in rows] == [0, 1, 2, 3, 4]
    for seq, badge_wall, received, capture, error in rows:
        assert badge_wall == BASE_WALL_NS + seq * SEGMENT_NS
        assert isinstance(received, int) and received > badge_wall  # the gateway is ahead
        assert abs(capture - (badge_wall + CLOCK_OFFSET_NS)) <= error


def test_duplicate_segment_gets_the_same_receipt_and_no_second_row(gateway: Gateway) -> None:
    a = gateway.a
    (segment,) = a.seal(1)
    gateway.send(a.topic("incident"), a.incident("inc-1", 0, 0))
    gateway.send_segment(a, segment, "inc-1")
    segment_receipt, incident_receipt = [payload for _, payload in gateway.published]
    gateway.published.clear()
    gateway.send_segment(a, segment, "inc-1")  # the badge missed the receipt and resends
    chunk_count = len(a.chunks(segment, "inc-1"))
    assert [payload for _, payload in gateway.published] == [segment_receipt] * chunk_count
    assert gateway.rows("SELECT COUNT(*) FROM segments") == [(1,)]
    assert gateway.intake.counts() == {}
    # the incident record again: the incident receipt again, the same bytes
    gateway.published.clear()
    gateway.send(a.topic("incident"), a.incident("inc-1", 0, 0))
    assert [payload for _, payload in gateway.published] == [incident_receipt]
    assert gateway.rows("SELECT COUNT(*) FROM incidents") == [(1,)]


def test_a_different_segment_for_a_stored_seq_is_a_conflict(gateway: Gateway) -> None:
    a = gateway.a
    segments = a.seal(2)
    gateway.send(a.topic("incident"), a.incident("inc-1", 0, 1))
    gateway.send_segment(a, segments[0], "inc-1")
    impostor = a.seal_one(0, segments[0].header.previous_header_sha256, size=500)
    gateway.send_segment(a, impostor, "inc-1")
    assert {(r.reason, r.subject, r.key) for r in gateway.rejections()} == {
        ("conflict", "segment", "0")
    }
    assert gateway.intake.counts()["conflict"] == len(a.chunks(impostor, "inc-1"))
    assert gateway.rows("SELECT sealed_sha256 FROM segments") == [(sha256(segments[0].to_bytes()),)]


def test_message_signed_by_another_key_is_a_bad_signature(gateway: Gateway) -> None:
    a, b = gateway.a, gateway.b
    forged = b.heartbeat(BOOT_MONO_NS, BASE_WALL_NS)  # badge-b's key on badge-a's topic
    gateway.send(a.topic("heartbeat"), forged)
    (rejection,) = gateway.rejections()
    assert (rejection.badge, rejection.reason, rejection.subject) == (
        "badge-a",
        "bad-signature",
        "heartbeat",
    )
    assert gateway.intake.counts() == {"bad-signature": 1}
    (kept,) = gateway.quarantined()
    assert kept.read_bytes() == forged
    assert gateway.badge_state("badge-a") is None


def test_segment_signed_by_another_key_is_a_bad_signature(gateway: Gateway) -> None:
    a, b = gateway.a, gateway.b
    gateway.send(a.topic("incident"), a.incident("inc-1", 0, 0))
    pretender = BadgeIdentity("badge-a", b.identity.signing_key)
    forged = a.seal_one(0, a.previous, identity=pretender)
    gateway.send_segment(a, forged, "inc-1")
    (rejection,) = gateway.rejections()
    assert (rejection.reason, rejection.key) == ("bad-signature", "0")
    (kept,) = gateway.quarantined()
    assert kept.read_bytes() == forged.to_bytes()  # the reassembled segment, whole
    assert gateway.rows("SELECT COUNT(*) FROM segments") == [(0,)]
    assert not list((gateway.hospital.data_dir.vault_dir).glob("*/*"))


def test_record_naming_another_badge_is_a_badge_mismatch(gateway: Gateway) -> None:
    a = gateway.a
    record = a.record("inc-9", 0, 3)
    other = SignedIncident.sign(
        replace(record, badge_id="badge-b"),
        BadgeIdentity("badge-b", a.identity.signing_key),  # signed by badge-a itself
    )
    gateway.send(a.topic("incident"), other.to_bytes())
    (rejection,) = gateway.rejections()
    assert (rejection.badge, rejection.reason, rejection.key) == (
        "badge-a",
        "badge-mismatch",
        "inc-9",
    )
    assert gateway.intake.counts() == {"badge-mismatch": 1}
    assert gateway.rows("SELECT COUNT(*) FROM incidents") == [(0,)]


def test_unknown_badge_and_garbage_topics_are_quarantined_without_an_answer(
    gateway: Gateway,
) -> None:
    stranger = BadgeMessages(BadgeIdentity.generate("badge-zz"), gateway.a.custodian)
    gateway.send(stranger.topic("heartbeat"), stranger.heartbeat(1, 2))
    gateway.send("medbadge/v1/badge/../../etc/alert", b"\x00")
    gateway.send("medbadge/v1/gateway/badge-a/receipt", b"x")
    assert gateway.published == []
    assert gateway.intake.counts() == {"malformed": 2, "unknown-badge": 1}
    assert len(gateway.quarantined()) == 2  # an unknown badge's bytes are not kept
    assert gateway.intake.quarantine.not_kept() == {"unknown-badge": 1}


def test_revoked_badge_is_refused_without_an_answer(gateway: Gateway) -> None:
    gateway.alter("UPDATE badges SET revoked_at_ns = 1 WHERE badge_id = 'badge-a'")
    gateway.send(gateway.a.topic("alert"), gateway.a.alert("inc-1"))
    assert gateway.published == [] and gateway.alerts == []
    assert gateway.intake.counts() == {"unknown-badge": 1}
    assert gateway.quarantined() == []  # only the metadata of a revoked badge's message
    assert gateway.intake.quarantine.not_kept() == {"unknown-badge": 1}


def test_segment_no_incident_covers_is_unexpected(gateway: Gateway) -> None:
    a = gateway.a
    gateway.send(a.topic("incident"), a.incident("inc-1", 0, 1))
    lone = a.seal_one(7, a.previous)
    gateway.send_segment(a, lone, "inc-1")
    reasons = {(r.reason, r.key) for r in gateway.rejections()}
    assert reasons == {("unexpected-segment", "7")}
    assert not list((gateway.hospital.data_dir.root / PARTIAL_DIR).glob("*/*"))


def test_open_incident_segments_are_stored_before_its_record(gateway: Gateway) -> None:
    a = gateway.a
    segments = a.seal(4)
    gateway.send(a.topic("alert"), a.alert("inc-1", 2, first_seq=1))
    for seq in (1, 2, 3):  # the pre-roll and the post-roll so far, the incident still open
        gateway.send_segment(a, segments[seq], "inc-1")
    assert [(r.subject, r.key) for r in gateway.receipts()] == [
        ("alert", "inc-1"),
        ("segment", "1"),
        ("segment", "2"),
        ("segment", "3"),
    ]
    assert gateway.rows("SELECT seq, incident_id FROM segments ORDER BY seq") == [
        (1, "inc-1"),
        (2, "inc-1"),
        (3, "inc-1"),
    ]
    # before the pre-roll the alert named: refused, kept in quarantine, nothing stored
    gateway.send_segment(a, segments[0], "inc-1")  # each of its chunks is refused
    refused = gateway.rejections()
    assert {(r.reason, r.key) for r in refused} == {("unexpected-segment", "0")}
    assert "before the pre-roll of open incident inc-1" in refused[0].detail
    assert len(gateway.quarantined()) == len(refused) > 0
    # the record closes it: the incident receipt follows at once, all segments being held
    gateway.send(a.topic("incident"), a.incident("inc-1", 1, 3))
    assert gateway.receipts()[-1].subject == "incident"
    assert gateway.rows("SELECT COUNT(*) FROM segments") == [(3,)]


def test_a_closed_incident_takes_no_segment_beyond_its_record(gateway: Gateway) -> None:
    a = gateway.a
    segments = a.seal(3)
    gateway.send(a.topic("alert"), a.alert("inc-1", first_seq=0))
    gateway.send(a.topic("incident"), a.incident("inc-1", 0, 1))
    gateway.send_segment(a, segments[2], "inc-1")
    refused = gateway.rejections()
    assert {(r.reason, r.key) for r in refused} == {("unexpected-segment", "2")}
    assert "inc-1 is not open" in refused[0].detail


def test_a_segment_naming_an_incident_never_alerted_is_unexpected(gateway: Gateway) -> None:
    a = gateway.a
    segments = a.seal(2)
    gateway.send(a.topic("alert"), a.alert("inc-1"))
    gateway.send_segment(a, segments[0], "inc-1")  # open inc-1 takes it
    gateway.send_segment(a, segments[1], "inc-2")  # no alert, no record: refused
    assert {(r.reason, r.key) for r in gateway.rejections()} == {("unexpected-segment", "1")}
    assert gateway.rows("SELECT seq, incident_id FROM segments") == [(0, "inc-1")]


def test_segment_that_does_not_chain_is_a_chain_break(gateway: Gateway) -> None:
    a = gateway.a
    segments = a.seal(3)
    gateway.send(a.topic("incident"), a.incident("inc-1", 0, 2))
    gateway.send_segment(a, segments[0], "inc-1")
    gateway.send_segment(a, segments[2], "inc-1")
    inserted = a.seal_one(1, sha256(b"not the header of segment 0"))
    gateway.send_segment(a, inserted, "inc-1")
    (rejection,) = gateway.rejections()
    assert (rejection.reason, rejection.key) == ("chain-break", "1")
    assert "does not link" in rejection.detail
    assert gateway.intake.counts() == {"chain-break": 1}
    # the genuine segment 1 still completes the incident
    gateway.send_segment(a, segments[1], "inc-1")
    assert ("incident", "inc-1") in {(r.subject, r.key) for r in gateway.receipts()}


def test_replayed_old_chunk_is_answered_but_not_stored_again(gateway: Gateway) -> None:
    a = gateway.a
    segments = a.seal(2)
    gateway.send(a.topic("incident"), a.incident("inc-1", 0, 1))
    for segment in segments:
        gateway.send_segment(a, segment, "inc-1")
    before = gateway.rows("SELECT * FROM segments ORDER BY seq")
    gateway.published.clear()
    old_chunk = a.chunks(segments[1], "inc-1")[2]
    gateway.send(a.topic("segment"), old_chunk)
    (receipt,) = gateway.receipts()
    assert (receipt.subject, receipt.key) == ("segment", "1")
    assert gateway.rows("SELECT * FROM segments ORDER BY seq") == before
    assert not list((gateway.hospital.data_dir.root / PARTIAL_DIR).glob("*/*"))


def test_chunks_that_do_not_add_up_are_a_hash_mismatch(gateway: Gateway) -> None:
    a = gateway.a
    (segment,) = a.seal(1)
    gateway.send(a.topic("incident"), a.incident("inc-1", 0, 0))
    data = segment.to_bytes()
    chunk = SegmentChunk("badge-a", "inc-1", 0, 0, 1, 0, len(data), sha256(b"other"), data)
    gateway.send(a.topic("segment"), chunk.to_bytes())
    (rejection,) = gateway.rejections()
    assert rejection.reason == "hash-mismatch"
    (kept,) = gateway.quarantined()
    assert kept.read_bytes() == data
    # the badge sends it again, properly, and it is stored
    gateway.send_segment(a, segment, "inc-1")
    assert ("segment", "0") in {(r.subject, r.key) for r in gateway.receipts()}


def test_chunk_disagreeing_with_its_partial_is_refused(gateway: Gateway) -> None:
    a = gateway.a
    (segment,) = a.seal(1)
    gateway.send(a.topic("incident"), a.incident("inc-1", 0, 0))
    chunks = a.chunks(segment, "inc-1")
    gateway.send(a.topic("segment"), chunks[0])
    first = SegmentChunk.from_bytes(chunks[1], "test")
    liar = replace(first, total_size=first.total_size + 10)
    gateway.send(a.topic("segment"), liar.to_bytes())
    assert [(r.reason, r.key) for r in gateway.rejections()] == [("conflict", "0")]
    for chunk in chunks[1:]:
        gateway.send(a.topic("segment"), chunk)
    assert [r.key for r in gateway.receipts()] == ["0", "inc-1"]


def test_oversized_payload_is_refused(gateway: Gateway) -> None:
    a = gateway.a
    gateway.send(a.topic("segment"), bytes(MAX_PAYLOAD_BYTES + 1))
    (rejection,) = gateway.rejections()
    assert (rejection.reason, rejection.subject) == ("oversized", "segment")


def test_stale_partial_goes_to_quarantine_and_the_resend_completes(gateway: Gateway) -> None:
    a = gateway.a
    (segment,) = a.seal(1)
    gateway.send(a.topic("incident"), a.incident("inc-1", 0, 0))
    chunks = a.chunks(segment, "inc-1")
    for chunk in chunks[:2]:
        gateway.send(a.topic("segment"), chunk)
    assert gateway.intake.expire_partials() == 0
    gateway.clock.advance(DEFAULT_TIMEOUT_NS + 1)
    assert gateway.intake.expire_partials() == 1
    assert gateway.intake.counts() == {"partial-timeout": 1}
    assert gateway.rejections() == []  # the badge resends on its own; nothing to tell it
    (kept,) = gateway.quarantined()
    assert kept.read_bytes() == segment.to_bytes()[: 2 * 1024]
    gateway.send_segment(a, segment, "inc-1")
    assert [r.key for r in gateway.receipts()] == ["0", "inc-1"]


def test_a_stored_segments_partial_brought_back_is_removed_not_quarantined(
    gateway: Gateway,
) -> None:
    """A stored segment's partial is unlinked without a directory fsync; if a power cut
    brings it back, the sweep recognises the stored segment and only removes it."""
    a = gateway.a
    (segment,) = a.seal(1)
    gateway.send(a.topic("incident"), a.incident("inc-1", 0, 0))
    gateway.send_segment(a, segment, "inc-1")
    assert [r.key for r in gateway.receipts()] == ["0", "inc-1"]
    partials = gateway.hospital.data_dir.root / PARTIAL_DIR
    assert not list(partials.glob("*/*"))
    revived = Reassembly(partials, clock=gateway.clock)  # the names as before the power cut
    for chunk in a.chunks(segment, "inc-1"):
        revived.add(SegmentChunk.from_bytes(chunk, "test"))
    assert len(list(partials.glob("*/*"))) == 2
    gateway.clock.advance(DEFAULT_TIMEOUT_NS + 1)
    assert gateway.intake.expire_partials() == 1
    assert not list(partials.glob("*/*"))
    assert gateway.quarantined() == [] and gateway.intake.counts() == {}
    assert gateway.rows("SELECT COUNT(*) FROM segments") == [(1,)]


def test_upload_resumes_across_an_intake_restart(gateway: Gateway) -> None:
    a = gateway.a
    segments = a.seal(2)
    gateway.send(a.topic("incident"), a.incident("inc-1", 0, 1))
    gateway.send_segment(a, segments[0], "inc-1")
    chunks = a.chunks(segments[1], "inc-1")
    half = len(chunks) // 2
    for chunk in chunks[:half]:
        gateway.send(a.topic("segment"), chunk)
    gateway.restart()
    for chunk in chunks[half:]:
        gateway.send(a.topic("segment"), chunk)
    assert [r.key for r in gateway.receipts()] == ["0", "1", "inc-1"]
    assert gateway.rows("SELECT COUNT(*) FROM segments") == [(2,)]


def test_storage_failure_is_an_internal_error_and_the_resend_succeeds(gateway: Gateway) -> None:
    a = gateway.a
    (segment,) = a.seal(1)
    gateway.send(a.topic("incident"), a.incident("inc-1", 0, 0))
    digest = sha256(segment.to_bytes()).hex()
    blocker = gateway.hospital.data_dir.vault_dir / digest[:2]
    blocker.write_bytes(b"a file where the vault needs a directory")
    gateway.send_segment(a, segment, "inc-1")
    assert gateway.intake.counts() == {"internal-error": 1}
    assert gateway.rejections() == [] and gateway.receipts() == []
    blocker.unlink()
    gateway.send(a.topic("segment"), a.chunks(segment, "inc-1")[-1])
    assert [r.key for r in gateway.receipts()] == ["0", "inc-1"]


def test_alert_is_stored_receipted_and_announced_once(gateway: Gateway) -> None:
    a = gateway.a
    gateway.send(a.topic("alert"), a.alert("inc-5"))
    gateway.send(a.topic("alert"), a.alert("inc-5"))
    first, second = gateway.receipts()
    assert first == second and (first.subject, first.key) == ("alert", "inc-5")
    (event,) = gateway.alerts
    assert event.location == "Ward 3" and event.registered_location == "Ward 3"
    assert event.estimated_press_wall_ns is None  # no heartbeat yet: no clock estimate
    assert event.claimed_latency_ns == event.received_wall_ns - a.press(0).wall_ns
    other = a.alert("inc-5", seq=3)  # another alert under the same incident id
    gateway.send(a.topic("alert"), other)
    assert [r.reason for r in gateway.rejections()] == ["conflict"]


def test_heartbeat_and_status_update_the_badge_state(gateway: Gateway) -> None:
    a = gateway.a
    send_heartbeats(gateway, a, count=4)
    state = gateway.badge_state("badge-a")
    assert state is not None and state.online and state.battery_percent == 77
    assert (state.ring_segments, state.dropped_frames, state.recording) == (30, 2, True)
    assert (state.battery_millivolts, state.battery_rate_millipercent_per_hour) == (3_912, -2_080)
    assert (state.soc_temperature_millicelsius, state.clock_synchronised) == (51_540, True)
    assert state.clock_offset_ns is not None and state.clock_error_ns is not None
    assert abs(state.clock_offset_ns - CLOCK_OFFSET_NS) <= state.clock_error_ns
    gateway.send(a.topic("status"), a.status("offline"))
    offline = gateway.badge_state("badge-a")
    assert offline is not None and not offline.online and offline.battery_percent == 77
    gateway.send(a.topic("status"), gateway.b.status("online"))  # badge-b's status on a's topic
    assert [r.reason for r in gateway.rejections()] == ["badge-mismatch"]


def test_numbers_beyond_the_database_are_malformed_not_a_failure(gateway: Gateway) -> None:
    a = gateway.a
    gateway.send(a.topic("heartbeat"), a.heartbeat(1, 2**64 - 1))
    assert [r.reason for r in gateway.rejections()] == ["malformed"]
    assert gateway.intake.counts() == {"malformed": 1}


def test_a_failing_alert_listener_does_not_stop_the_receipt(tmp_path: Path) -> None:
    hospital = make_hospital(tmp_path, ("badge-a",))
    published: list[tuple[str, bytes]] = []

    def broken_console(_event: AlertEvent) -> None:
        raise RuntimeError("console is down")

    intake = Intake(hospital.data_dir, lambda t, p: published.append((t, p)), broken_console)
    badge = BadgeMessages.of(hospital.bundles["badge-a"])
    intake.handle(badge.topic("alert"), badge.alert("inc-1"))
    assert [r.subject for r in receipts(published, hospital.gateway_key)] == ["alert"]
    assert intake.counts() == {}
    intake.close()


def _canonical_maps() -> st.SearchStrategy[bytes]:
    """Canonical CBOR maps that look like messages but are not valid ones."""
    values = st.one_of(
        st.integers(min_value=-(2**63), max_value=2**64 - 1),
        st.binary(max_size=40),
        st.text(max_size=20),
        st.booleans(),
        st.none(),
    )
    keys = st.sampled_from(
        ["type", "badge", "seq", "record", "signature", "data", "incident", "state", "boot"]
    )
    return st.dictionaries(keys, values, max_size=6).map(encode)


def test_random_garbage_is_refused_and_counted_and_the_intake_keeps_working(
    sqlite_gateway: Gateway,
) -> None:
    gateway = sqlite_gateway  # parsing, not storage: once is enough
    # the checks are under test here, not the cut-off that would stop the flood (test_cutoff)
    gateway.limits = IntakeLimits(cutoff=CutoffSettings(refusals=100_000))
    gateway.restart()
    a = gateway.a
    gateway.send(a.topic("incident"), a.incident("inc-1", 0, 0))
    samples = [
        a.heartbeat(1, 2),
        a.alert("inc-2"),
        a.incident("inc-3", 0, 9),
        SegmentChunk("badge-a", "inc-7", 50, 0, 1, 0, 4, bytes(32), b"abcd").to_bytes(),
    ]
    mutated = st.tuples(st.sampled_from(samples), st.integers(0, 10_000), st.integers(1, 255))
    payloads = st.one_of(
        st.binary(max_size=200),
        _canonical_maps(),
        mutated.map(lambda m: m[0][: m[1] % len(m[0])]),  # truncated
        mutated.map(  # one byte changed (chunks excluded: their data is not signed)
            lambda m: (
                m[0]
                if m[0] is samples[3]
                else m[0][: m[1] % len(m[0])]
                + bytes([m[0][m[1] % len(m[0])] ^ m[2]])
                + m[0][m[1] % len(m[0]) + 1 :]
            )
        ),
    )
    topics = st.one_of(
        st.text(max_size=60),
        st.sampled_from(["alert", "heartbeat", "status", "incident", "segment"]).map(a.topic),
        st.sampled_from(["alert", "segment"]).map(lambda kind: f"medbadge/v1/badge/badge-q/{kind}"),
    )
    counted = [0]

    @settings(
        max_examples=10_000,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(topic=topics, payload=payloads)
    def refused(topic: str, payload: bytes) -> None:
        gateway.intake.handle(topic, payload)
        counted[0] += 1
        assert sum(gateway.intake.counts().values()) == counted[0], (topic, payload)

    refused()
    assert "internal-error" not in gateway.intake.counts()
    assert gateway.receipts() == []
    # and a real segment still goes through afterwards
    (segment,) = a.seal(1)
    gateway.send_segment(a, segment, "inc-1")
    assert [(r.subject, r.key) for r in gateway.receipts()] == [
        ("segment", "0"),
        ("incident", "inc-1"),
    ]


def test_a_segment_row_commits_only_together_with_its_receipt(gateway: Gateway) -> None:
    a = gateway.a
    (segment,) = a.seal(1)
    gateway.send(a.topic("incident"), a.incident("inc-1", 0, 0))
    leaves = gateway.rows("SELECT COUNT(*) FROM ledger_leaves")
    gateway.refuse_segment_receipts(True)
    gateway.send_segment(a, segment, "inc-1")
    assert gateway.intake.counts() == {"internal-error": 1}
    assert gateway.published == []
    assert gateway.rows("SELECT COUNT(*) FROM segments") == [(0,)]  # the row went with it
    assert gateway.rows("SELECT COUNT(*) FROM ledger_leaves") == leaves
    gateway.refuse_segment_receipts(False)
    gateway.send(a.topic("segment"), a.chunks(segment, "inc-1")[-1])  # a redelivery
    assert [r.key for r in gateway.receipts()] == ["0", "inc-1"]
    assert gateway.rows("SELECT COUNT(*) FROM segments") == [(1,)]


def test_chunks_out_of_order_are_checked_against_the_file(gateway: Gateway) -> None:
    a = gateway.a
    good, bad = a.seal(2)
    gateway.send(a.topic("incident"), a.incident("inc-1", 0, 1))
    for chunk in reversed(a.chunks(good, "inc-1")):
        gateway.send(a.topic("segment"), chunk)
    (receipt,) = gateway.receipts()
    assert (receipt.key, receipt.sha256) == ("0", sha256(good.to_bytes()))
    data = bad.to_bytes()
    half = len(data) // 2
    liars = [  # the bytes of segment 1, declared with another SHA-256, second half first
        SegmentChunk("badge-a", "inc-1", 1, index, 2, offset, len(data), sha256(b"x"), part)
        for index, offset, part in ((1, half, data[half:]), (0, 0, data[:half]))
    ]
    for liar in liars:
        gateway.send(a.topic("segment"), liar.to_bytes())
    assert [r.reason for r in gateway.rejections()] == ["hash-mismatch"]
    (kept,) = gateway.quarantined()
    assert kept.read_bytes() == data
