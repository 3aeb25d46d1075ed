"""A test helper on the gateway's side of the broker: it answers a badge's uplink for real.

It logs in to the test mosquitto as ``gateway``, checks every badge message the way the
protocol says (badge signatures verified, chunks reassembled and their SHA-256 and sealed
signature checked) and answers with real ``Receipt``s signed by a gateway key, so the badge
under test sees exactly what it would see in the field. Switches let a test make it answer
wrongly (another key, another SHA-256), reject, or hold its receipts back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from evidence.envelope import Envelope
from evidence.hashing import sha256
from evidence.incident import ALERT_CONTEXT, SignedIncident
from evidence.keys import SigningKey, SigningPublicKey
from evidence.messages import Heartbeat, Receipt, Rejection, SegmentChunk, Status
from evidence.segment import SealedSegment
from evidence.topics import ALL_BADGES_FILTER, gateway_topic, parse_badge_topic
from tests.mosquitto import HOST, MosquittoProcess

WAIT_S = 20.0


@dataclass(frozen=True)
class Seen:
    """One message from a badge, as it arrived."""

    kind: str
    payload: bytes
    at: float
    """time.monotonic() on arrival."""
    chunk: SegmentChunk | None = None


class GatewayResponder:
    """Receives one badge's messages and answers them with signed receipts."""

    def __init__(
        self,
        broker: MosquittoProcess,
        badge_key: SigningPublicKey,
        signing_key: SigningKey,
        badge_id: str = "badge-a",
    ) -> None:
        self.badge_id = badge_id
        self.badge_key = badge_key
        self.signing_key = signing_key
        """The key receipts are signed with (a test may swap in another one)."""
        self.wrong_sha = False
        """Name a SHA-256 that is not the one received."""
        self.reject_segments: str | None = None
        """Answer completed segments with this rejection reason instead of a receipt."""
        self.hold = False
        """Keep receipts in ``held`` instead of publishing them."""
        self.held: list[tuple[str, bytes]] = []
        self.seen: list[Seen] = []
        self.segments: dict[int, bytes] = {}
        self.receipts: list[Receipt] = []
        self.heartbeats: list[Heartbeat] = []
        self.statuses: list[Status] = []
        self.problems: list[str] = []
        self._partials: dict[int, dict[int, bytes]] = {}
        self._incidents: dict[str, tuple[SignedIncident, bytes]] = {}
        self._changed = threading.Condition()
        self._subscribed = False
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="gateway", protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set("gateway", broker.password("gateway"))
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._broker = broker

    # ------------------------------------------------------------------ control

    def start(self) -> GatewayResponder:
        """Connect, subscribe to every badge topic, and wait until subscribed."""
        self.client.connect(HOST, self._broker.plain_port, keepalive=5)
        self.client.loop_start()
        self.wait(lambda: self._subscribed, "the responder's subscription")
        return self

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()

    def wait(self, ready: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
        """Block until ``ready()`` holds (checked under the responder's lock)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not ready():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {what} within {timeout} s; problems: {self.problems}")
                self._changed.wait(min(remaining, 0.1))

    def kinds(self) -> list[str]:
        """The kinds of message received so far, in order."""
        with self._changed:
            return [seen.kind for seen in self.seen]

    def chunks(self, since: int = 0) -> list[SegmentChunk]:
        """The chunks received from message number ``since`` on."""
        with self._changed:
            return [seen.chunk for seen in self.seen[since:] if seen.chunk is not None]

    def release_held(self) -> None:
        """Publish the receipts held back so far."""
        with self._changed:
            held, self.held = self.held, []
        for topic, payload in held:
            self.client.publish(topic, payload, qos=1)

    # ------------------------------------------------------------------ answers

    def _answer(self, subject: str, key: str, digest: bytes) -> None:
        if self.wrong_sha:
            digest = sha256(digest)
        receipt = Receipt(self.badge_id, subject, key, digest, time.time_ns())
        topic = gateway_topic(self.badge_id, "receipt")
        payload = receipt.sign(self.signing_key)
        self.receipts.append(receipt)
        if self.hold:
            self.held.append((topic, payload))
        else:
            self.client.publish(topic, payload, qos=1)

    def _reject(self, subject: str, key: str, reason: str) -> None:
        rejection = Rejection(self.badge_id, subject, key, reason, f"{subject} {key} refused")
        payload = rejection.sign(self.signing_key)
        self.client.publish(gateway_topic(self.badge_id, "reject"), payload, qos=1)

    def _incident_complete(self, incident_id: str) -> None:
        signed, payload = self._incidents[incident_id]
        record = signed.record
        if all(seq in self.segments for seq in range(record.first_seq, record.last_seq + 1)):
            self._answer("incident", incident_id, sha256(payload))

    # -------------------------------------------------------------- callbacks

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, code: ReasonCode, _props: Any
    ) -> None:
        if not code.is_failure:
            client.subscribe(ALL_BADGES_FILTER, qos=1)

    def _on_subscribe(self, *_args: Any) -> None:
        with self._changed:
            self._subscribed = True
            self._changed.notify_all()

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        payload = bytes(message.payload)
        with self._changed:
            try:
                badge_id, kind = parse_badge_topic(message.topic)
                assert badge_id == self.badge_id, f"message from {badge_id}"
                chunk = self._handle(kind, payload)
                self.seen.append(Seen(kind, payload, time.monotonic(), chunk))
            except Exception as error:
                self.problems.append(f"{message.topic}: {type(error).__name__}: {error}")
            self._changed.notify_all()

    def _handle(self, kind: str, payload: bytes) -> SegmentChunk | None:
        if kind == "alert":
            envelope = Envelope.from_bytes(payload, "alert")
            envelope.verify(self.badge_key, ALERT_CONTEXT, "alert")
            incident = envelope.record("alert")["incident"]
            assert isinstance(incident, str)
            self._answer("alert", incident, sha256(payload))
        elif kind == "incident":
            signed = SignedIncident.from_bytes(payload)
            signed.verify(self.badge_key)
            self._incidents[signed.record.incident_id] = (signed, payload)
            self._incident_complete(signed.record.incident_id)
        elif kind == "heartbeat":
            self.heartbeats.append(Heartbeat.open(payload, self.badge_key, "heartbeat"))
        elif kind == "status":
            self.statuses.append(Status.from_bytes(payload, "status"))
        elif kind == "segment":
            chunk = SegmentChunk.from_bytes(payload, "chunk")
            self._chunk(chunk)
            return chunk
        return None

    def _chunk(self, chunk: SegmentChunk) -> None:
        if chunk.seq in self.segments:  # a duplicate: the same answer again
            self._answer("segment", str(chunk.seq), sha256(self.segments[chunk.seq]))
            return
        if chunk.index == 0:
            self._partials[chunk.seq] = {}
        parts = self._partials.setdefault(chunk.seq, {})
        parts[chunk.index] = chunk.data
        if len(parts) < chunk.count:
            return
        data = b"".join(parts[index] for index in range(chunk.count))
        del self._partials[chunk.seq]
        assert len(data) == chunk.total_size, "reassembled size differs"
        assert sha256(data) == chunk.sealed_sha256, "reassembled SHA-256 differs"
        SealedSegment.from_bytes(data).verify(self.badge_key)
        if self.reject_segments is not None:
            self._reject("segment", str(chunk.seq), self.reject_segments)
            return
        self.segments[chunk.seq] = data
        self._answer("segment", str(chunk.seq), sha256(data))
        for incident_id, (signed, _) in list(self._incidents.items()):
            if signed.record.first_seq <= chunk.seq <= signed.record.last_seq:
                self._incident_complete(incident_id)
