"""The intake's MQTT side: a paho v5 client that feeds every badge message to the Intake.

The client keeps a persistent session (clean start off, a session expiry of a week), so
QoS 1 messages the broker queued while the gateway was down arrive after it restarts.
Messages are handled on paho's network thread, one at a time, in arrival order; paho sends
the PUBACK only after ``Intake.handle`` returns, so a message the gateway had not finished
storing when it died is delivered again (decision 0700). Receipts and rejections go out
with QoS 1. paho reconnects on its own, backing off from 1 s to 60 s.

Run it alone with ``python -m gateway.service --data DIR --host H --port P --username U
--password-file F [--tls-ca CA] [--shared-group G]``; SIGTERM stops it cleanly.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from evidence.topics import ALL_BADGES_FILTER, shared_subscription
from gateway.alerts import AlertEvent
from gateway.datadir import GatewayDataDir
from gateway.intake import AlertListener, Intake

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600
"""How long the broker keeps the intake's session and queues messages for it while it is down."""
KEEPALIVE_S = 30
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 60


def _ignore_alert(_event: AlertEvent) -> None:
    """The default alert listener: alerts are stored; nobody is watching live."""


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
        session_expiry_s: int = SESSION_EXPIRY_S,
    ) -> None:
        """Prepare the client (``start`` connects); ``tls_ca`` None means plain MQTT (loopback).

        ``shared_group`` subscribes as ``$share/<group>/medbadge/v1/badge/#`` so several
        intake processes split the load (read decision 0701 first).
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
        # the broker uses the login name as the client id; saying so keeps the session ours
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=username, protocol=mqtt.MQTTv5
        )
        self._client.username_pw_set(username, password)
        if tls_ca is not None:
            self._client.tls_set(ca_certs=str(tls_ca))
        self._client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self.intake = Intake(data_dir, self._publish, on_alert)

    def start(self) -> None:
        """Connect in the background (retrying until the broker answers) and start handling."""
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self._session_expiry_s
        self._client.connect_async(
            self.host,
            self.port,
            keepalive=KEEPALIVE_S,
            clean_start=False,
            properties=properties,
        )
        self._client.loop_start()

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """Wait until connected and subscribed; False if that did not happen within ``timeout``."""
        return self._subscribed.wait(timeout)

    def stop(self) -> None:
        """Disconnect cleanly, stop the network thread and close the intake's database."""
        self._client.disconnect()
        self._client.loop_stop()
        self.intake.close()

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
        client.subscribe(self.topic_filter, qos=1)

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
        self._subscribed.clear()
        log.warning("disconnected from %s:%d: %s", self.host, self.port, code)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = "<topic is not UTF-8>"
        try:
            self.intake.handle(topic, bytes(message.payload))
        except Exception:  # handle never raises; if it did, paho's thread must live on
            log.exception("intake raised on %r", topic[:200])


def main(argv: Sequence[str] | None = None) -> int:
    """Run one intake process until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m gateway.service", description=__doc__)
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
