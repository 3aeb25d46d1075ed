"""The badge uplink against a real mosquitto: order, reassembly, receipts, faults and resume."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from badge.errors import UplinkError
from badge.heartbeat import read_heartbeat
from badge.outbox import Outbox
from badge.receipts import ReceiptStore
from badge.ring import Ring
from badge.uplink import Uplink
from badge.uplink_session import backoff_delay
from evidence.bundle import BrokerCredentials, EnrolmentBundle
from evidence.hashing import sha256
from evidence.incident import IncidentRecord, Press, SignedIncident, sign_alert
from evidence.keys import BadgeIdentity, CustodianPrivateKey, SigningKey
from evidence.messages import Heartbeat
from tests.badge.gateway_responder import GatewayResponder
from tests.badge.recording import Recorder
from tests.badge.uplink_process import PRE_ROLL_NS, RING_MAX_BYTES
from tests.mosquitto import HOST, MosquittoProcess, running_broker

ROOT = Path(__file__).resolve().parents[2]
SECOND = 1_000_000_000


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.02)


@dataclass
class Incident:
    """An incident put on the badge: its id, segment range and the sealed bytes of each."""

    incident_id: str
    first_seq: int
    last_seq: int
    sealed: dict[int, bytes] = field(default_factory=dict)

    @property
    def seqs(self) -> list[int]:
        return list(range(self.first_seq, self.last_seq + 1))


class Badge:
    """A badge's storage (ring, outbox, receipts) and bundle, without a camera."""

    def __init__(self, root: Path, broker: MosquittoProcess, gateway_key: SigningKey) -> None:
        self.root = root
        self.identity = BadgeIdentity.generate("badge-a")
        self.custodian = CustodianPrivateKey.generate()
        self.bundle = EnrolmentBundle(
            identity=self.identity,
            hospital="Test Hospital",
            key_generation=1,
            custodian_key=self.custodian.public_key,
            gateway_key=gateway_key.public_key,
            evidence_ca_pem=broker.ca_file.read_bytes(),
            broker=BrokerCredentials(HOST, broker.tls_port, "badge-a", broker.password("badge-a")),
        )
        self.ring = self.open_ring()
        self.outbox = Outbox(root / "outbox.db")
        self.receipts = ReceiptStore(root / "receipts.db")
        self.uplinks: list[Uplink] = []
        self.recorder = Recorder(self.identity, self.custodian)
        self._clock = 0

    def open_ring(self) -> Ring:
        return Ring.open(self.root / "ring", pre_roll_ns=PRE_ROLL_NS, max_bytes=RING_MAX_BYTES)

    def store_segments(self, count: int, size: int) -> list[int]:
        stored = self.recorder.store(self.ring, count, first_index=self._clock, size=size)
        self._clock += count
        return [segment.seq for segment in stored]

    def alert(self, incident_id: str) -> None:
        press = Press(self.ring.boot, time.monotonic_ns(), time.time_ns())
        alert = sign_alert(self.identity, incident_id, press, "ER", 0)
        self.outbox.put("alert", incident_id, alert)

    def incident(self, segments: int, size: int = 150_000) -> Incident:
        """Press (alert queued), record ``segments`` segments, close the incident (queued)."""
        incident_id = f"incident-{secrets.token_hex(4)}"
        self.alert(incident_id)
        seqs = self.store_segments(segments, size)
        sealed = {s.seq: s.path.read_bytes() for s in self.ring.segments(seqs[0], seqs[-1])}
        self.close_incident(incident_id, seqs[0], seqs[-1])
        return Incident(incident_id, seqs[0], seqs[-1], sealed)

    def close_incident(self, incident_id: str, first_seq: int, last_seq: int) -> None:
        """Pin ``first_seq..last_seq`` to the incident and queue its signed record."""
        self.ring.pin(incident_id, first_seq, last_seq)
        record = IncidentRecord(
            badge_id="badge-a",
            incident_id=incident_id,
            presses=(Press(self.ring.boot, 1, time.time_ns()),),
            pre_roll_ns=PRE_ROLL_NS,
            post_roll_ns=2 * SECOND,
            first_seq=first_seq,
            last_seq=last_seq,
            location="ER",
            battery_percent=None,
            storage_free_bytes=1,
            closed_wall_ns=time.time_ns(),
        )
        signed = SignedIncident.sign(record, self.identity)
        self.outbox.put("incident", incident_id, signed.to_bytes())

    def uplink(self, **options: object) -> Uplink:
        settings: dict[str, object] = {
            "tls": True,
            "chunk_bytes": 64 * 1024,
            "heartbeat_seconds": 5.0,
            "resend_seconds": 2.0,
        }
        settings.update(options)
        uplink = Uplink(
            self.identity,
            self.bundle,
            self.ring,
            self.outbox,
            receipts=self.receipts,
            heartbeat=lambda: read_heartbeat("badge-a", self.ring, self.outbox),
            **settings,  # type: ignore[arg-type]
        )
        self.uplinks.append(uplink)
        return uplink

    def on_ring(self, incident: Incident) -> list[int]:
        return [s.seq for s in self.ring.segments(incident.first_seq, incident.last_seq)]

    def close(self) -> None:
        for uplink in self.uplinks:
            uplink.stop()
        self.outbox.close()
        self.receipts.close()


@pytest.fixture
def gateway_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def badge(tmp_path: Path, broker: MosquittoProcess, gateway_key: SigningKey) -> Iterator[Badge]:
    made = Badge(tmp_path / "badge", broker, gateway_key)
    yield made
    made.close()


@pytest.fixture
def responder(
    broker: MosquittoProcess, badge: Badge, gateway_key: SigningKey
) -> Iterator[GatewayResponder]:
    started = GatewayResponder(broker, badge.identity.signing_key.public_key, gateway_key).start()
    yield started
    started.close()
    assert not started.problems, started.problems


def all_receipted(badge: Badge) -> bool:
    return not badge.outbox.pending()


def assert_delivered_intact(responder: GatewayResponder, incident: Incident) -> None:
    for seq in incident.seqs:
        assert responder.segments[seq] == incident.sealed[seq], f"segment {seq} differs"


def assert_in_custody(badge: Badge, incident: Incident) -> None:
    """Everything freed, and for each thing freed a kept receipt naming it exactly."""
    assert badge.on_ring(incident) == []
    assert all(pin.incident_id != incident.incident_id for pin in badge.ring.pins())
    kept = {(r.subject, r.key): r.sha256 for r in badge.receipts.all()}
    for seq in incident.seqs:
        assert kept[("segment", str(seq))] == sha256(incident.sealed[seq])
    assert ("incident", incident.incident_id) in kept
    assert ("alert", incident.incident_id) in kept


# ------------------------------------------------------------------------------- order


def test_alert_first_then_record_then_segments_reassembled_and_freed(
    badge: Badge, responder: GatewayResponder
) -> None:
    incident = badge.incident(segments=4)
    uplink = badge.uplink()
    uplink.start()
    wait_until(lambda: all_receipted(badge), "every item receipted")

    kinds = [kind for kind in responder.kinds() if kind not in ("heartbeat", "status")]
    assert kinds[0] == "alert", "the alert goes before anything else"
    assert kinds[1] == "incident", "the record goes before its segments"
    assert set(kinds[2:]) == {"segment"}
    chunks = responder.chunks()
    assert [c.seq for c in chunks] == sorted(c.seq for c in chunks), "segments in order"
    assert all(c.count == 3 for c in chunks), "150 kB segments travel in 64 KiB chunks"
    assert_delivered_intact(responder, incident)
    assert_in_custody(badge, incident)
    stats = uplink.stats
    assert stats.connected
    assert (stats.alerts_sent, stats.incidents_sent, stats.segments_sent) == (1, 1, 4)
    assert stats.answers.receipts == 6
    assert [status.state for status in responder.statuses][:1] == ["online"]


def test_an_alert_overtakes_video_being_sent(badge: Badge, responder: GatewayResponder) -> None:
    incident = badge.incident(segments=4)
    uplink = badge.uplink(bandwidth_bytes_per_s=300_000)
    uplink.start()
    wait_until(lambda: len(responder.chunks()) >= 2, "the upload under way")
    badge.alert("second-press")
    uplink.wake()
    wait_until(lambda: all_receipted(badge), "every item receipted")

    second = next(
        index
        for index, seen in enumerate(responder.seen)
        if seen.kind == "alert" and b"second-press" in seen.payload
    )
    later = {seen.chunk.seq for seen in responder.seen[second + 1 :] if seen.chunk is not None}
    assert incident.last_seq in later, "the alert went while video was still queued"
    assert_in_custody(badge, incident)


def test_an_open_incident_sends_its_footage_before_its_record(
    badge: Badge, responder: GatewayResponder
) -> None:
    incident_id = "incident-open"
    badge.alert(incident_id)
    pre_roll = badge.store_segments(3, 150_000)
    sealed = {s.seq: s.path.read_bytes() for s in badge.ring.segments(pre_roll[0])}
    badge.ring.pin(incident_id, pre_roll[0])  # open: the post-roll is still being recorded
    uplink = badge.uplink()
    uplink.start()
    wait_until(lambda: badge.ring.segments(pre_roll[0]) == [], "the pre-roll receipted and freed")
    assert [pin.last_seq for pin in badge.ring.pins()] == [None], "the incident is still open"
    assert "incident" not in responder.kinds(), "no record before the incident closes"

    post_roll = badge.store_segments(2, 150_000)  # sealed while open: sent as they come
    sealed.update({s.seq: s.path.read_bytes() for s in badge.ring.segments(post_roll[0])})
    uplink.wake()
    wait_until(lambda: badge.ring.segments(post_roll[0]) == [], "the post-roll receipted")
    badge.close_incident(incident_id, pre_roll[0], post_roll[-1])
    uplink.wake()
    wait_until(lambda: all_receipted(badge), "the record and the incident receipted")

    incident = Incident(incident_id, pre_roll[0], post_roll[-1], sealed)
    assert_delivered_intact(responder, incident)
    assert_in_custody(badge, incident)
    first_chunks = [chunk.seq for chunk in responder.chunks() if chunk.index == 0]
    assert first_chunks == incident.seqs, "each segment sent once, in order"
    assert {chunk.incident for chunk in responder.chunks()} == {incident_id}


# ----------------------------------------------------------------------------- receipts


def test_a_receipt_signed_by_another_key_frees_nothing(
    badge: Badge, responder: GatewayResponder, gateway_key: SigningKey
) -> None:
    incident = badge.incident(segments=3)
    responder.signing_key = SigningKey.generate()
    uplink = badge.uplink(resend_seconds=30.0)
    uplink.start()
    # alert, 3 segments and the incident each got a (forged) receipt
    wait_until(lambda: uplink.stats.answers.invalid_messages >= 5, "forged receipts seen")

    assert badge.on_ring(incident) == incident.seqs
    assert [pin.incident_id for pin in badge.ring.pins()] == [incident.incident_id]
    assert len(badge.outbox.pending()) == 2
    assert badge.receipts.all() == []
    assert uplink.stats.answers.receipts == 0


def test_a_receipt_for_another_sha_frees_nothing(badge: Badge, responder: GatewayResponder) -> None:
    incident = badge.incident(segments=3)
    responder.wrong_sha = True
    uplink = badge.uplink(resend_seconds=1.0)
    uplink.start()
    wait_until(lambda: uplink.stats.answers.unmatched_receipts >= 4, "mismatched receipts seen")

    assert badge.on_ring(incident) == incident.seqs
    assert len(badge.outbox.pending()) == 2
    assert badge.receipts.all() == []

    responder.wrong_sha = False  # the next attempt is answered truthfully
    wait_until(lambda: all_receipted(badge), "every item receipted on the resend")
    assert_in_custody(badge, incident)


def test_a_rejection_is_counted_and_frees_nothing(
    badge: Badge, responder: GatewayResponder
) -> None:
    incident = badge.incident(segments=2)
    responder.reject_segments = "chain-break"
    uplink = badge.uplink(resend_seconds=30.0)
    uplink.start()
    wait_until(lambda: uplink.stats.answers.rejections.get("chain-break") == 2, "two rejections")

    assert badge.on_ring(incident) == incident.seqs
    assert [item.kind for item in badge.outbox.pending()] == ["incident"]
    last = uplink.stats.answers.last_rejection
    assert last is not None and "chain-break" in last


# -------------------------------------------------------------------------------- faults


class FreeingWatch:
    """Watches, while an upload runs, that no segment leaves the ring before its receipt."""

    def __init__(self, badge: Badge, incident: Incident) -> None:
        self.violations: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(badge, incident), daemon=True)
        self._thread.start()

    def _run(self, badge: Badge, incident: Incident) -> None:
        while not self._stop.wait(0.01):
            on_ring = set(badge.on_ring(incident))  # read before the receipts: no false alarm
            kept = badge.receipts.receipted_seqs(incident.first_seq, incident.last_seq)
            self.violations += [s for s in incident.seqs if s not in on_ring and s not in kept]

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join()
        return self.violations


def test_broker_killed_mid_upload_completes_after_restart(
    badge: Badge, responder: GatewayResponder, broker: MosquittoProcess
) -> None:
    incident = badge.incident(segments=8)
    watch = FreeingWatch(badge, incident)
    uplink = badge.uplink(bandwidth_bytes_per_s=600_000)
    uplink.start()
    wait_until(lambda: len(responder.segments) >= 2, "two segments stored")
    broker.kill()
    wait_until(lambda: not uplink.connected, "the badge sees the broker gone")
    broker.start()
    wait_until(lambda: all_receipted(badge), "every item receipted after the restart", 40)

    assert watch.stop() == [], "a segment left the ring before its receipt"
    assert_delivered_intact(responder, incident)
    assert_in_custody(badge, incident)
    stats = uplink.stats
    assert stats.reconnects >= 1
    assert stats.answers.receipts == len(incident.seqs) + 2, "each receipt acted on exactly once"
    kept = [(r.subject, r.key) for r in badge.receipts.all()]
    assert len(kept) == len(set(kept)) == len(incident.seqs) + 2


def test_uplink_killed_mid_upload_resumes_from_its_receipts(
    badge: Badge, responder: GatewayResponder, tmp_path: Path
) -> None:
    incident = badge.incident(segments=6)
    badge.bundle.write(tmp_path / "bundle")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.badge.uplink_process",
            str(tmp_path / "bundle"),
            str(badge.root / "ring"),
            str(badge.root / "outbox.db"),
            str(badge.root / "receipts.db"),
            "300000",
        ],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_until(
            lambda: len(badge.receipts.receipted_seqs(incident.first_seq, incident.last_seq)) >= 2,
            "two segment receipts kept by the badge process",
        )
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    responder.wait(
        lambda: [s.state for s in responder.statuses][-1:] == ["offline"], "the last will"
    )
    kept_before = badge.receipts.receipted_seqs(incident.first_seq, incident.last_seq)
    assert kept_before and len(kept_before) < len(incident.seqs), "killed mid-upload"
    seen_before = len(responder.seen)

    badge.ring = badge.open_ring()  # as after a reboot
    uplink = badge.uplink()
    uplink.start()
    wait_until(lambda: all_receipted(badge), "every item receipted after the restart")

    resent = {chunk.seq for chunk in responder.chunks(since=seen_before)}
    assert not resent & kept_before, "a segment already receipted was sent again"
    assert resent, "the rest was sent"
    assert_delivered_intact(responder, incident)
    assert_in_custody(badge, incident)


def test_receipts_sent_while_the_badge_was_away_arrive_on_return(
    badge: Badge, responder: GatewayResponder
) -> None:
    incident = badge.incident(segments=3)
    responder.hold = True
    first = badge.uplink()
    first.start()
    responder.wait(lambda: len(responder.held) == 5, "every receipt written")
    first.stop()
    responder.wait(lambda: [s.state for s in responder.statuses][-1:] == ["offline"], "offline")
    assert badge.on_ring(incident) == incident.seqs
    responder.release_held()  # the broker queues them in the badge's session
    time.sleep(0.3)
    seen_before = len(responder.seen)

    second = badge.uplink()
    second.start()
    wait_until(lambda: all_receipted(badge), "the queued receipts acted on")
    assert responder.chunks(since=seen_before) == [], "nothing was sent again"
    assert_in_custody(badge, incident)


def test_broker_unreachable_for_a_while_then_everything_arrives(
    badge: Badge, responder: GatewayResponder, broker: MosquittoProcess
) -> None:
    incident = badge.incident(segments=3)
    broker.stop()
    uplink = badge.uplink()
    uplink.start()
    time.sleep(2.5)
    assert not uplink.connected
    assert uplink.stats.link_error is not None and "cannot reach" in uplink.stats.link_error
    assert badge.on_ring(incident) == incident.seqs
    broker.start()
    wait_until(lambda: all_receipted(badge), "every item receipted once the broker is up", 40)
    assert_delivered_intact(responder, incident)
    assert_in_custody(badge, incident)


# -------------------------------------------------------------------------------- limits


def test_bandwidth_cap_is_respected(badge: Badge, responder: GatewayResponder) -> None:
    incident = badge.incident(segments=4, size=250_000)  # 1 MB of sealed video
    uplink = badge.uplink(bandwidth_bytes_per_s=250_000)
    uplink.start()
    wait_until(lambda: all_receipted(badge), "every item receipted")
    times = [seen.at for seen in responder.seen if seen.kind == "segment"]
    # 1 MB at 250 kB/s, the first 64 KiB allowed at once: about 3.7 s
    assert times[-1] - times[0] >= 3.0
    assert_in_custody(badge, incident)


def test_chunks_fit_the_brokers_maximum_packet_size(
    tmp_path: Path, gateway_key: SigningKey
) -> None:
    limit = 20_000
    with running_broker(tmp_path / "small-broker", max_packet_bytes=limit) as small:
        badge = Badge(tmp_path / "badge", small, gateway_key)
        responder = GatewayResponder(small, badge.identity.signing_key.public_key, gateway_key)
        responder.start()
        try:
            incident = badge.incident(segments=2, size=50_000)
            uplink = badge.uplink(chunk_bytes=64 * 1024)
            uplink.start()
            wait_until(lambda: all_receipted(badge), "every item receipted")
            sizes = [len(s.payload) for s in responder.seen if s.kind == "segment"]
            topic = len("medbadge/v1/badge/badge-a/segment")
            # fixed header 1 + length 3, topic 2 + name, packet id 2, no properties 1
            assert max(sizes) + 1 + 3 + 2 + topic + 2 + 1 <= limit
            assert max(sizes) > limit - 200, "chunks as large as the broker allows"
            assert len(sizes) >= 6, "50 kB segments in chunks under 20 kB"
            assert uplink.stats.reconnects == 0, "the broker never dropped the badge"
            assert_in_custody(badge, incident)
        finally:
            responder.close()
            badge.close()


def test_heartbeat_arrives_and_verifies(badge: Badge, responder: GatewayResponder) -> None:
    badge.store_segments(2, 1000)
    uplink = badge.uplink(heartbeat_seconds=0.3)
    uplink.start()
    responder.wait(lambda: len(responder.heartbeats) >= 3, "three heartbeats")
    raw = next(seen.payload for seen in responder.seen if seen.kind == "heartbeat")
    beat = Heartbeat.open(raw, badge.identity.signing_key.public_key, "heartbeat")
    assert beat.badge == "badge-a"
    assert beat.boot == badge.ring.boot
    assert beat.ring_segments == 2
    assert abs(beat.wall_ns - time.time_ns()) < 60 * SECOND
    assert uplink.stats.heartbeats_sent >= 3


def test_the_uplink_sends_small_packets_without_waiting_for_acks(
    badge: Badge, responder: GatewayResponder
) -> None:
    uplink = badge.uplink()
    uplink.start()
    wait_until(lambda: uplink.connected, "the uplink connected")
    client = uplink._session._client
    connection = None if client is None else client.socket()
    assert isinstance(connection, socket.socket)
    assert connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_backoff_is_exponential_with_full_jitter() -> None:
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (3, 8.0), (6, 60.0), (40, 60.0)]:
        delays = [backoff_delay(attempt) for _ in range(200)]
        assert all(0.0 <= delay <= ceiling for delay in delays)
        assert max(delays) > ceiling / 2 and min(delays) < ceiling / 2, "spread over 0..ceiling"


def test_plain_mqtt_is_refused_off_loopback(badge: Badge) -> None:
    remote = EnrolmentBundle(
        **{**badge.bundle.__dict__, "broker": BrokerCredentials("10.1.2.3", 1883, "badge-a", "x")}
    )
    with pytest.raises(UplinkError, match="TLS is required"):
        Uplink(
            badge.identity,
            remote,
            badge.ring,
            badge.outbox,
            receipts=badge.receipts,
            tls=False,
            heartbeat=lambda: read_heartbeat("badge-a", badge.ring, badge.outbox),
        )


# -------------------------------------------------------------------------------- daemon


def test_the_daemon_sends_a_pressed_incident_and_shows_the_uplink_in_status(
    badge: Badge, responder: GatewayResponder, tmp_path: Path
) -> None:
    from gpiozero.pins.mock import MockFactory

    from badge.config import BadgeConfig
    from badge.daemon import BadgeDaemon

    badge.bundle.write(tmp_path / "bundle")
    config = tmp_path / "badge.toml"
    config.write_text(
        f'[badge]\nbundle = "{tmp_path / "bundle"}"\ndata_dir = "{tmp_path / "data"}"\n'
        '[capture]\nwidth = 320\nheight = 240\nsegment_seconds = 1.0\naudio = "none"\n'
        "[incident]\npre_roll_seconds = 2\npost_roll_seconds = 1\n"
        "[storage]\nmax_bytes = 50000000\n"
        "[uplink]\nheartbeat_seconds = 0.5\n"
    )
    daemon = BadgeDaemon(BadgeConfig.load(config), pin_factory=MockFactory())
    daemon.start()
    try:
        time.sleep(2.5)
        incident_id = daemon.press()["incident"]
        wait_until(lambda: daemon.recorder.closed_count == 1, "the incident closed")
        wait_until(lambda: not daemon.outbox.pending(), "the incident receipted", 30)
        status = daemon.status()
    finally:
        daemon.stop()

    kinds = [kind for kind in responder.kinds() if kind not in ("heartbeat", "status")]
    assert kinds[0] == "alert" and set(kinds[1:]) == {"segment", "incident"}
    assert kinds[1] == "segment", "the pre-roll goes at the press, before the record"
    assert kinds.count("incident") == 1
    record = SignedIncident.from_bytes(
        next(seen.payload for seen in responder.seen if seen.kind == "incident")
    ).record
    assert record.incident_id == incident_id
    assert all(seq in responder.segments for seq in range(record.first_seq, record.last_seq + 1))
    assert daemon.ring.pinned_seqs() == frozenset()
    uplink = status["uplink"]
    assert uplink["enabled"] and uplink["connected"]
    assert uplink["receipts"] == record.last_seq - record.first_seq + 3
    assert uplink["heartbeats_sent"] >= 1
    assert any(beat.recording for beat in responder.heartbeats), "heartbeats say recording"
