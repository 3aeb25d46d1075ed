"""The intake's MQTT side: a paho v5 client that feeds every badge message to the Intake.

The client keeps a persistent session (clean start off, a session expiry of a week), so
QoS 1 messages the broker queued while the gateway was down arrive after it restarts.
paho's network thread only reads: each message goes into a bounded queue, and one intake
thread takes them in arrival order (so each badge's chunks stay in order) and handles each
with ``Intake.handle``; a completed segment is handed to the store stage, a child process
that stores it while the intake thread reads on (``gateway.intake.stage``, decisions 1503
and 1505). A message is acknowledged
(manual PUBACK) only once it is handled, and a segment's last chunk only once the segment
is stored, all in arrival order (``gateway.intake.acks``), so a message the gateway had not
finished storing when it died is delivered again (decisions 0700, 1500).
The client asks the broker for at most ``QUEUE_LIMIT`` unacknowledged messages (MQTT v5
Receive Maximum), which bounds the queue and the memory it holds. Receipts and rejections
go out with QoS 1, on a socket with Nagle's algorithm off. paho reconnects on its own,
backing off from 1 s to 60 s.

Run it alone with ``python -m gateway.intake.service --data DIR --host H --port P --username U
--password-file F [--tls-ca CA] [--shared-group G]``; SIGTERM stops it cleanly.
"""

from __future__ import annotations

import argparse
import logging
import queue
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from evidence.topics import ALL_BADGES_FILTER, shared_subscription
from gateway.alerts.alerts import AlertEvent
from gateway.broker.certificates import gateway_certificate_files
from gateway.broker.control import BrokerControl
from gateway.broker.dynsec import RESPONSE_TOPIC
from gateway.config import IntakeLimits, TimestampSettings
from gateway.datadir import GatewayDataDir
from gateway.intake.acks import OrderedAcks
from gateway.intake.intake import AlertListener, Intake
from gateway.intake.reassembly import PartialSegment
from gateway.intake.stage import StoreStage
from gateway.storage.badges import EnrolledBadge

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600
"""How long the broker keeps the intake's session and queues messages for it while it is down."""
KEEPALIVE_S = 30
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 60
QUEUE_LIMIT = 32
"""Messages read but not yet handled and acknowledged: enough to keep reading while the
intake flushes a segment to disk; at most 32 MiB even at the broker's largest packet."""


def _ignore_alert(_event: AlertEvent) -> None:
    """The default alert listener: alerts are stored; nobody is watching live."""


@dataclass(frozen=True)
class Delivery:
    """A message read from the broker, waiting for the intake thread."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    connection: int
    """Which connection it came on: only that connection may acknowledge it."""


@dataclass(frozen=True)
class IntakeProbe:
    """The intake's state at one moment, as health checks and metrics read it."""

    reading: bool
    """The intake thread is running."""
    storing: bool
    """The store process is running and able to store."""
    store_failure: str | None
    """Why the store process can no longer store, or None."""
    connected: bool
    """Connected to the broker and subscribed."""
    queued: int
    """Messages read from the broker, waiting for the intake thread."""
    store_pending: int
    """Segments handed to the store process, not yet stored."""


def _no_delay(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    """Send small packets (PUBACKs, receipts) at once instead of waiting for the peer's ACK."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):
        log.warning("could not turn off Nagle's algorithm on the broker connection")


class IntakeService:
    """An MQTT client subscribed to every badge's topics, handing each message to an Intake."""

    def __init__(  # noqa: PLR0917 - the connection's five facts, then the CA, read best in order
        self,
        data_dir: GatewayDataDir,
        host: str,
        port: int,
        username: str,
        password: str,
        tls_ca: Path | None,
        *,
        shared_group: str | None = None,
        on_alert: AlertListener = _ignore_alert,
        timestamps: TimestampSettings | None = None,
        session_expiry_s: int = SESSION_EXPIRY_S,
        limits: IntakeLimits | None = None,
    ) -> None:
        """Prepare the client (``start`` connects); ``tls_ca`` None means plain MQTT (loopback).

        ``shared_group`` subscribes as ``$share/<group>/medbadge/v1/badge/#`` so several
        intake processes split the load (read decision 0701 first). ``timestamps`` says
        which TSA stamps the ledger checkpoints (None: they are not time-stamped);
        ``limits`` bound what refused messages may cost.
        """
        self.host = host
        self.port = port
        self.topic_filter = (
            ALL_BADGES_FILTER
            if shared_group is None
            else shared_subscription(shared_group, ALL_BADGES_FILTER)
        )
        self._session_expiry_s = session_expiry_s
        self._subscribed = threading.Event()
        self._deliveries: queue.Queue[Delivery | None] = queue.Queue(QUEUE_LIMIT)
        self._stopping = threading.Event()
        self._connection = 0
        self._connection_lock = threading.Lock()
        self._worker = threading.Thread(target=self._work, name="intake", daemon=True)
        # the broker uses the login name as the client id; saying so keeps the session ours
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=username,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        self._client.username_pw_set(username, password)
        if tls_ca is not None:
            # the gateway's broker certificate, when broker-config made one (decision 1902)
            own = gateway_certificate_files(data_dir)
            self._client.tls_set(
                ca_certs=str(tls_ca),
                certfile=None if own is None else str(own[0]),
                keyfile=None if own is None else str(own[1]),
            )
        self._client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        self._client.on_socket_open = _no_delay
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self.control = BrokerControl(self._publish)
        """Dynamic security commands on this connection (the login is the client id)."""
        timestamper = None if timestamps is None else data_dir.configured_timestamper(timestamps)
        self.intake = Intake(
            data_dir, self._publish, on_alert, timestamper=timestamper, limits=limits
        )
        self._acks: OrderedAcks[Delivery] = OrderedAcks(self._acknowledge)
        self._ticket = -1
        """The ticket of the message the intake thread is handling."""
        self._handed_over = False
        self._stage = StoreStage(
            data_dir, self._publish, self._acks.done, timestamps=timestamps, limits=limits
        )
        self.intake.hand_off_to(self)

    def start(self) -> None:
        """Start the store process, then connect in the background (retrying until the broker
        answers) and start handling. Raises IntakeError if the store process cannot start."""
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self._session_expiry_s
        properties.ReceiveMaximum = QUEUE_LIMIT
        self._stage.start()
        self._worker.start()
        self._client.connect_async(
            self.host,
            self.port,
            keepalive=KEEPALIVE_S,
            clean_start=False,
            properties=properties,
        )
        self._client.loop_start()

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """Wait until connected and subscribed with the intake thread running; False if that
        did not happen within ``timeout``."""
        return (
            self._subscribed.wait(timeout) and self._worker.is_alive() and self._stage.is_alive()
        )

    def failure(self) -> str | None:
        """Why the intake can no longer store segments (its store process died), or None."""
        return self._stage.failure()

    def probe(self) -> IntakeProbe:
        """The intake's state now (safe from any thread)."""
        return IntakeProbe(
            reading=self._worker.is_alive(),
            storing=self._stage.is_alive(),
            store_failure=self._stage.failure(),
            connected=self._subscribed.is_set(),
            queued=self._deliveries.qsize(),
            store_pending=self._stage.pending(),
        )

    def stop(self) -> None:
        """Stop the intake thread after the message in hand and the store stage once it has
        stored what it was handed, disconnect, close the databases.

        Messages read but not handled stay unacknowledged: the broker keeps them in the
        session and delivers them again after a restart.
        """
        self._stopping.set()
        if self._worker.is_alive():
            self._deliveries.put(None)  # the worker skips what is queued before it
            self._worker.join()
        self._stage.stop()
        self._client.disconnect()
        self._client.loop_stop()
        self.intake.close()

    def store_later(self, badge: EnrolledBadge, partial: PartialSegment, received: int) -> None:
        """Hand the segment the message in hand completed to the store stage (it then
        acknowledges that message; see Intake.hand_off_to)."""
        self._handed_over = True
        self._stage.hand_over(badge, partial, received, self._ticket)

    def wait_stored(self, badge_id: str | None = None, seq: int | None = None) -> None:
        """Wait for the store stage to store what it holds (of ``badge_id``, ``seq``)."""
        self._stage.wait_stored(badge_id, seq)

    def _publish(self, topic: str, payload: bytes) -> None:
        info = self._client.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            log.warning("publish on %s not sent now (%s)", topic, mqtt.error_string(info.rc))

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, flags: Any, code: ReasonCode, _props: Any
    ) -> None:
        if code.is_failure:
            log.error("broker %s:%d refused the intake: %s", self.host, self.port, code)
            return
        log.info(
            "connected to %s:%d (session present: %s)",
            self.host,
            self.port,
            flags.session_present,
        )
        client.subscribe([(self.topic_filter, 1), (RESPONSE_TOPIC, 0)])

    def _on_subscribe(
        self, _client: mqtt.Client, _userdata: Any, _mid: int, codes: list[ReasonCode], _props: Any
    ) -> None:
        if any(code.is_failure for code in codes):
            log.error("broker refused the subscription to %s: %s", self.topic_filter, codes)
            return
        self._subscribed.set()

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, code: ReasonCode, _props: Any
    ) -> None:
        with self._connection_lock:
            self._connection += 1  # messages read before now are acknowledged by redelivery
        self._subscribed.clear()
        log.warning("disconnected from %s:%d: %s", self.host, self.port, code)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        """Queue the message for the intake thread (paho's thread only reads)."""
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = "<topic is not UTF-8>"
        if topic == RESPONSE_TOPIC:  # the broker's answer to a command, not a badge's message
            self.control.answered(bytes(message.payload))
            return
        delivery = Delivery(
            topic, bytes(message.payload), message.mid, message.qos, self._connection
        )
        while not self._stopping.is_set():
            try:
                self._deliveries.put(delivery, timeout=KEEPALIVE_S / 4)
                return
            except queue.Full:  # the broker sent beyond Receive Maximum; wait for room
                continue

    def _work(self) -> None:
        """The intake thread: handle each queued message in order, then acknowledge it
        (unless it was handed to the store stage, which acknowledges it)."""
        while (delivery := self._deliveries.get()) is not None:
            if self._stopping.is_set():
                continue  # unacknowledged: the broker delivers it again after a restart
            self._ticket = self._acks.take(delivery)
            self._handed_over = False
            try:
                self.intake.handle(delivery.topic, delivery.payload)
            except Exception:  # handle never raises; if it did, the thread must live on
                log.exception("intake raised on %r", delivery.topic[:200])
            if self._handed_over:
                continue
            try:
                self._acks.done(self._ticket)
            except Exception:  # the broker delivers it again; the intake answers it again
                log.exception("could not acknowledge a message on %r", delivery.topic[:200])

    def _acknowledge(self, delivery: Delivery) -> None:
        """PUBACK a handled message, unless its connection is gone (then the broker resends
        it, and the intake answers the duplicate as it answered the original)."""
        with self._connection_lock:
            if delivery.connection == self._connection:
                self._client.ack(delivery.mid, delivery.qos)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one intake process until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m gateway.intake.service", description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="gateway data directory")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--username", required=True, help="this process's broker account")
    parser.add_argument("--password-file", type=Path, required=True)
    parser.add_argument("--tls-ca", type=Path, help="CA certificate of the broker (TLS)")
    parser.add_argument("--shared-group", help="shared-subscription group (several workers)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    password = args.password_file.read_text().strip()
    service = IntakeService(
        GatewayDataDir(args.data),
        args.host,
        args.port,
        args.username,
        password,
        args.tls_ca,
        shared_group=args.shared_group,
    )
    stopping = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda _signal, _frame: stopping.set())
    service.start()
    if service.wait_connected(30.0):
        print("intake subscribed", flush=True)  # the ready line for supervisors
    stopping.wait()
    service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
