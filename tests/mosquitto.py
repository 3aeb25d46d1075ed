"""A real mosquitto broker for tests: generated configuration, free ports, captured log."""

from __future__ import annotations

import contextlib
import getpass
import os
import random
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.broker.config import (
    DEFAULT_MAX_PACKET_BYTES,
    LOG_FILE,
    BrokerAccount,
    BrokerSettings,
    Role,
    hash_broker_password,
    write_broker_config,
)
from gateway.pki.ca import CA_CERT_FILE, EvidenceCA

MOSQUITTO = Path("/usr/sbin/mosquitto")
HOST = "127.0.0.1"
TLS_HOSTNAME = "localhost"
"""The name on the broker's server certificate; connect to it to check hostname verification."""
SYSTEM_BROKER_PORT = 1883
"""The port of a system-wide broker; tests never touch it."""
WAIT_S = 10.0


@dataclass(frozen=True)
class BrokerLogin:
    """A broker account whose clear-text password the test knows."""

    username: str
    password: str
    role: Role


DEFAULT_LOGINS = (
    BrokerLogin("gateway", "gateway-test-password", "gateway"),
    BrokerLogin("badge-a", "badge-a-test-password", "badge"),
    BrokerLogin("badge-b", "badge-b-test-password", "badge"),
)


_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST_TEST_PORT = 20000
_PORT_CHOICE = random.Random()


def free_port(avoid: Sequence[int] = ()) -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (never 1883).

    It lies below the kernel's ephemeral range: a port the kernel picks for ``bind(0)`` is
    one it may give next to any outgoing connection (a gateway retrying a broker that is not
    up yet, say), which then holds it when the broker binds it ("Address already in use").
    """
    ephemeral_low = int(_EPHEMERAL_RANGE.read_text().split()[0])
    while True:
        port = _PORT_CHOICE.randrange(_LOWEST_TEST_PORT, ephemeral_low)
        if port == SYSTEM_BROKER_PORT or port in avoid:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue  # taken
        return port


class MosquittoProcess:
    """One mosquitto process on free ports, configured by ``write_broker_config``.

    Both listeners are bound to 127.0.0.1: TLS on ``tls_port``, plain MQTT on ``plain_port``.
    Ports and files stay the same across ``restart()``, so persistent sessions survive it.
    """

    def __init__(
        self,
        config_dir: Path,
        logins: Sequence[BrokerLogin] = DEFAULT_LOGINS,
        *,
        max_packet_bytes: int = DEFAULT_MAX_PACKET_BYTES,
        ca: EvidenceCA | None = None,
        run_as_user: str | None = None,
        accounts: Sequence[BrokerAccount] = (),
        launcher: Sequence[str] = (),
    ) -> None:
        """Generate the configuration in ``config_dir``; the broker starts on ``start()``.

        ``run_as_user`` defaults to whoever runs the tests: a root test run must not drop
        to "mosquitto", which cannot enter pytest's private temporary directories.
        ``accounts`` are added as given (already hashed, e.g. from the badge registry);
        ``session()`` works only for ``logins``, whose clear passwords are known here.
        ``launcher`` comes before the mosquitto command (e.g. ``setpriv`` with the
        privileges a unit would leave it).
        """
        self.config_dir = Path(config_dir)
        self.run_as_user = run_as_user or getpass.getuser()
        self.logins = {login.username: login for login in logins}
        self.max_packet_bytes = max_packet_bytes
        self.accounts = tuple(accounts)
        self.launcher = tuple(launcher)
        self.ca = ca or EvidenceCA.create("Test Hospital")
        self.tls_port = 0
        self.plain_port = 0
        self.config_path = self._write_config()
        self._process: subprocess.Popen[bytes] | None = None
        self._started_once = False

    @property
    def ca_file(self) -> Path:
        """The evidence CA certificate clients trust for the TLS listener."""
        return self.config_dir / CA_CERT_FILE

    @property
    def log_path(self) -> Path:
        """mosquitto's own log file."""
        return self.config_dir / LOG_FILE

    @property
    def stderr_path(self) -> Path:
        """What mosquitto printed before its log file was open (startup errors)."""
        return self.config_dir / "mosquitto.stderr"

    @property
    def running(self) -> bool:
        """True while the mosquitto process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        """The running process's id."""
        if self._process is None:
            raise RuntimeError("mosquitto is not started")
        return self._process.pid

    def password(self, username: str) -> str:
        """The clear-text password of ``username``."""
        return self.logins[username].password

    def start(self) -> None:
        """Start mosquitto and wait until both listeners accept TCP connections."""
        if self.running:
            raise RuntimeError(f"mosquitto (pid {self.pid}) is already running")
        for _attempt in range(3):
            self._spawn()
            try:
                self.wait_ready()
            except RuntimeError:
                self.kill()
                # Another process may have taken a free port between our probe and
                # mosquitto's bind; pick new ports, but only before the first success.
                if self._started_once or "Address already in use" not in self.log_text():
                    raise
                self.tls_port = self.plain_port = 0
                self.config_path = self._write_config()
                continue
            self._started_once = True
            return
        raise RuntimeError("mosquitto could not bind free ports after 3 attempts")

    def wait_ready(self, timeout: float = WAIT_S) -> None:
        """Wait until both listeners accept TCP connections; raise if mosquitto exits."""
        deadline = time.monotonic() + timeout
        pending = {self.tls_port, self.plain_port}
        while pending:
            if self._process is None or self._process.poll() is not None:
                code = None if self._process is None else self._process.returncode
                raise RuntimeError(f"mosquitto exited with {code}:\n{self.log_text()}")
            for port in sorted(pending):
                with contextlib.suppress(OSError):
                    self._probe(port)
                    pending.discard(port)
            if pending and time.monotonic() > deadline:
                raise RuntimeError(
                    f"mosquitto did not accept connections on {sorted(pending)} within "
                    f"{timeout} s:\n{self.log_text()}"
                )
            if pending:
                time.sleep(0.02)

    def _probe(self, port: int) -> None:
        """Open a connection to ``port``, with a full TLS handshake on the TLS listener."""
        with socket.create_connection((HOST, port), timeout=0.5) as connection:
            if port == self.tls_port:
                context = ssl.create_default_context(cafile=str(self.ca_file))
                with context.wrap_socket(connection, server_hostname=TLS_HOSTNAME):
                    pass

    def stop(self, timeout: float = WAIT_S) -> None:
        """Stop mosquitto with SIGTERM (it saves its persistence file); SIGKILL if it hangs."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout)
        self._process = None

    def kill(self) -> None:
        """Kill mosquitto with SIGKILL: no goodbye, no persistence save (a crash)."""
        if self._process is None:
            return
        if self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGKILL)
            self._process.wait(WAIT_S)
        self._process = None

    def restart(self) -> None:
        """Stop and start again on the same ports with the same files."""
        self.stop()
        self.start()

    def log_text(self) -> str:
        """Everything mosquitto has logged so far (startup output, then its log file).

        Both files are appended to, so the text covers every start since construction.
        """
        parts = []
        for path in (self.stderr_path, self.log_path):
            with contextlib.suppress(FileNotFoundError):
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def wait_for_log(self, text: str, timeout: float = WAIT_S) -> str:
        """Wait until ``text`` appears in the log; return the whole log."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.log_text()
            if text in log:
                return log
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not logged within {timeout} s:\n{log}")
            time.sleep(0.02)

    def session(self, username: str | None, **options: Any) -> MqttSession:
        """Return a connected ``MqttSession`` to the plain listener as ``username``."""
        password = None if username is None else self.password(username)
        session = MqttSession(HOST, self.plain_port, username, password, **options)
        session.connect()
        return session

    def __enter__(self) -> MosquittoProcess:
        """Start the broker."""
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        """Stop the broker."""
        self.stop()

    def _write_config(self) -> Path:
        """Pick free ports (if none yet) and write the broker's files."""
        if not self.tls_port:
            self.tls_port = free_port()
            self.plain_port = free_port(avoid=[self.tls_port])
        accounts = [
            BrokerAccount(login.username, hash_broker_password(login.password), login.role)
            for login in self.logins.values()
        ]
        accounts.extend(self.accounts)
        settings = BrokerSettings(
            tls_port=self.tls_port,
            plain_port=self.plain_port,
            bind_tls=HOST,
            max_packet_bytes=self.max_packet_bytes,
            run_as_user=self.run_as_user,
        )
        return write_broker_config(
            self.config_dir,
            accounts,
            settings,
            self.ca,
            server_hostnames=[TLS_HOSTNAME],
            server_ips=[HOST],
        )

    def _spawn(self) -> None:
        """Start the process with its early output going to ``stderr_path``."""
        if not MOSQUITTO.exists():
            raise RuntimeError(f"{MOSQUITTO} is missing: run scripts/ensure-system-deps")
        with self.stderr_path.open("ab") as output:
            self._process = subprocess.Popen(
                [*self.launcher, str(MOSQUITTO), "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )


@contextlib.contextmanager
def running_broker(config_dir: Path, **options: Any) -> Iterator[MosquittoProcess]:
    """Yield a started ``MosquittoProcess``; stop it (or kill it if stopping fails) after."""
    broker = MosquittoProcess(config_dir, **options)
    broker.start()
    try:
        yield broker
    finally:
        try:
            broker.stop()
        finally:
            broker.kill()


class MqttSession:
    """A paho MQTT v5 client that records what the broker answers, for assertions.

    Every wait is bounded; paho's automatic reconnection is off so a refusal stays visible.
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str | None,
        password: str | None,
        *,
        tls_ca: Path | None = None,
        tls_client: tuple[Path, Path] | None = None,
        client_id: str = "",
        clean_start: bool = True,
        session_expiry_s: int = 0,
    ) -> None:
        """Prepare (not yet connect) a client; ``session_expiry_s`` > 0 keeps its session.

        ``tls_client`` (certificate file, key file) is shown to the broker."""
        self.host = host
        self.port = port
        self.clean_start = clean_start
        self.session_expiry_s = session_expiry_s
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls_ca is not None:
            self.client.tls_set(
                ca_certs=str(tls_ca),
                certfile=None if tls_client is None else str(tls_client[0]),
                keyfile=None if tls_client is None else str(tls_client[1]),
            )
        self._changed = threading.Condition()
        self.connack: ReasonCode | None = None
        self.connack_properties: Properties | None = None
        self.disconnects: list[ReasonCode] = []
        self.messages: list[mqtt.MQTTMessage] = []
        self._pubacks: dict[int, ReasonCode] = {}
        self._subacks: dict[int, list[ReasonCode]] = {}
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe

    def connect(self, timeout: float = WAIT_S) -> ReasonCode:
        """Connect and return the CONNACK reason code (a refusal is returned, not raised)."""
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if self.session_expiry_s:
            properties.SessionExpiryInterval = self.session_expiry_s
        self.client.connect(
            self.host,
            self.port,
            keepalive=30,
            clean_start=self.clean_start,
            properties=properties,
        )
        self.client.loop_start()
        self._wait(lambda: self.connack is not None, timeout, "CONNACK")
        assert self.connack is not None
        return self.connack

    def subscribe(self, topic_filter: str, qos: int = 1, timeout: float = WAIT_S) -> ReasonCode:
        """Subscribe and return the SUBACK reason code for the filter."""
        result, mid = self.client.subscribe(topic_filter, qos=qos)
        assert result == mqtt.MQTT_ERR_SUCCESS and mid is not None, f"subscribe failed: {result}"
        self._wait(lambda: mid in self._subacks, timeout, f"SUBACK for {topic_filter}")
        return self._subacks[mid][0]

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        timeout: float = WAIT_S,
    ) -> ReasonCode | None:
        """Publish; for QoS 1 return the PUBACK reason code, or None if the link dropped."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos == 0:
            return None
        self._wait(
            lambda: info.mid in self._pubacks or bool(self.disconnects),
            timeout,
            f"PUBACK or disconnect for {topic}",
        )
        return self._pubacks.get(info.mid)

    def wait_for_message(self, topic: str, timeout: float = WAIT_S) -> mqtt.MQTTMessage:
        """Wait for the first message on ``topic`` and return it."""
        self._wait(lambda: bool(self.received(topic)), timeout, f"a message on {topic}")
        return self.received(topic)[0]

    def received(self, topic: str) -> list[mqtt.MQTTMessage]:
        """Messages received so far on ``topic``."""
        with self._changed:
            return [message for message in self.messages if message.topic == topic]

    def wait_disconnected(self, timeout: float = WAIT_S) -> ReasonCode:
        """Wait until the broker drops this client; return the reason code."""
        self._wait(lambda: bool(self.disconnects), timeout, "a disconnect")
        return self.disconnects[0]

    def close(self) -> None:
        """Disconnect (if connected) and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()

    def _wait(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Block until ``ready()`` is true or fail after ``timeout`` seconds."""
        with self._changed:
            if not self._changed.wait_for(ready, timeout):
                raise AssertionError(f"no {what} within {timeout} s")

    def _on_connect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, code: ReasonCode, props: Any
    ) -> None:
        with self._changed:
            self.connack = code
            self.connack_properties = props
            self._changed.notify_all()

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, code: ReasonCode, _props: Any
    ) -> None:
        with self._changed:
            self.disconnects.append(code)
            self._changed.notify_all()

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._changed:
            self.messages.append(message)
            self._changed.notify_all()

    def _on_publish(
        self, _client: mqtt.Client, _userdata: Any, mid: int, code: ReasonCode, _props: Any
    ) -> None:
        with self._changed:
            self._pubacks[mid] = code
            self._changed.notify_all()

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        mid: int,
        codes: list[ReasonCode],
        _props: Any,
    ) -> None:
        with self._changed:
            self._subacks[mid] = codes
            self._changed.notify_all()
