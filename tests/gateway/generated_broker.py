"""A real mosquitto started from the configuration ``gateway broker-config`` wrote, for tests."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path
from types import TracebackType

from evidence.bundle import EnrolmentBundle
from gateway.broker.config import CA_CERT_FILE, CONFIG_FILE, LOG_FILE
from gateway.cli import main
from tests.mosquitto import HOST, MOSQUITTO, TLS_HOSTNAME, MqttSession, free_port

WAIT_S = 15.0


def write_config(data: Path, *extra: str, ports: tuple[int, int] | None = None) -> tuple[int, int]:
    """Run ``gateway broker-config`` for a test broker on loopback ports; return them.

    ``ports`` (TLS, plain) default to free ones.
    """
    if ports is None:
        tls_port = free_port()
        ports = (tls_port, free_port(avoid=[tls_port]))
    tls_port, plain_port = ports
    args = [
        "--data",
        str(data),
        "broker-config",
        "--tls-port",
        str(tls_port),
        "--plain-port",
        str(plain_port),
        "--bind",
        HOST,
        # a root test run must not drop to "mosquitto", which cannot enter pytest's directories
        "--broker-user",
        current_user(),
        *extra,
    ]
    assert main(args) == 0
    return tls_port, plain_port


def current_user() -> str:
    """Who runs the tests (the broker must not drop to another account)."""
    return pwd.getpwuid(os.geteuid()).pw_name


class GeneratedBroker:
    """mosquitto run from a generated broker directory; ``reload`` sends SIGHUP."""

    def __init__(self, broker_dir: Path, tls_port: int, plain_port: int) -> None:
        """Use the files in ``broker_dir``; ``start`` runs the broker."""
        self.broker_dir = broker_dir
        self.tls_port = tls_port
        self.plain_port = plain_port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def ca_file(self) -> Path:
        """The evidence CA certificate the broker's server certificate chains to."""
        return self.broker_dir / CA_CERT_FILE

    def log_text(self) -> str:
        """What mosquitto logged so far."""
        parts = []
        for name in ("mosquitto.stderr", LOG_FILE):
            with contextlib.suppress(FileNotFoundError):
                parts.append((self.broker_dir / name).read_text(errors="replace"))
        return "\n".join(parts)

    def start(self) -> None:
        """Start mosquitto and wait until the TLS listener completes a handshake."""
        with (self.broker_dir / "mosquitto.stderr").open("ab") as output:
            self.process = subprocess.Popen(
                [str(MOSQUITTO), "-c", str(self.broker_dir / CONFIG_FILE)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + WAIT_S
        context = ssl.create_default_context(cafile=str(self.ca_file))
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited:\n{self.log_text()}")
            try:
                with (
                    socket.create_connection((HOST, self.tls_port), timeout=0.5) as connection,
                    context.wrap_socket(connection, server_hostname=TLS_HOSTNAME),
                ):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not start:\n{self.log_text()}") from None
                time.sleep(0.02)

    def reload(self) -> None:
        """SIGHUP: mosquitto re-reads its password file and ACL; wait until it says so."""
        assert self.process is not None
        before = self.log_text().count("Reloading config")
        os.kill(self.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + WAIT_S
        while self.log_text().count("Reloading config") <= before:
            if time.monotonic() > deadline:
                raise AssertionError(f"mosquitto did not reload:\n{self.log_text()}")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it hangs."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(WAIT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(WAIT_S)
        self.process = None

    def __enter__(self) -> GeneratedBroker:
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


def tls_session(broker: GeneratedBroker, username: str, password: str, ca: Path) -> MqttSession:
    """A TLS MQTT session to ``broker`` (connected, or refused: check ``connack``)."""
    session = MqttSession(TLS_HOSTNAME, broker.tls_port, username, password, tls_ca=ca)
    session.connect()
    return session


def badge_tls_session(broker: GeneratedBroker, bundle_dir: Path) -> MqttSession:
    """A badge's session exactly as its bundle says: its login, trusting its bundle's CA."""
    bundle = EnrolmentBundle.load(bundle_dir)
    credentials = bundle.broker
    return tls_session(
        broker, credentials.username, credentials.password, bundle_dir / "evidence-ca.crt"
    )
