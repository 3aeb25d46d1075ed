"""The badge uplink: what goes to the gateway, in what order, and what a receipt may free.

Order, on the uplink's own thread (capture never waits for it): alerts from the outbox at
once, before any video; then each closed incident: its signed record, then every segment
``first_seq..last_seq`` that has no receipt yet; then each open incident's segments (the
pre-roll at once, the post-roll as it is sealed), so footage leaves the badge while the
incident is still being recorded. Segments go chunk by chunk, read from the ring one
segment at a time (optionally held to a bandwidth cap), each sent again only when its
receipt is overdue; and a signed heartbeat every ``heartbeat_seconds``. What the gateway
answers is judged by :class:`~badge.receipts.ReceiptKeeper`: only a receipt that verifies
under the gateway's key and names exactly what the badge holds is kept, and only then frees
anything. The MQTT link itself is :class:`~badge.uplink_session.UplinkSession`. See
docs/protocol.md.

This module is long because the sending order and what each receipt frees are one policy;
the link and the receipt keeper have modules of their own.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from badge.errors import BadgeError, LinkDown, UplinkError
from badge.outbox import Outbox, OutboxItem
from badge.receipts import ReceiptCounts, ReceiptKeeper, ReceiptStore, incident_record
from badge.ring import Ring, StoredSegment
from badge.uplink_session import UplinkSession, tls_context
from evidence.bundle import EnrolmentBundle
from evidence.errors import EvidenceError
from evidence.incident import IncidentRecord
from evidence.keys import BadgeIdentity
from evidence.messages import Heartbeat, SegmentChunk, Status
from evidence.topics import badge_topic, gateway_filter

log = logging.getLogger(__name__)

DEFAULT_CHUNK_BYTES = 256 * 1024
MIN_CHUNK_BYTES = 1024
_ALERT_POLL_S = 0.25
_MAX_RESEND_DOUBLINGS = 6
# PUBLISH framing around the payload: fixed header and length (5), topic length (2),
# packet id (2), properties length (1); plus room for the CBOR data length to grow (8).
_PACKET_FRAMING = 5 + 2 + 2 + 1 + 8


@dataclass(frozen=True)
class UplinkStats:
    """What the uplink has done since it started (``badge status`` shows it)."""

    connected: bool
    alerts_sent: int
    incidents_sent: int
    segments_sent: int
    chunks_sent: int
    heartbeats_sent: int
    bytes_sent: int
    answers: ReceiptCounts
    """What the gateway answered, as the receipt keeper judged it."""
    reconnects: int
    refused_by_broker: int
    last_error: str | None
    """The uplink's last error, else the receipt keeper's."""
    link_error: str | None

    def to_dict(self) -> dict[str, Any]:
        """The stats as plain JSON-ready values, the answers' counts beside the uplink's."""
        values = asdict(self)
        answers = values.pop("answers")
        answers.pop("last_error")
        answers["rejections"] = dict(self.answers.rejections)
        return {**values, **answers}


class TokenBucket:
    """A bandwidth cap: ``rate`` bytes per second, bursts up to ``burst`` bytes."""

    def __init__(self, rate: int, burst: int) -> None:
        """Start full."""
        self._rate = float(rate)
        self._burst = float(max(burst, 1))
        self._tokens = self._burst
        self._at = time.monotonic()

    def reserve(self, size: int) -> float:
        """Take ``size`` bytes' worth now; return the seconds to wait before sending them."""
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        self._tokens -= size
        return max(0.0, -self._tokens / self._rate)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Uplink:
    """Sends the outbox to the gateway over MQTT and frees what the gateway has receipted."""

    def __init__(
        self,
        identity: BadgeIdentity,
        bundle: EnrolmentBundle,
        ring: Ring,
        outbox: Outbox,
        *,
        receipts: ReceiptStore,
        tls: bool,
        heartbeat: Callable[[], Heartbeat],
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        heartbeat_seconds: float = 10.0,
        bandwidth_bytes_per_s: int | None = None,
        resend_seconds: float = 60.0,
        max_inflight: int = 8,
        client_certificate: tuple[Path, Path] | None = None,
    ) -> None:
        """Prepare the uplink; :meth:`start` connects and begins sending.

        ``client_certificate`` (certificate file, key file) is shown to the broker, which
        then knows the badge by it (decision 1902).

        ``resend_seconds``: an item still without a receipt is sent again after this long
        (doubling with each try), and at once after every reconnect.
        """
        badge = identity.badge_id
        if bundle.identity.badge_id != badge:
            raise UplinkError(f"uplink of badge {badge} was given the bundle of another badge")
        if chunk_bytes < MIN_CHUNK_BYTES or heartbeat_seconds <= 0 or resend_seconds <= 0:
            raise UplinkError(
                f"uplink of badge {badge}: chunk_bytes ({chunk_bytes}) must be at least "
                f"{MIN_CHUNK_BYTES}, heartbeat_seconds and resend_seconds above 0"
            )
        if bandwidth_bytes_per_s is not None and bandwidth_bytes_per_s <= 0:
            raise UplinkError(f"uplink of badge {badge}: a bandwidth cap must be above 0")
        if not tls and not _is_loopback(bundle.broker.host):
            raise UplinkError(
                f"uplink of badge {badge}: plain MQTT to {bundle.broker.host} is refused; "
                "TLS is required off loopback"
            )
        self._identity = identity
        self._badge = badge
        self._ring = ring
        self._outbox = outbox
        self._keeper = ReceiptKeeper(badge, bundle.gateway_key, ring, outbox, receipts)
        self._heartbeat = heartbeat
        self._chunk_bytes = chunk_bytes
        self._heartbeat_s = heartbeat_seconds
        self._resend_s = resend_seconds
        self._bucket = (
            None
            if bandwidth_bytes_per_s is None
            else TokenBucket(bandwidth_bytes_per_s, min(bandwidth_bytes_per_s, chunk_bytes))
        )
        self._topic = {
            kind: badge_topic(badge, kind) for kind in ("alert", "heartbeat", "incident", "segment")
        }
        self._session = UplinkSession(
            badge,
            bundle.broker,
            tls=tls_context(bundle.evidence_ca_pem, client_certificate) if tls else None,
            subscription=gateway_filter(badge),
            status_topic=badge_topic(badge, "status"),
            online=Status(badge, "online", ring.boot).to_bytes(),
            offline=Status(badge, "offline", ring.boot).to_bytes(),
            on_messages=self._keeper.on_messages,
            max_inflight=max_inflight,
        )
        self._stats_lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._last_error: str | None = None
        # by (kind, key): SQLite may give a new outbox item the id of one just done
        self._due: dict[tuple[str, str], float] = {}
        self._sends: dict[tuple[str, str], int] = {}
        self._segment_due: dict[int, float] = {}
        """By seq: when a segment sent and not yet receipted is sent again."""
        self._segment_sends: dict[int, int] = {}
        self._missing_logged: set[int] = set()
        self._next_heartbeat = 0.0
        self._last_alert_check = 0.0
        self._poke = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ public

    def start(self) -> None:
        """Connect (in the background) and start sending."""
        if self._thread is not None:
            raise UplinkError(f"the uplink of badge {self._badge} is already started")
        self._session.start()
        self._thread = threading.Thread(target=self._run, name="uplink", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop sending, publish ``offline``, disconnect; unreceipted items stay queued."""
        self._stop.set()
        self._wake.set()
        self._session.stop(timeout)
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        """Something was queued (an alert, a closed incident, a segment of an open one):
        look at the outbox and the ring now."""
        self._poke = True
        self._wake.set()

    @property
    def connected(self) -> bool:
        """True while the broker connection is up."""
        return self._session.connected

    @property
    def stats(self) -> UplinkStats:
        """A snapshot of the counters."""
        with self._stats_lock:
            counts = dict(self._counts)
            last_error = self._last_error
        answers = self._keeper.counts
        return UplinkStats(
            connected=self._session.connected,
            alerts_sent=counts.get("alerts_sent", 0),
            incidents_sent=counts.get("incidents_sent", 0),
            segments_sent=counts.get("segments_sent", 0),
            chunks_sent=counts.get("chunks_sent", 0),
            heartbeats_sent=counts.get("heartbeats_sent", 0),
            bytes_sent=counts.get("bytes_sent", 0),
            answers=answers,
            reconnects=self._session.reconnects,
            refused_by_broker=self._session.refused,
            last_error=last_error or answers.last_error,
            link_error=self._session.last_error,
        )

    # --------------------------------------------------------------- counters

    def _count(self, name: str, amount: int = 1) -> None:
        with self._stats_lock:
            self._counts[name] = self._counts.get(name, 0) + amount

    def _error(self, message: str) -> None:
        log.error("uplink: %s", message)
        with self._stats_lock:
            self._last_error = message

    # ---------------------------------------------------------------- sending

    def _run(self) -> None:
        try:
            self._keeper.recover()
        except (BadgeError, EvidenceError, OSError) as error:
            self._error(f"cannot settle receipts kept before this start: {error}")
        seen: int | None = None
        while not self._stop.is_set():
            generation = self._session.wait_ready(0.5)
            if generation is None:
                continue
            if generation != seen:
                # a new connection: whatever has no receipt is sent again, now
                seen = generation
                self._due.clear()
                self._segment_due.clear()
                self._next_heartbeat = 0.0
            self._wake.clear()
            try:
                self._pass(generation)
            except LinkDown:
                continue
            except Exception as error:  # the uplink thread must outlive any one bad item
                log.exception("uplink: sending failed")
                self._error(f"sending failed: {type(error).__name__}: {error}")
                self._stop.wait(1.0)
                continue
            self._wake.wait(self._idle_seconds())

    def _idle_seconds(self) -> float:
        now = time.monotonic()
        due = [*self._due.values(), *self._segment_due.values()]
        wait = min(1.0, self._next_heartbeat - now, *(moment - now for moment in due))
        return max(wait, 0.05)

    def _pass(self, generation: int) -> None:
        self._send_alerts(generation)
        self._heartbeat_if_due(generation)
        pending = self._outbox.pending()
        waiting = {(item.kind, item.key) for item in pending}
        for done in set(self._due) - waiting:
            del self._due[done]
            self._sends.pop(done, None)
        for item in pending:
            if item.kind == "incident":
                self._send_incident(item, generation)
        for pin in self._ring.pins():
            if pin.last_seq is None:  # open: its record comes when the post-roll is in
                self._send_segments(pin.incident_id, pin.first_seq, None, generation)

    def _is_due(self, item: OutboxItem) -> bool:
        return time.monotonic() >= self._due.get((item.kind, item.key), 0.0)

    def _sent(self, item: OutboxItem) -> None:
        """Hold ``item`` back until its receipt has had time to come."""
        sends = self._sends.get((item.kind, item.key), 0) + 1
        self._sends[(item.kind, item.key)] = sends
        self._due[(item.kind, item.key)] = time.monotonic() + self._resend_delay(sends)

    def _resend_delay(self, sends: int) -> float:
        return float(self._resend_s * 2 ** min(sends - 1, _MAX_RESEND_DOUBLINGS))

    def _publish(self, kind: str, payload: bytes, generation: int) -> None:
        self._session.publish(self._topic[kind], payload, generation)
        self._count("bytes_sent", len(payload))

    def _send_alerts(self, generation: int) -> None:
        for item in self._outbox.pending():
            if item.kind == "alert" and self._is_due(item):
                self._outbox.note_attempt(item.item_id)
                self._publish("alert", item.payload, generation)
                self._count("alerts_sent")
                self._sent(item)
                log.info("uplink: alert for incident %s sent", item.key)

    def _service(self, generation: int) -> None:
        """Between two chunks: a new alert goes first; a due heartbeat goes too."""
        now = time.monotonic()
        if self._poke or now - self._last_alert_check >= _ALERT_POLL_S:
            self._poke = False
            self._last_alert_check = now
            self._send_alerts(generation)
        self._heartbeat_if_due(generation)

    def _heartbeat_if_due(self, generation: int) -> None:
        now = time.monotonic()
        if now < self._next_heartbeat:
            return
        self._next_heartbeat = now + self._heartbeat_s
        try:
            payload = self._heartbeat().sign(self._identity.signing_key)
        except Exception as error:  # the daemon's status sources must not stop the upload
            self._error(f"cannot build a heartbeat: {type(error).__name__}: {error}")
            return
        self._publish("heartbeat", payload, generation)
        self._count("heartbeats_sent")

    def _pace(self, size: int, generation: int) -> None:
        """Hold a chunk to the bandwidth cap, still sending alerts and heartbeats meanwhile."""
        if self._bucket is None:
            return
        deadline = time.monotonic() + self._bucket.reserve(size)
        while (remaining := deadline - time.monotonic()) > 0:
            if self._stop.wait(min(remaining, 0.1)):
                raise LinkDown("the uplink is stopping")
            self._service(generation)

    def _send_incident(self, item: OutboxItem, generation: int) -> None:
        """A closed incident: its record when due, then its segments that are due."""
        record = self._record(item)
        if record is None or self._keeper.finish_incident(item):
            return
        if self._is_due(item):
            self._outbox.note_attempt(item.item_id)
            self._publish("incident", item.payload, generation)
            self._count("incidents_sent")
            self._sent(item)
        first, last = record.first_seq, record.last_seq
        on_ring = self._send_segments(record.incident_id, first, last, generation)
        unseen = set(range(first, last + 1)) - on_ring - self._missing_logged
        if unseen:
            for seq in sorted(unseen - self._keeper.store.receipted_seqs(first, last)):
                self._missing_logged.add(seq)
                self._error(
                    f"segment {seq} of incident {record.incident_id} is neither on the ring "
                    "nor receipted; it cannot be sent"
                )

    def _send_segments(
        self, incident_id: str, first_seq: int, last_seq: int | None, generation: int
    ) -> set[int]:
        """Send the ring's segments ``first_seq..last_seq`` (None: to the newest) that have
        no receipt and were not sent within their resend delay; return the seqs on the ring."""
        on_ring = self._ring.segments(first_seq, last_seq)
        for stored in on_ring:
            seq = stored.seq
            if self._keeper.receipted(seq):
                self._segment_due.pop(seq, None)
                self._segment_sends.pop(seq, None)
                continue
            if time.monotonic() < self._segment_due.get(seq, 0.0):
                continue
            self._send_segment(incident_id, stored, generation)
            sends = self._segment_sends.get(seq, 0) + 1
            self._segment_sends[seq] = sends
            self._segment_due[seq] = time.monotonic() + self._resend_delay(sends)
        return {stored.seq for stored in on_ring}

    def _record(self, item: OutboxItem) -> IncidentRecord | None:
        record = incident_record(item)
        if record is None:
            self._error(f"outbox item {item.item_id} is not an incident record; not sent")
            self._due[(item.kind, item.key)] = float("inf")
        return record

    def _send_segment(self, incident_id: str, stored: StoredSegment, generation: int) -> None:
        try:
            digest = self._keeper.sealed_sha256(stored)
            stream = stored.path.open("rb")
        except FileNotFoundError:
            if not self._keeper.receipted(stored.seq):
                self._error(f"segment {stored.seq} vanished from the ring before it was sent")
            return
        with stream:
            chunk_size = self._chunk_size(incident_id, stored.seq, digest)
            count = max(1, -(-stored.size // chunk_size))
            for index in range(count):
                data = stream.read(chunk_size)
                payload = SegmentChunk(
                    self._badge,
                    incident_id,
                    stored.seq,
                    index,
                    count,
                    index * chunk_size,
                    stored.size,
                    digest,
                    data,
                ).to_bytes()
                self._pace(len(payload), generation)
                self._service(generation)
                self._publish("segment", payload, generation)
                self._count("chunks_sent")
        self._count("segments_sent")

    def _chunk_size(self, incident_id: str, seq: int, digest: bytes) -> int:
        """The configured chunk size, lowered so no packet exceeds the broker's maximum."""
        limit = self._session.max_packet_bytes
        if limit is None:
            return self._chunk_bytes
        widest = SegmentChunk(
            self._badge, incident_id, seq, 2**32, 2**32, 2**48, 2**48, digest, b""
        ).to_bytes()
        room = limit - _PACKET_FRAMING - len(self._topic["segment"].encode()) - len(widest)
        if room < 1:
            raise UplinkError(f"the broker's maximum packet size {limit} leaves no room for data")
        return min(self._chunk_bytes, room)
