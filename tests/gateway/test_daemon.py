"""``gateway run`` as a real process: real mosquitto, a real badge login, a real webhook."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.procfs import children
from evidence.messages import Receipt
from evidence.timestamp import verify_timestamp
from evidence.topics import gateway_filter, gateway_topic
from gateway.alerts.webhooks import SIGNATURE_HEADER, verify_signature
from gateway.cli import main
from gateway.ledger.ledger import open_ledger
from tests.gateway.badge_messages import BadgeMessages, Hospital, make_hospital
from tests.gateway.generated_broker import GeneratedBroker, badge_tls_session, write_config
from tests.gateway.webhook_receiver import WebhookReceiver, wait_until
from tests.mosquitto import free_port

REPO = Path(__file__).resolve().parents[2]
SECRET = b"0123456789abcdef0123456789abcdef"
WAIT_S = 20.0


class NotifySocket:
    """The datagram socket systemd would listen on; a thread collects what the service sends.

    It reads all the time, as systemd does: the kernel queues only a few datagrams.
    """

    def __init__(self) -> None:
        # AF_UNIX paths are limited to 107 bytes, so not under pytest's long tmp_path
        self.directory = Path(tempfile.mkdtemp(prefix="mb-notify-", dir="/tmp"))
        self.path = self.directory / "notify"
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(self.path))
        self.socket.settimeout(0.1)
        self.messages: list[str] = []
        self._changed = threading.Condition()
        self._closing = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._closing.is_set():
            try:
                data = self.socket.recv(4096)
            except TimeoutError:
                continue
            with self._changed:
                self.messages.append(data.decode())
                self._changed.notify_all()

    def lines(self) -> list[str]:
        """Every line received so far (a datagram may carry several)."""
        with self._changed:
            return [line for message in self.messages for line in message.splitlines()]

    def wait_for(self, line: str, timeout: float = WAIT_S) -> None:
        """Wait until a datagram holding ``line`` has arrived."""
        with self._changed:
            if not self._changed.wait_for(lambda: line in self.lines(), timeout):
                raise AssertionError(f"no {line!r} within {timeout} s: {self.messages}")

    def close(self) -> None:
        self._closing.set()
        self._reader.join()
        self.socket.close()
        self.path.unlink(missing_ok=True)
        self.directory.rmdir()


class GatewayProcess:
    """``python -m gateway.cli --data DATA run`` with systemd's notification variables."""

    def __init__(self, data: Path, notify: NotifySocket, log: Path) -> None:
        self.log = log
        environment = {
            key: value
            for key, value in os.environ.items()
            if key not in ("WATCHDOG_PID", "JOURNAL_STREAM")
        }
        environment |= {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"}
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "--data", str(data), "run"],
                cwd=REPO,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self) -> int:
        """SIGTERM and the exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(WAIT_S)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(WAIT_S)


@pytest.fixture
def hospital(tmp_path: Path) -> Hospital:
    return make_hospital(tmp_path)


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    listener = NotifySocket()
    yield listener
    listener.close()


def configure(
    hospital: Hospital, tls_port: int, webhook_url: str, console_port: int | None = None
) -> None:
    """A gateway.toml pointing at the test broker's TLS port and one webhook (and naming a
    console port, which only ``gateway console`` would use)."""
    root = hospital.data_dir.root
    secret = root / "webhook.secret"
    secret.write_bytes(SECRET + b"\n")
    secret.chmod(0o600)
    (root / "gateway.toml").write_text(
        f"""
[broker]
port = {tls_port}

[[webhook]]
url = "{webhook_url}"
secret_file = "webhook.secret"
retry_min_seconds = 0.05
"""
        + ("" if console_port is None else f"\n[console]\nport = {console_port}\ntls = false\n")
    )


def test_an_alert_reaches_the_webhook_and_sigterm_stops_cleanly(
    hospital: Hospital, notify: NotifySocket, tmp_path: Path
) -> None:
    tls_port, plain_port = write_config(hospital.data_dir.root)
    bundle_dir = tmp_path / "bundles" / "badge-a"
    badge = BadgeMessages.of(hospital.bundles["badge-a"])
    with (
        WebhookReceiver(statuses=[500]) as receiver,
        GeneratedBroker(hospital.data_dir.root / "broker", tls_port, plain_port) as broker,
    ):
        console_port = free_port(avoid=[tls_port, plain_port])
        configure(hospital, tls_port, receiver.url, console_port)
        gateway = GatewayProcess(hospital.data_dir.root, notify, tmp_path / "gateway.log")
        session = None
        try:
            notify.wait_for("READY=1")
            # the console is a process of its own: nothing listens on its port here, and the
            # alert still reaches the webhook
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", console_port), timeout=2).close()
            session = badge_tls_session(broker, bundle_dir)
            assert session.connack is not None and session.connack.value == 0
            assert not session.subscribe(gateway_filter("badge-a")).is_failure
            puback = session.publish(badge.topic("alert"), badge.alert("inc-77"))
            assert puback is not None and not puback.is_failure

            posts = receiver.wait_posts(2)  # the first got a 500 and was retried
            post = posts[-1]
            assert (posts[0].status, post.status) == (500, 200)
            assert verify_signature(SECRET, post.body, post.headers[SIGNATURE_HEADER.lower()])
            document = json.loads(post.body)
            assert (document["badge"], document["incident"], document["wearer"]) == (
                "badge-a",
                "inc-77",
                "Nurse badge-a",
            )
            assert document["location"] == "Ward 3"
            assert document["press"]["badge_wall_ns"] == badge.press(0).wall_ns

            receipt_topic = gateway_topic("badge-a", "receipt")
            message = session.wait_for_message(receipt_topic)
            receipt = Receipt.open(bytes(message.payload), hospital.gateway_key, receipt_topic)
            assert (receipt.subject, receipt.key) == ("alert", "inc-77")
            assert receipt.received_wall_ns == document["received"]["wall_ns"]

            notify.wait_for("WATCHDOG=1")
            wait_until(lambda: "ALERT badge badge-a" in gateway.log_text(), "alert log line")
            line = next(x for x in gateway.log_text().splitlines() if "ALERT badge" in x)
            assert "incident inc-77" in line and "latency" in line and "Ward 3" in line
        finally:
            if session is not None:
                session.close()
            status = gateway.terminate() if gateway.process.poll() is None else None
            gateway.kill()
    assert status == 0, gateway.log_text()
    notify.wait_for("STOPPING=1")
    assert "gateway stopped" in gateway.log_text()
    # on the way out the gateway checkpointed the alert's ledger entries, time-stamped
    storage = hospital.data_dir.storage()
    try:
        ledger = open_ledger(hospital.data_dir, storage)
        last = ledger.latest_checkpoint()
        assert last is not None and last.size == ledger.size > 0
        assert last.timestamp_token is not None
        ca = hospital.data_dir.evidence_ca().certificate
        verify_timestamp(last.timestamp_token, last.note_sha256, ca)
    finally:
        storage.close()


def test_ready_waits_for_the_broker(
    hospital: Hospital, notify: NotifySocket, tmp_path: Path
) -> None:
    tls_port, plain_port = write_config(hospital.data_dir.root)
    configure(hospital, tls_port, "http://127.0.0.1:9/unused")
    gateway = GatewayProcess(hospital.data_dir.root, notify, tmp_path / "gateway.log")
    try:
        notify.wait_for(f"STATUS=connecting to the broker at localhost:{tls_port}")
        assert gateway.process.poll() is None
        assert "READY=1" not in notify.lines()
        with GeneratedBroker(hospital.data_dir.root / "broker", tls_port, plain_port):
            notify.wait_for("READY=1")
            assert gateway.terminate() == 0, gateway.log_text()
    finally:
        gateway.kill()


def test_sigterm_before_the_broker_answers_still_exits_cleanly(
    hospital: Hospital, notify: NotifySocket, tmp_path: Path
) -> None:
    tls_port, _plain = write_config(hospital.data_dir.root)
    configure(hospital, tls_port, "http://127.0.0.1:9/unused")
    gateway = GatewayProcess(hospital.data_dir.root, notify, tmp_path / "gateway.log")
    try:
        notify.wait_for(f"STATUS=connecting to the broker at localhost:{tls_port}")
        assert gateway.terminate() == 0, gateway.log_text()
    finally:
        gateway.kill()
    assert "READY=1" not in notify.lines()


def test_run_before_broker_config_says_what_to_do(
    hospital: Hospital, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--data", str(hospital.data_dir.root), "run"]) == 1
    assert "run 'gateway broker-config' first" in capsys.readouterr().err


def test_run_refuses_a_readable_webhook_secret(
    hospital: Hospital, capsys: pytest.CaptureFixture[str]
) -> None:
    write_config(hospital.data_dir.root)
    configure(hospital, 8883, "http://127.0.0.1:9/hook")
    (hospital.data_dir.root / "webhook.secret").chmod(0o644)
    assert main(["--data", str(hospital.data_dir.root), "run"]) == 1
    assert "chmod 600" in capsys.readouterr().err


def test_a_dead_store_process_stops_the_gateway_with_an_error(
    hospital: Hospital, notify: NotifySocket, tmp_path: Path
) -> None:
    """Without its store process the gateway cannot receipt anything: it exits with status 1
    (systemd restarts it) instead of running on and acknowledging nothing."""
    tls_port, _plain = write_config(hospital.data_dir.root)
    configure(hospital, tls_port, "http://127.0.0.1:9/unused")
    gateway = GatewayProcess(hospital.data_dir.root, notify, tmp_path / "gateway.log")
    try:
        notify.wait_for(f"STATUS=connecting to the broker at localhost:{tls_port}")
        (store,) = children(gateway.process.pid, "gateway.intake.stage")
        os.kill(store, signal.SIGKILL)
        assert gateway.process.wait(WAIT_S) == 1, gateway.log_text()
    finally:
        gateway.kill()
    assert "the store process ended unexpectedly" in gateway.log_text()
