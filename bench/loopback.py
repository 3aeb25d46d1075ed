"""A hospital on loopback for benchmarks and load tests, and the raw MQTT path it is held to.

:class:`BenchHospital` is the demo's hospital (:class:`demo.run.Demo`: the same
mosquitto configuration, the same ``gateway run``) with many badges enrolled in-process and
two more broker accounts for measuring the broker alone: ``bench-probe-out`` (gateway role,
may write ``medbadge/v1/gateway/#``) publishes to ``bench-probe-in`` (badge role, reads its
own ``medbadge/v1/gateway/bench-probe-in/#``), topics the gateway's intake never sees.

:class:`RawTransfer` moves payloads over that path with paho, QoS 1 on both sides, through
the same TLS listener the badges use: the physical limit the uplink benchmarks are held to.
Its receiving side runs as its own process (``python -m bench.loopback receive ...``), as
the gateway does, so neither side shares an interpreter with the other. Asked to
(``send(..., durable=True)``), the receiver also does the least an evidence intake must do
with the bytes (``bench.durable_floor``) and reports a batch only once it is on disk.
"""

from __future__ import annotations

import argparse
import os
import pwd
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from bench.durable_floor import DurableFloor
from bench.procfs import children, rss_bytes
from demo.enrolment import enroll_badge
from demo.run import Demo
from evidence.bundle import EnrolmentBundle
from evidence.durable import write_durably
from evidence.keys import HpkeSuite
from evidence.messages import Receipt, Rejection
from evidence.topics import PREFIX, gateway_filter, parse_gateway_topic
from gateway.broker.accounts import broker_accounts
from gateway.broker.config import (
    BrokerAccount,
    BrokerSettings,
    hash_broker_password,
    new_broker_password,
    write_broker_config,
)
from gateway.config import GATEWAY_PASSWORD_FILE
from gateway.datadir import GatewayDataDir

PROBE_SENDER = "bench-probe-out"
PROBE_RECEIVER = "bench-probe-in"
PROBE_TOPIC = f"{PREFIX}/gateway/{PROBE_RECEIVER}/probe"
HOST = "localhost"
"""The name on the broker's server certificate (the gateway connects by it too)."""
WAIT_S = 30.0
WINDOW = 16
"""Messages a benchmark publisher may have unacknowledged (the badge uplink allows 8)."""


class BenchHospital(Demo):
    """A gateway data directory with ``badges`` enrolled badges, its broker and its gateway."""

    def __init__(
        self,
        root: Path,
        badges: int,
        *,
        prefix: str = "bench-badge",
        broker_address: str | None = None,
    ) -> None:
        """Plan the hospital in ``root``; :meth:`set_up_hospital` creates it.

        ``broker_address``: bind the broker there instead of 127.0.0.1 (the hospital's end of
        a ``bench.radio.RadioLink``); badges, the gateway and the probes connect to it.
        """
        super().__init__(root, narrate=False)
        if broker_address is not None:
            self.broker_address = broker_address
        self.broker_host = HOST if broker_address is None else broker_address
        """What every client connects to: a name or address on the broker's certificate."""
        self.badge_ids = [f"{prefix}-{number:03d}" for number in range(badges)]
        self.passwords = {name: new_broker_password() for name in (PROBE_SENDER, PROBE_RECEIVER)}

    @property
    def data_dir(self) -> GatewayDataDir:
        """The gateway data directory."""
        return GatewayDataDir(self.gateway_data)

    def bundle_dir(self, badge_id: str) -> Path:
        """Where ``badge_id``'s enrolment bundle is."""
        return self.root / "bundles" / badge_id

    def bundles(self) -> list[EnrolmentBundle]:
        """Every enrolled badge's bundle, in enrolment order."""
        return [EnrolmentBundle.load(self.bundle_dir(badge_id)) for badge_id in self.badge_ids]

    def set_up_hospital(self) -> None:
        """``gateway init`` and the enrolment of every badge, through the product's own API."""
        data_dir = self.data_dir
        data_dir.initialise("Bench Hospital", HpkeSuite.X25519, None)
        for badge_id in self.badge_ids:
            enroll_badge(
                data_dir,
                badge_id,
                self.bundle_dir(badge_id),
                broker_host=self.broker_host,
                broker_port=self.port,
                operator="bench",
            )

    def configure_broker(self) -> None:
        """The broker's files: every badge, the gateway, the two probe accounts; gateway.toml."""
        data_dir = self.data_dir
        gateway_password = new_broker_password()
        write_durably(
            data_dir.keys / GATEWAY_PASSWORD_FILE, gateway_password.encode() + b"\n", 0o600
        )
        accounts = broker_accounts(data_dir, hash_broker_password(gateway_password))
        accounts.append(
            BrokerAccount(
                PROBE_SENDER, hash_broker_password(self.passwords[PROBE_SENDER]), "gateway"
            )
        )
        accounts.append(
            BrokerAccount(
                PROBE_RECEIVER, hash_broker_password(self.passwords[PROBE_RECEIVER]), "badge"
            )
        )
        settings = BrokerSettings(
            tls_port=self.port,
            bind_tls=self.broker_address,
            run_as_user=pwd.getpwuid(os.geteuid()).pw_name,
        )
        write_broker_config(
            self.broker_dir,
            accounts,
            settings,
            data_dir.evidence_ca(),
            server_hostnames=[HOST],
            server_ips=[self.broker_address],
        )
        (self.gateway_data / "gateway.toml").write_text(
            f'[broker]\nhost = "{self.broker_host}"\nport = {self.port}\n\n'
            f'[paths]\nbroker_dir = "{self.broker_dir}"\n\n'
            # read by ``gateway console`` only; ``gateway run`` serves no HTTP
            f'[console]\nhost = "127.0.0.1"\nport = {self.console_port}\ntls = false\n'
        )

    def start(self) -> None:
        """Create the hospital and start its broker and ``gateway run``."""
        self.set_up_hospital()
        self.configure_broker()
        self.start_broker()
        self.start_gateway()

    def probe_client(self, username: str) -> mqtt.Client:
        """A connected paho client (TLS, MQTT v5) with a probe account, its loop running."""
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=username, protocol=mqtt.MQTTv5)
        client.username_pw_set(username, self.passwords[username])
        client.tls_set(ca_certs=str(self.broker_dir / "ca.crt"))
        connected = threading.Event()
        client.on_connect = lambda *_args: connected.set()
        client.connect(self.broker_host, self.port, keepalive=60)
        client.loop_start()
        if not connected.wait(WAIT_S):
            raise RuntimeError(f"probe account {username} could not connect to the broker")
        return client

    def gateway_rss_bytes(self) -> int:
        """The resident memory of the running ``gateway run`` and its store process, from
        /proc (the two are one gateway: decision 1505)."""
        gateway = self.process("gateway").pid
        return sum(rss_bytes(pid) for pid in (gateway, *children(gateway)))


class WindowedPublisher:
    """Publishes QoS 1 on a paho client (its own loop thread) with a bounded window."""

    def __init__(self, client: mqtt.Client, window: int = WINDOW) -> None:
        """Take over ``client``'s ``on_publish``; at most ``window`` messages unacknowledged."""
        self._client = client
        self._window = window
        self._acked = threading.Condition()
        self._unacked = 0
        client.on_publish = self._on_publish

    def _on_publish(self, *_args: Any) -> None:
        with self._acked:
            self._unacked -= 1
            self._acked.notify_all()

    def publish_all(self, messages: Sequence[tuple[str, bytes]]) -> int:
        """Publish every (topic, payload) in order; return the monotonic ns of the first."""
        start = time.monotonic_ns()
        for topic, payload in messages:
            with self._acked:
                if not self._acked.wait_for(lambda: self._unacked < self._window, WAIT_S):
                    raise RuntimeError(f"no PUBACK within {WAIT_S} s while publishing {topic}")
                self._unacked += 1
            self._client.publish(topic, payload, qos=1)
        return start


class BadgeLink:
    """One badge's own broker connection (its login, TLS), timing the receipts it gets."""

    def __init__(self, bundle: EnrolmentBundle, ca_file: Path) -> None:
        """Connect as the badge of ``bundle`` and subscribe to its receipts."""
        self.badge_id = bundle.identity.badge_id
        self._gateway_key = bundle.gateway_key
        self._changed = threading.Condition()
        self.receipts: dict[tuple[str, str], tuple[Receipt, int]] = {}
        """(subject, key) -> the verified receipt and the monotonic ns it arrived."""
        self.rejections: list[str] = []
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.badge_id, protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set(bundle.broker.username, bundle.broker.password)
        self.client.tls_set(ca_certs=str(ca_file))
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_args: self._note("subscribed")
        self.publisher = WindowedPublisher(self.client)
        self._flags: set[str] = set()
        self.client.on_connect = lambda client, *_args: client.subscribe(
            gateway_filter(self.badge_id), qos=1
        )
        self.client.connect(bundle.broker.host, bundle.broker.port, keepalive=60)
        self.client.loop_start()
        self._wait(lambda: "subscribed" in self._flags, "its subscription")

    def _note(self, flag: str) -> None:
        with self._changed:
            self._flags.add(flag)
            self._changed.notify_all()

    def _wait(self, ready: Callable[[], bool], what: str) -> None:
        with self._changed:
            if not self._changed.wait_for(ready, WAIT_S):
                raise RuntimeError(f"badge {self.badge_id}: no {what} within {WAIT_S} s")

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        arrived = time.monotonic_ns()
        payload = bytes(message.payload)
        _badge, kind = parse_gateway_topic(message.topic)
        with self._changed:
            if kind == "reject":
                rejection = Rejection.open(payload, self._gateway_key, message.topic)
                self.rejections.append(f"{rejection.reason}: {rejection.detail}")
            else:
                receipt = Receipt.open(payload, self._gateway_key, message.topic)
                self.receipts.setdefault((receipt.subject, receipt.key), (receipt, arrived))
            self._changed.notify_all()

    def wait_receipt(self, subject: str, key: str) -> int:
        """Wait for the receipt of ``subject`` ``key``; return the monotonic ns it arrived."""
        self._wait(
            lambda: (subject, key) in self.receipts or bool(self.rejections),
            f"{subject} receipt {key}",
        )
        if self.rejections:
            raise RuntimeError(f"badge {self.badge_id}: the gateway refused {self.rejections}")
        return self.receipts[subject, key][1]

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


class RawTransfer:
    """Payloads over the probe path: a publisher here, a byte-counting receiver process."""

    def __init__(
        self,
        hospital: BenchHospital,
        *,
        connect: Callable[[Callable[[], mqtt.Client]], mqtt.Client] | None = None,
    ) -> None:
        """Connect the publisher and start the receiver process.

        ``connect`` opens the publisher's client where the badges' are opened (through a
        ``bench.radio.RadioLink``'s ``inside``, so that it crosses the same link).
        """
        self._hospital = hospital
        def open_sender() -> mqtt.Client:
            return hospital.probe_client(PROBE_SENDER)

        self._sender = open_sender() if connect is None else connect(open_sender)
        self._publisher = WindowedPublisher(self._sender)
        password_file = hospital.root / "probe-in.password"
        write_durably(password_file, hospital.passwords[PROBE_RECEIVER].encode(), 0o600)
        self._receiver = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.loopback",
                "receive",
                "--host",
                hospital.broker_host,
                "--port",
                str(hospital.port),
                "--ca",
                str(hospital.broker_dir / "ca.crt"),
                "--password-file",
                str(password_file),
                "--floor-dir",
                str(hospital.root / "floor"),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if self._receiver.stdin is None or self._receiver.stdout is None:
            raise RuntimeError("the raw receiver has no pipes")
        self._to_receiver = self._receiver.stdin
        self._from_receiver = self._receiver.stdout
        if self._line() != "ready":
            raise RuntimeError("the raw receiver did not subscribe")

    def _line(self) -> str:
        """The receiver's next line; RuntimeError if it ends, or says nothing for WAIT_S (it
        is then killed, so no benchmark waits forever on it)."""
        silence = threading.Timer(WAIT_S, self._receiver.kill)
        silence.start()
        try:
            line = self._from_receiver.readline()
        finally:
            silence.cancel()
        if not line:
            raise RuntimeError(f"the raw receiver ended or said nothing for {WAIT_S:g} s")
        return line.strip()

    def send(self, payloads: Sequence[bytes], *, durable: bool = False) -> float:
        """Publish ``payloads`` (QoS 1, windowed as the uplink benchmarks' publishers are);
        return the seconds from the first publish until the receiver had every byte (its
        clock and ours are the same CLOCK_MONOTONIC); ``durable``: until it had hashed,
        written and fsynced every byte (``bench.durable_floor``)."""
        total = sum(len(payload) for payload in payloads)
        self._to_receiver.write(f"{total} {'durable' if durable else 'raw'}\n")
        self._to_receiver.flush()
        if self._line() != "armed":
            raise RuntimeError("the raw receiver did not arm")
        start = self._publisher.publish_all([(PROBE_TOPIC, payload) for payload in payloads])
        done_ns = int(self._line())
        return (done_ns - start) / 1e9

    def round_trip(self, payload: bytes) -> float:
        """Seconds from one QoS 1 publish until the receiver had it."""
        return self.send([payload])

    def close(self) -> None:
        """Disconnect the publisher and end the receiver."""
        self._sender.disconnect()
        self._sender.loop_stop()
        self._to_receiver.close()
        try:
            self._receiver.wait(10)
        except subprocess.TimeoutExpired:
            self._receiver.kill()
            self._receiver.wait(10)


def _receive(host: str, port: int, ca: Path, password: str, floor_dir: Path) -> int:
    """The receiving side: count bytes on the probe topic (and, for a durable batch, hash,
    write and fsync them); report when a batch is complete.

    Each line on stdin arms a batch: its byte count and ``raw`` or ``durable``.
    """
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=PROBE_RECEIVER, protocol=mqtt.MQTTv5
    )
    client.username_pw_set(PROBE_RECEIVER, password)
    client.tls_set(ca_certs=str(ca))
    state = {"want": 0, "got": 0, "durable": 0}
    subscribed = threading.Event()
    floor = DurableFloor(floor_dir)

    def on_message(_client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        if state["durable"]:
            floor.take(message.payload)
        state["got"] += len(message.payload)
        if state["want"] and state["got"] >= state["want"]:
            if state["durable"]:
                floor.finish()
            # disarm before answering: the answer lets the next batch be armed at once
            state["want"] = 0
            print(time.monotonic_ns(), flush=True)

    def on_connect(
        client: mqtt.Client, _userdata: Any, _flags: Any, _code: ReasonCode, _props: Any
    ) -> None:
        client.subscribe(PROBE_TOPIC, qos=1)

    client.on_message = on_message
    client.on_connect = on_connect
    client.on_subscribe = lambda *_args: subscribed.set()
    client.connect(host, port, keepalive=60)
    client.loop_start()
    if not subscribed.wait(WAIT_S):
        return 1
    print("ready", flush=True)
    for line in sys.stdin:
        want, kind = line.split()
        state["got"] = 0
        state["durable"] = kind == "durable"
        state["want"] = int(want)
        print("armed", flush=True)
    client.disconnect()
    client.loop_stop()
    floor.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``receive``: the raw path's receiving side (see :class:`RawTransfer`)."""
    parser = argparse.ArgumentParser(prog="python -m bench.loopback", description=__doc__)
    parser.add_argument("role", choices=["receive"])
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca", type=Path, required=True)
    parser.add_argument("--password-file", type=Path, required=True)
    parser.add_argument("--floor-dir", type=Path, required=True, help="for durable batches")
    args = parser.parse_args(argv)
    password = args.password_file.read_text().strip()
    return _receive(args.host, args.port, args.ca, password, args.floor_dir)


if __name__ == "__main__":
    sys.exit(main())
