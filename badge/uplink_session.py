"""The uplink's MQTT v5 link: TLS, persistent session, last will, backoff, bounded in-flight.

One thread owns the connection. It connects with a fresh paho client each time (so nothing
half-sent by a dead connection is replayed behind the uplink's back), keeps the broker-side
session (``clean_start=False`` with a session expiry, so receipts queued while the badge was
away are delivered), subscribes to the badge's gateway topics, publishes the retained
``online`` status, and after a loss waits a full-jitter exponential backoff (1 s doubling to
60 s) before trying again. Senders publish QoS 1 through :meth:`UplinkSession.publish`, which
blocks while the in-flight window is full and raises :class:`LinkDown` when the link drops.
The socket has Nagle's algorithm off, so a small alert never waits for a delayed ACK.

What the gateway sends back is handled on a thread of its own, in batches of whatever has
arrived, and each message is acknowledged once handled: keeping a receipt means an fsync,
and on the connection's thread every fsync would stall the upload (on an SD card, tens of
milliseconds a receipt).

This module is long because paho's callbacks, the reconnect backoff and the in-flight bound
all act on one connection's state under one lock.
"""

from __future__ import annotations

import logging
import queue
import random
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from badge.errors import LinkDown, UplinkError
from evidence.bundle import BrokerCredentials

log = logging.getLogger(__name__)

RECONNECT_BASE_S = 1.0
RECONNECT_CAP_S = 60.0
SESSION_EXPIRY_S = 7 * 24 * 3600
"""How long the broker keeps the badge's session (and its queued receipts) while it is away."""
KEEPALIVE_S = 30
HANDSHAKE_TIMEOUT_S = 10.0
STOP_FLUSH_S = 2.0
ANSWER_BATCH = 64
"""At most this many gateway messages are handled (and their receipts committed) together."""
_random = random.SystemRandom()

_Arrived = tuple[mqtt.Client, int, int, str, bytes]
"""A gateway message waiting to be handled: its client, packet id, QoS, topic and payload."""


def backoff_delay(
    attempt: int, base_s: float = RECONNECT_BASE_S, cap_s: float = RECONNECT_CAP_S
) -> float:
    """Seconds to wait before reconnect ``attempt`` (0 first): uniform in 0..min(cap, base*2^n)."""
    return _random.uniform(0.0, min(cap_s, base_s * 2.0 ** min(attempt, 32)))


def _no_delay(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    """Turn off Nagle's algorithm, so an alert goes out at once instead of waiting behind
    the broker's delayed ACK of the packet before it (decision 1302)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):
        log.warning("uplink: could not turn off Nagle's algorithm on the broker connection")


def tls_context(
    ca_pem: bytes, client_certificate: tuple[Path, Path] | None = None
) -> ssl.SSLContext:
    """A client TLS context (1.2 or later) trusting only the hospital's evidence CA, showing
    the badge's broker certificate (certificate file, key file) when it has one."""
    try:
        context = ssl.create_default_context(cadata=ca_pem.decode("ascii"))
    except (ssl.SSLError, ValueError, UnicodeDecodeError) as error:
        raise UplinkError(f"the bundle's evidence CA certificate cannot be used: {error}") from None
    if client_certificate is not None:
        try:
            context.load_cert_chain(str(client_certificate[0]), str(client_certificate[1]))
        except (ssl.SSLError, OSError) as error:
            raise UplinkError(
                f"the badge's broker certificate {client_certificate[0]} cannot be used: {error}"
            ) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class UplinkSession:
    """The badge's one connection to the hospital broker, kept up by its own thread."""

    def __init__(
        self,
        badge_id: str,
        broker: BrokerCredentials,
        *,
        tls: ssl.SSLContext | None,
        subscription: str,
        status_topic: str,
        online: bytes,
        offline: bytes,
        on_messages: Callable[[Sequence[tuple[str, bytes]]], list[bool]],
        max_inflight: int = 8,
    ) -> None:
        """Prepare the link; ``on_messages([(topic, payload), ...])`` says for each message
        whether to acknowledge it.

        ``on_messages`` runs on the session's answer thread before the PUBACKs are sent, so
        whatever it stores durably is stored before the broker forgets the message.
        """
        self._badge_id = badge_id
        self._broker = broker
        self._tls = tls
        self._subscription = subscription
        self._status_topic = status_topic
        self._online = online
        self._offline = offline
        self._on_messages = on_messages
        self._arrived: queue.SimpleQueue[_Arrived | threading.Event | None] = queue.SimpleQueue()
        self._answerer: threading.Thread | None = None
        self._max_inflight = max(1, max_inflight)
        self._changed = threading.Condition()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        # all below guarded by _changed
        self._client: mqtt.Client | None = None
        self._connack: tuple[ReasonCode, Properties] | None = None
        self._subacks: dict[int, list[ReasonCode]] = {}
        self._lost = False
        self._ready = False
        self._generation = 0
        self._window = self._max_inflight
        self._inflight: dict[int, str] = {}
        self._early: dict[int, ReasonCode] = {}
        self._max_packet: int | None = None
        self._reconnects = 0
        self._refused = 0
        self._last_error: str | None = None

    # ------------------------------------------------------------------ state

    @property
    def connected(self) -> bool:
        """True while connected, subscribed and announced online."""
        with self._changed:
            return self._ready

    @property
    def max_packet_bytes(self) -> int | None:
        """The broker's Maximum Packet Size from the last CONNACK (None: no limit given)."""
        with self._changed:
            return self._max_packet

    @property
    def reconnects(self) -> int:
        """Connections made after the first one."""
        with self._changed:
            return self._reconnects

    @property
    def refused(self) -> int:
        """Messages the broker answered with a failure PUBACK (e.g. not authorised)."""
        with self._changed:
            return self._refused

    @property
    def last_error(self) -> str | None:
        """The last connection or publish problem, in one sentence."""
        with self._changed:
            return self._last_error

    def wait_ready(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` s for the link; return its generation, or None if it is down."""
        with self._changed:
            self._changed.wait_for(lambda: self._ready or self._closing.is_set(), timeout)
            return self._generation if self._ready and not self._closing.is_set() else None

    # ------------------------------------------------------------- start, stop

    def start(self) -> None:
        """Start the connection thread."""
        if self._thread is not None:
            raise UplinkError(f"the uplink session of badge {self._badge_id} is already started")
        self._thread = threading.Thread(target=self._run, name="uplink-link", daemon=True)
        self._answerer = threading.Thread(target=self._answer, name="uplink-answers", daemon=True)
        self._answerer.start()
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Publish ``offline`` (if connected), disconnect and end the thread."""
        with self._changed:
            self._closing.set()
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        self._arrived.put(None)
        if self._answerer is not None:
            self._answerer.join(timeout)

    # -------------------------------------------------------------- publishing

    def publish(self, topic: str, payload: bytes, generation: int, *, retain: bool = False) -> None:
        """Publish QoS 1 on connection ``generation``; block while the in-flight window is full.

        Raises LinkDown when that connection is gone (or the session is stopping).
        """
        if self._closing.is_set():
            raise LinkDown(f"the uplink is stopping; {topic} is not sent")
        self._send(topic, payload, generation, retain)

    def drain(self, generation: int, timeout: float) -> bool:
        """Wait until every message of ``generation`` is acknowledged; False on timeout or loss."""
        with self._changed:
            self._changed.wait_for(
                lambda: not self._inflight or not self._usable(generation), timeout
            )
            return not self._inflight and self._usable(generation)

    def _usable(self, generation: int) -> bool:
        return self._ready and self._generation == generation

    def _send(self, topic: str, payload: bytes, generation: int, retain: bool) -> None:
        with self._changed:
            self._changed.wait_for(
                lambda: (
                    not self._usable(generation)
                    or (self._closing.is_set() and topic != self._status_topic)
                    or len(self._inflight) < self._window
                )
            )
            client = self._client
            if not self._usable(generation) or client is None:
                raise LinkDown(f"the broker connection dropped; {topic} is not sent")
            if self._closing.is_set() and topic != self._status_topic:
                raise LinkDown(f"the uplink is stopping; {topic} is not sent")
        info = client.publish(topic, payload, qos=1, retain=retain)
        with self._changed:
            if info.rc != mqtt.MQTT_ERR_SUCCESS or not self._usable(generation):
                raise LinkDown(f"the broker connection dropped while sending on {topic}")
            if self._early.pop(info.mid, None) is None:
                self._inflight[info.mid] = topic

    # ------------------------------------------------------------- connection

    def _run(self) -> None:
        attempt = 0
        ever_ready = False
        while not self._closing.is_set():
            ready = self._connect_and_serve(ever_ready)
            ever_ready = ever_ready or ready
            attempt = 0 if ready else attempt + 1
            if self._closing.is_set():
                break
            delay = backoff_delay(attempt)
            log.info("uplink: reconnecting to the broker in %.1f s", delay)
            self._closing.wait(delay)

    def _new_client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self._badge_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
            manual_ack=True,
        )
        client.username_pw_set(self._broker.username, self._broker.password)
        client.will_set(self._status_topic, self._offline, qos=1, retain=True)
        client.max_inflight_messages_set(max(20, self._max_inflight))
        if self._tls is not None:
            client.tls_set_context(self._tls)
        client.on_socket_open = _no_delay
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        client.on_message = self._on_mqtt_message
        return client

    def _connect_and_serve(self, ever_ready: bool) -> bool:
        """One connection from CONNECT to loss; True if it got as far as ready."""
        client = self._new_client()
        with self._changed:
            self._client = client
            self._connack = None
            self._subacks.clear()
            self._lost = False
            self._inflight.clear()
            self._early.clear()
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        where = f"{self._broker.host}:{self._broker.port}"
        try:
            client.connect(
                self._broker.host,
                self._broker.port,
                keepalive=KEEPALIVE_S,
                clean_start=False,
                properties=properties,
            )
        except Exception as error:  # any failure to reach the broker is retried, never raised
            self._note_error(f"cannot reach the broker at {where}: {error}")
            return False
        client.loop_start()
        ready = False
        try:
            ready = self._serve(client, where, ever_ready)
        finally:
            with self._changed:
                lost = self._lost
                self._ready = False
                self._changed.notify_all()
            if not lost:
                client.disconnect()
            client.loop_stop()
            with self._changed:
                self._client = None
                self._inflight.clear()
        return ready

    def _serve(self, client: mqtt.Client, where: str, ever_ready: bool) -> bool:
        with self._changed:
            self._changed.wait_for(
                lambda: self._connack is not None or self._lost or self._closing.is_set(),
                HANDSHAKE_TIMEOUT_S,
            )
            connack = self._connack
        if connack is None:
            if not self._closing.is_set():
                self._note_error(f"the broker at {where} did not answer CONNECT")
            return False
        code, properties = connack
        if code.is_failure:
            self._note_error(f"the broker at {where} refused badge {self._badge_id}: {code}")
            return False
        result, mid = client.subscribe(self._subscription, qos=1)
        codes = None
        if result == mqtt.MQTT_ERR_SUCCESS and mid is not None:
            with self._changed:
                self._changed.wait_for(
                    lambda: mid in self._subacks or self._lost or self._closing.is_set(),
                    HANDSHAKE_TIMEOUT_S,
                )
                codes = self._subacks.get(mid)
        if not codes or codes[0].is_failure:
            self._note_error(f"the broker at {where} refused the subscription {self._subscription}")
            return False
        # what the broker kept for the badge while it was away (receipts, mostly) is acted on
        # before anything is sent, so nothing it frees goes again
        handled = threading.Event()
        self._arrived.put(handled)
        handled.wait(HANDSHAKE_TIMEOUT_S)
        with self._changed:
            if self._lost or self._closing.is_set():
                return False
            self._max_packet = getattr(properties, "MaximumPacketSize", None)
            self._window = min(self._max_inflight, getattr(properties, "ReceiveMaximum", 65535))
            self._generation += 1
            self._ready = True
            if ever_ready:
                self._reconnects += 1
            generation = self._generation
            self._changed.notify_all()
        log.info("uplink: connected to %s as %s", where, self._badge_id)
        try:
            self._send(self._status_topic, self._online, generation, True)
            with self._changed:
                self._changed.wait_for(lambda: self._lost or self._closing.is_set())
            if self._closing.is_set():
                self._send(self._status_topic, self._offline, generation, True)
                self.drain(generation, STOP_FLUSH_S)
        except LinkDown:
            pass
        return True

    def _note_error(self, message: str) -> None:
        log.warning("uplink: %s", message)
        with self._changed:
            self._last_error = message

    # ---------------------------------------------------------- paho callbacks

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, code: ReasonCode, props: Any
    ) -> None:
        with self._changed:
            if client is self._client:
                self._connack = (code, props)
                self._changed.notify_all()

    def _on_disconnect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, code: ReasonCode, _props: Any
    ) -> None:
        with self._changed:
            if client is not self._client:
                return
            was_ready = self._ready
            self._lost = True
            self._ready = False
            self._inflight.clear()
            self._changed.notify_all()
        if was_ready and not self._closing.is_set():
            self._note_error(f"the broker connection was lost ({code})")

    def _on_subscribe(
        self, client: mqtt.Client, _userdata: Any, mid: int, codes: list[ReasonCode], _props: Any
    ) -> None:
        with self._changed:
            if client is self._client:
                self._subacks[mid] = codes
                self._changed.notify_all()

    def _on_publish(
        self, client: mqtt.Client, _userdata: Any, mid: int, code: ReasonCode, _props: Any
    ) -> None:
        with self._changed:
            if client is not self._client:
                return
            topic = self._inflight.pop(mid, None)
            if topic is None:
                self._early[mid] = code
            if code.is_failure:
                self._refused += 1
                self._last_error = f"the broker refused a message on {topic or 'a topic'}: {code}"
                log.error("uplink: %s", self._last_error)
            self._changed.notify_all()

    def _on_mqtt_message(
        self, client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage
    ) -> None:
        with self._changed:
            if client is not self._client:
                return
        self._arrived.put((client, message.mid, message.qos, message.topic, bytes(message.payload)))

    def _answer(self) -> None:
        """Hand what the gateway sent to ``on_messages``, a batch at a time; acknowledge it.

        An Event in the queue is set once everything before it is handled; None ends the
        thread after that.
        """
        while True:
            batch: list[_Arrived] = []
            item = self._arrived.get()
            while isinstance(item, tuple):
                batch.append(item)
                if len(batch) == ANSWER_BATCH:
                    break
                try:
                    item = self._arrived.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._handle(batch)
            if item is None:
                return
            if isinstance(item, threading.Event):
                item.set()

    def _handle(self, batch: list[_Arrived]) -> None:
        try:
            answers = self._on_messages([(topic, payload) for *_, topic, payload in batch])
        except Exception:
            log.exception("uplink: handling %d gateway messages failed", len(batch))
            answers = [False] * len(batch)
        for (client, mid, qos, _, _), acknowledge in zip(batch, answers, strict=True):
            if acknowledge:  # a client since replaced just fails; the broker sends it again
                client.ack(mid, qos)
