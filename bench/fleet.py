"""A fleet of badge connections for load tests and benchmarks: many per thread, all real MQTT.

Each :class:`FleetBadge` is one enrolled badge's own broker connection (TLS, its login from
its enrolment bundle, MQTT v5, QoS 1), sending what a badge sends: a retained ``online``
status, signed heartbeats (the real :class:`~evidence.messages.Heartbeat`), and on request
one incident in protocol order (signed alert, signed record, then every sealed segment in
chunks), with a bounded number of messages in flight. Receipts and rejections coming back
are checked under the gateway's key. A :class:`Fleet` drives its badges from a few threads,
each running its badges' paho clients on one selector, so hundreds of connections cost a
handful of threads; a badge's client is only ever touched by its own thread.

``python -m bench.fleet BUNDLE_DIR... --heartbeat-seconds S`` keeps such a fleet connected
and heartbeating until its standard input closes (benchmarks run it as a separate process,
as the badges are separate devices).
"""

from __future__ import annotations

import argparse
import os
import selectors
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from badge.uplink_session import tls_context
from evidence.bundle import EnrolmentBundle
from evidence.errors import EvidenceError
from evidence.hashing import sha256
from evidence.incident import IncidentRecord, Press, SignedIncident, sign_alert
from evidence.messages import Heartbeat, Receipt, Rejection, SegmentChunk, Status
from evidence.segment import SegmentFacts, seal_segment
from evidence.topics import badge_topic, gateway_filter, parse_gateway_topic

TICK_S = 0.005
"""Longest a fleet thread sleeps in select() before looking at its schedules again."""
WINDOW = 16
"""Upload messages a badge may have unacknowledged at once (the real uplink allows 8-64)."""
KEEPALIVE_S = 60
BOOT = 1
CODEC: dict[str, str | int] = {"container": "mpegts", "video_codec": "h264"}
SEGMENT_NS = 2_000_000_000


class FleetError(Exception):
    """The fleet could not connect or a wait ran out; the message says which badge and why."""


@dataclass(frozen=True)
class FleetUpload:
    """One incident as a badge sends it, and the receipts that say the gateway has it all."""

    incident_id: str
    messages: tuple[tuple[str, bytes], ...]
    """(topic, payload) in protocol order: alert, incident record, chunks of every segment."""
    expected: dict[tuple[str, str], bytes]
    """(subject, key) of every receipt the upload must get, and the SHA-256 it must name."""
    segment_bytes: int
    """Sealed segment bytes carried (what the gateway must store)."""


def incident_upload(
    bundle: EnrolmentBundle,
    incident_id: str,
    *,
    segments: int,
    plaintext_bytes: int,
    chunk_bytes: int = 256 * 1024,
    first_seq: int = 0,
) -> FleetUpload:
    """Seal ``segments`` segments of random plaintext in one chain and lay out their upload."""
    identity = bundle.identity
    now_mono, now_wall = time.monotonic_ns(), time.time_ns()
    previous = b"\x00" * 32
    press = Press(BOOT, now_mono, now_wall)
    alert = sign_alert(identity, incident_id, press, "load test", 0)
    last_seq = first_seq + segments - 1
    record = SignedIncident.sign(
        IncidentRecord(
            badge_id=identity.badge_id,
            incident_id=incident_id,
            presses=(press,),
            pre_roll_ns=segments * SEGMENT_NS,
            post_roll_ns=0,
            first_seq=first_seq,
            last_seq=last_seq,
            location="load test",
            battery_percent=None,
            storage_free_bytes=10**9,
            closed_wall_ns=now_wall,
        ),
        identity,
    ).to_bytes()
    messages = [
        (badge_topic(identity.badge_id, "alert"), alert),
        (badge_topic(identity.badge_id, "incident"), record),
    ]
    expected = {("alert", incident_id): sha256(alert), ("incident", incident_id): sha256(record)}
    carried = 0
    segment_topic = badge_topic(identity.badge_id, "segment")
    for offset in range(segments):
        seq = first_seq + offset
        start = now_mono - (segments - offset) * SEGMENT_NS
        facts = SegmentFacts(
            seq=seq,
            boot=BOOT,
            mono_start_ns=start,
            mono_end_ns=start + SEGMENT_NS,
            wall_start_ns=now_wall - (segments - offset) * SEGMENT_NS,
            wall_end_ns=now_wall - (segments - offset - 1) * SEGMENT_NS,
            codec=CODEC,
            previous_header_sha256=previous,
        )
        sealed = seal_segment(os.urandom(plaintext_bytes), facts, identity, bundle.custodian_key)
        previous = sealed.header.digest()
        data = sealed.to_bytes()
        digest = sha256(data)
        expected["segment", str(seq)] = digest
        carried += len(data)
        messages.extend(
            (segment_topic, chunk)
            for chunk in segment_chunks(identity.badge_id, incident_id, seq, data, chunk_bytes)
        )
    return FleetUpload(incident_id, tuple(messages), expected, carried)


def segment_chunks(
    badge_id: str, incident_id: str, seq: int, data: bytes, chunk_bytes: int
) -> list[bytes]:
    """The ``medbadge.chunk.v1`` payloads that carry one sealed segment."""
    digest = sha256(data)
    count = max(1, -(-len(data) // chunk_bytes))
    return [
        SegmentChunk(
            badge_id,
            incident_id,
            seq,
            index,
            count,
            index * chunk_bytes,
            len(data),
            digest,
            data[index * chunk_bytes : (index + 1) * chunk_bytes],
        ).to_bytes()
        for index in range(count)
    ]


class FleetBadge:
    """One badge's connection in the fleet and everything it has sent and been answered."""

    def __init__(self, bundle: EnrolmentBundle, heartbeat_seconds: float) -> None:
        """Prepare the badge of ``bundle``; its fleet thread connects it."""
        self.bundle = bundle
        self.heartbeat_seconds = heartbeat_seconds
        self.heartbeats: list[int] = []
        """Monotonic clock (ns) of every heartbeat sent: the gateway keys its samples on it."""
        self.receipts: dict[tuple[str, str], Receipt] = {}
        self.rejections: list[Rejection] = []
        self.invalid: list[str] = []
        """Refusals by the broker, and answers that did not verify or were not for us."""
        self.connected = False
        self.lost = False
        self.upload: FleetUpload | None = None
        self.upload_started_ns: int | None = None
        self.upload_done_ns: int | None = None
        self.client: mqtt.Client | None = None
        self.selected = 0
        """The selector events the fleet thread watches this badge's socket for."""
        self._sent = 0
        self._inflight: set[int] = set()
        self._next_heartbeat = 0.0
        self._heartbeats_on = True
        self._lock = threading.Lock()

    @property
    def badge_id(self) -> str:
        """The badge's id (its broker login)."""
        return self.bundle.identity.badge_id

    def request_upload(self, upload: FleetUpload) -> None:
        """Ask for ``upload`` to be sent (by the badge's own thread, from its next tick)."""
        with self._lock:
            self.upload = upload

    def stop_heartbeats(self) -> None:
        """Send no more heartbeats; one being sent is in ``heartbeats`` when this returns."""
        with self._lock:
            self._heartbeats_on = False

    @property
    def uploaded(self) -> bool:
        """True once every receipt the upload needs has come, each naming the right SHA-256."""
        with self._lock:
            upload = self.upload
        if upload is None:
            return False
        return all(
            key in self.receipts and self.receipts[key].sha256 == digest
            for key, digest in upload.expected.items()
        )

    # ----------------------------------------------------------- its own thread only

    def connect(self, phase: float) -> mqtt.Client:
        """Open the connection (TLS handshake included); heartbeats start ``phase`` s later."""
        credentials = self.bundle.broker
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.badge_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        client.username_pw_set(credentials.username, credentials.password)
        client.tls_set_context(tls_context(self.bundle.evidence_ca_pem))
        status = badge_topic(self.badge_id, "status")
        client.will_set(status, Status(self.badge_id, "offline", BOOT).to_bytes(), 1, True)
        client.max_inflight_messages_set(WINDOW + 4)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.connect(credentials.host, credentials.port, keepalive=KEEPALIVE_S)
        self.client = client
        self._next_heartbeat = time.monotonic() + phase
        return client

    def tick(self, now: float) -> None:
        """Send a heartbeat if one is due and as much of the upload as the window allows."""
        client = self.client
        if client is None or not self.connected:
            return
        with self._lock:  # held while a heartbeat goes out: stop_heartbeats waits for it
            upload = self.upload
            if self._heartbeats_on and now >= self._next_heartbeat:
                self._next_heartbeat = now + self.heartbeat_seconds
                self._heartbeat(client, uploading=upload is not None)
        if upload is not None:
            if self.upload_started_ns is None:
                self.upload_started_ns = time.monotonic_ns()
            while len(self._inflight) < WINDOW and self._sent < len(upload.messages):
                topic, payload = upload.messages[self._sent]
                info = client.publish(topic, payload, qos=1)
                self._inflight.add(info.mid)
                self._sent += 1

    def read(self) -> None:
        """Read what the broker sent, including bytes TLS has already decrypted."""
        client = self.client
        if client is None:
            return
        client.loop_read()
        sock = client.socket()
        while sock is not None and getattr(sock, "pending", int)():
            client.loop_read()
            if client.socket() is None:
                return

    def _heartbeat(self, client: mqtt.Client, *, uploading: bool) -> None:
        mono = time.monotonic_ns()
        payload = Heartbeat(
            badge=self.badge_id,
            boot=BOOT,
            mono_ns=mono,
            wall_ns=time.time_ns(),
            battery_percent=80,
            storage_free_bytes=10**9,
            ring_bytes=0,
            ring_segments=0,
            pinned_segments=0,
            dropped_frames=0,
            outbox_pending=int(uploading),
            recording=False,
        ).sign(self.bundle.identity.signing_key)
        client.publish(badge_topic(self.badge_id, "heartbeat"), payload, qos=1)
        self.heartbeats.append(mono)

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, code: ReasonCode, _props: Any
    ) -> None:
        if code.is_failure:
            self.invalid.append(f"the broker refused badge {self.badge_id}: {code}")
            return
        client.subscribe(gateway_filter(self.badge_id), qos=1)
        online = Status(self.badge_id, "online", BOOT).to_bytes()
        client.publish(badge_topic(self.badge_id, "status"), online, qos=1, retain=True)
        self.connected = True

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, code: ReasonCode, _props: Any
    ) -> None:
        if self.connected and code.is_failure:
            self.lost = True
        self.connected = False

    def _on_publish(
        self, _client: mqtt.Client, _userdata: Any, mid: int, _code: ReasonCode, _props: Any
    ) -> None:
        self._inflight.discard(mid)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        key = self.bundle.gateway_key
        topic = message.topic
        try:
            badge_id, kind = parse_gateway_topic(topic)
            if badge_id != self.badge_id:
                raise EvidenceError(f"{topic} is not for badge {self.badge_id}")
            if kind == "reject":
                self.rejections.append(Rejection.open(bytes(message.payload), key, topic))
                return
            receipt = Receipt.open(bytes(message.payload), key, topic)
            if receipt.badge != self.badge_id:
                raise EvidenceError(f"{topic} carries a receipt for badge {receipt.badge}")
        except EvidenceError as error:
            self.invalid.append(str(error))
            return
        self.receipts[receipt.subject, receipt.key] = receipt
        if self.upload_done_ns is None and self.uploaded:
            self.upload_done_ns = time.monotonic_ns()


class Fleet:
    """Badges shared out over ``threads`` threads, each running its badges on one selector."""

    def __init__(
        self, bundles: Sequence[EnrolmentBundle], *, heartbeat_seconds: float, threads: int = 4
    ) -> None:
        """Prepare one :class:`FleetBadge` per bundle; :meth:`start` connects them."""
        self.badges = [FleetBadge(bundle, heartbeat_seconds) for bundle in bundles]
        self._heartbeat_seconds = heartbeat_seconds
        self._stop = threading.Event()
        self._errors: list[str] = []
        count = max(1, min(threads, len(self.badges)))
        self._threads = [
            threading.Thread(
                target=self._run,
                args=(self.badges[index::count], index),
                daemon=True,
                name=f"fleet-{index}",
            )
            for index in range(count)
        ]

    def badge(self, badge_id: str) -> FleetBadge:
        """The fleet badge with ``badge_id``."""
        for badge in self.badges:
            if badge.badge_id == badge_id:
                return badge
        raise FleetError(f"badge {badge_id} is not in the fleet")

    def start(self) -> None:
        """Connect every badge (in the background) and start their schedules."""
        for thread in self._threads:
            thread.start()

    def wait_connected(self, timeout: float) -> None:
        """Wait until every badge is connected; FleetError after ``timeout`` s or on a refusal."""
        self._wait(lambda: all(badge.connected for badge in self.badges), timeout, "connections")

    def wait_uploaded(self, badges: Sequence[FleetBadge], timeout: float) -> None:
        """Wait until every one of ``badges`` has all its receipts."""
        self._wait(lambda: all(badge.uploaded for badge in badges), timeout, "receipts")

    def stop_heartbeats(self) -> None:
        """No badge sends another heartbeat."""
        for badge in self.badges:
            badge.stop_heartbeats()

    def stop(self) -> None:
        """Disconnect every badge and end the threads."""
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _wait(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            problems = self._errors + [
                f"{badge.badge_id}: {text}" for badge in self.badges for text in badge.invalid
            ]
            lost = [badge.badge_id for badge in self.badges if badge.lost]
            if problems or lost:
                raise FleetError(f"fleet failed waiting for {what}: {problems[:3]} lost {lost[:3]}")
            if time.monotonic() > deadline:
                raise FleetError(f"fleet: no {what} from every badge within {timeout} s")
            time.sleep(0.02)

    def _run(self, badges: list[FleetBadge], index: int) -> None:
        selector = selectors.DefaultSelector()
        try:
            for number, badge in enumerate(badges):
                phase = self._heartbeat_seconds * number / max(1, len(badges))
                try:
                    client = badge.connect(phase)
                except OSError as error:
                    self._errors.append(f"{badge.badge_id} cannot connect: {error}")
                    return
                sock = client.socket()
                if sock is None:
                    self._errors.append(f"{badge.badge_id} has no socket after connecting")
                    return
                badge.selected = selectors.EVENT_READ
                selector.register(sock, selectors.EVENT_READ, badge)
            self._serve(selector, badges)
        finally:
            for badge in badges:
                if badge.client is not None and badge.client.socket() is not None:
                    badge.client.disconnect()
                    badge.client.loop_write()
            selector.close()

    def _serve(self, selector: selectors.BaseSelector, badges: list[FleetBadge]) -> None:
        next_misc = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            for badge in badges:
                badge.tick(now)
            for badge in badges:
                client = badge.client
                sock = None if client is None else client.socket()
                if client is None or sock is None:
                    continue
                wanted = selectors.EVENT_READ | (
                    selectors.EVENT_WRITE if client.want_write() else 0
                )
                if wanted != badge.selected:
                    selector.modify(sock, wanted, badge)
                    badge.selected = wanted
            for key, mask in selector.select(TICK_S):
                badge = key.data
                client = badge.client
                if mask & selectors.EVENT_READ:
                    badge.read()
                if client is not None and client.socket() is None:
                    selector.unregister(key.fileobj)
                    badge.lost = True
                    continue
                if mask & selectors.EVENT_WRITE and client is not None:
                    client.loop_write()
            if now >= next_misc:
                next_misc = now + 1.0
                for badge in badges:
                    if badge.client is not None:
                        badge.client.loop_misc()


def main(argv: Sequence[str] | None = None) -> int:
    """Keep a fleet connected and heartbeating until standard input closes."""
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__)
    parser.add_argument("bundles", nargs="+", type=Path, help="enrolment bundle directories")
    parser.add_argument("--heartbeat-seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    bundles = [EnrolmentBundle.load(path) for path in args.bundles]
    fleet = Fleet(bundles, heartbeat_seconds=args.heartbeat_seconds, threads=args.threads)
    fleet.start()
    try:
        fleet.wait_connected(60)
        print("connected", flush=True)
        sys.stdin.read()
    finally:
        fleet.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
