"""``gateway console`` as a real process: READY for systemd, alerts the intake stores in
another process reach its live stream, and idle sockets and slow-header clients on its port
cannot keep an officer's page from loading."""

from __future__ import annotations

import http.client
import json
import os
import re
import resource
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from evidence.messages import Receipt
from evidence.topics import gateway_filter, gateway_topic
from gateway.cli import main
from gateway.intake.intake import Intake
from tests.gateway.badge_messages import BadgeMessages, Hospital, make_hospital
from tests.gateway.console_support import WebClient, add_users
from tests.gateway.generated_broker import GeneratedBroker, badge_tls_session, write_config
from tests.gateway.test_daemon import GatewayProcess, NotifySocket, configure
from tests.gateway.webhook_receiver import WebhookReceiver
from tests.mosquitto import free_port

REPO = Path(__file__).resolve().parents[3]
WAIT_S = 20.0
PAGE_BOUND_S = 3.0
"""How soon the officer's login page must load while the port is under attack."""
HEADER_TIMEOUT_S = 1.0
IDLE_SOCKETS = 2000
CONSOLE_FILES = 1024
"""The console's file limit here, as systemd's default LimitNOFILE would leave it: fewer
handles than the sockets held, so unguarded they would starve it."""


@dataclass
class ConsoleProcess:
    """``python -m gateway.cli --data DATA console`` with systemd's notification socket."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path
    tls: ssl.SSLContext | None
    """What a browser trusting the evidence CA uses, when the console serves HTTPS."""

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise


@pytest.fixture
def hospital(tmp_path: Path) -> Hospital:
    hospital = make_hospital(tmp_path)
    add_users(hospital)
    return hospital


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    listener = NotifySocket()
    yield listener
    listener.close()


@pytest.fixture
def console_tls() -> bool:
    return False


CONSOLE_LIMITS = (
    "live_poll_ms = 5\nmax_connections = 256\nmax_connections_per_address = 16\n"
    f"header_timeout_seconds = {HEADER_TIMEOUT_S}\nidle_timeout_seconds = 2\n"
)
"""The console's bounds in these tests: small enough for 2,000 sockets to test them."""


def start_console(hospital: Hospital, notify: NotifySocket, log: Path, tls: bool) -> ConsoleProcess:
    """Start ``gateway console`` on the hospital's ``gateway.toml`` (whose [console] table
    must come last, naming ``port``) and wait for READY=1."""
    root = hospital.data_dir.root
    config = (root / "gateway.toml").read_text()
    found = re.search(r"^port = (\d+)$", config.rsplit("[console]", 1)[1], re.MULTILINE)
    assert found is not None, config
    environment = {k: v for k, v in os.environ.items() if k not in ("WATCHDOG_PID",)}
    environment |= {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"}
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "--data", str(root), "console"],
            cwd=REPO,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            preexec_fn=_console_file_limit,  # noqa: PLW1509 - only sets a limit, no threads touched
        )
    context = None
    if tls:
        context = ssl.create_default_context(cafile=str(hospital.data_dir.ca_dir / "ca.crt"))
    running = ConsoleProcess(process, int(found.group(1)), log, context)
    try:
        notify.wait_for("READY=1")
    except BaseException:
        running.stop()
        raise
    return running


@pytest.fixture
def console(
    hospital: Hospital, notify: NotifySocket, tmp_path: Path, console_tls: bool
) -> Iterator[ConsoleProcess]:
    (hospital.data_dir.root / "gateway.toml").write_text(
        f'[console]\nhost = "127.0.0.1"\nport = {free_port()}\n'
        f"tls = {'true' if console_tls else 'false'}\n{CONSOLE_LIMITS}"
    )
    running = start_console(hospital, notify, tmp_path / "console.log", console_tls)
    try:
        yield running
    finally:
        running.stop()
    assert "Traceback" not in running.log.read_text(errors="replace")


def test_an_alert_stored_by_another_process_reaches_the_console_stream(
    hospital: Hospital, console: ConsoleProcess, notify: NotifySocket
) -> None:
    officer = WebClient(console.url)
    assert officer.login("olga").status == 303
    cookie = "; ".join(f"{c.name}={c.value}" for c in officer.cookies)
    connection = http.client.HTTPConnection("127.0.0.1", console.port, timeout=WAIT_S)
    connection.request("GET", "/alerts/stream", headers={"Cookie": cookie})
    stream = connection.getresponse()
    assert stream.status == 200
    assert stream.readline() == b"retry: 1000\n"
    stream.readline()
    # the intake is not in the console's process: it only shares the data directory
    intake = Intake(hospital.data_dir, lambda _topic, _payload: None, lambda _event: None)
    try:
        badge = BadgeMessages.of(hospital.bundles["badge-b"])
        intake.handle(badge.topic("alert"), badge.alert("cross-1"))
        assert stream.readline() == b"event: alert\n"
        document = json.loads(stream.readline().removeprefix(b"data: "))
    finally:
        intake.close()
        connection.close()
    assert (document["badge"], document["incident"]) == ("badge-b", "cross-1")
    assert document["wearer"] == "Nurse badge-b"
    notify.wait_for("WATCHDOG=1")
    assert console.stop() == 0
    notify.wait_for("STOPPING=1")


def _console_file_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (CONSOLE_FILES, hard))


def _raise_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.fail(f"this test holds {needed} sockets; the hard file limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _idle_socket(port: int, source: str) -> socket.socket | None:
    """A connection from ``source`` that never sends a byte (None if not connected)."""
    held = socket.socket()
    held.settimeout(0.5)  # a full backlog must not stall the attack itself
    try:
        held.bind((source, 0))
        held.connect(("127.0.0.1", port))
    except OSError:
        held.close()
        return None
    return held


def hold_idle_sockets(port: int, held: ExitStack) -> None:
    """IDLE_SOCKETS connections to ``port`` that never send a byte, closed with ``held``:
    one address tries half of them, a hundred others ten each."""
    _raise_file_limit(IDLE_SOCKETS + 500)
    sources = ["127.0.0.2"] * (IDLE_SOCKETS // 2) + [
        f"127.0.1.{1 + number % 100}" for number in range(IDLE_SOCKETS // 2)
    ]
    stalled = 0
    for source in sources:
        connection = _idle_socket(port, source)
        if connection is not None:
            held.enter_context(connection)
        else:
            stalled += 1
        if stalled > 20:
            return  # the port no longer takes connections: the attack has done its worst


def _slow_header_client(
    port: int, tls: ssl.SSLContext | None, stop: threading.Event, sent: list[int]
) -> None:
    """Sends a request's headers a byte every 0.1 s and never finishes them (after a prompt
    TLS handshake, under TLS)."""
    request = b"GET /login HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 10_000
    raw = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.3", 0))
    with tls.wrap_socket(raw, server_hostname="127.0.0.1") if tls is not None else raw as slow:
        for byte in request:
            if stop.wait(0.1):
                return
            try:
                slow.send(bytes([byte]))
            except OSError:
                return  # closed by the console: its headers took too long
            sent.append(byte)


@pytest.mark.parametrize("console_tls", [False, True], ids=["http", "https"])
def test_idle_sockets_and_a_slow_header_client_cannot_keep_the_officer_out(
    console: ConsoleProcess,
) -> None:
    stop = threading.Event()
    sent: list[int] = []
    slow = threading.Thread(
        target=_slow_header_client, args=(console.port, console.tls, stop, sent)
    )
    with ExitStack() as held:
        slow.start()
        held.callback(slow.join)
        held.callback(stop.set)
        hold_idle_sockets(console.port, held)
        started = time.monotonic()
        with urllib.request.urlopen(  # noqa: S310 - the console's own URL
            console.url + "/login", timeout=PAGE_BOUND_S, context=console.tls
        ) as page:
            assert page.status == 200 and b"csrf" in page.read()
        took = time.monotonic() - started
        assert took < PAGE_BOUND_S, f"the login page took {took:.2f} s under attack"
        if console.tls is None:  # the test client speaks plain HTTP only
            assert WebClient(console.url).login("olga").status == 303
        # the slow client is cut off once its header deadline passes
        deadline = time.monotonic() + HEADER_TIMEOUT_S + 5
        while slow.is_alive() and time.monotonic() < deadline:
            slow.join(0.1)
        assert not slow.is_alive(), "the slow-header client was never cut off"
        assert 0 < len(sent) < 10_000 / 2
    # the operator is told, in one line rather than one per connection
    deadline = time.monotonic() + 10
    while "console turned connections away" not in console.log.read_text(errors="replace"):
        assert time.monotonic() < deadline, "the refusals were never logged"
        time.sleep(0.1)
    lines = console.log.read_text(errors="replace").splitlines()
    assert len([line for line in lines if "turned connections away" in line]) <= 2


def test_a_console_that_cannot_serve_says_why_and_exits_1(
    hospital: Hospital, capsys: pytest.CaptureFixture[str]
) -> None:
    root = hospital.data_dir.root
    (root / "gateway.toml").write_text("[console]\nenabled = false\n")
    assert main(["--data", str(root), "console"]) == 1
    assert "[console] enabled = false" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (root / "gateway.toml").write_text(f"[console]\nport = {port}\ntls = false\n")
        assert main(["--data", str(root), "console"]) == 1
    assert f"could not listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_a_press_reaches_the_webhook_and_the_officer_while_the_console_port_is_flooded(
    hospital: Hospital, tmp_path: Path
) -> None:
    """The real processes: mosquitto, ``gateway run``, ``gateway console``. An officer watches
    the alert stream; 2,000 idle sockets take the console's port; a badge presses. The alert
    reaches the webhook and the officer's stream, and the badge gets its receipt."""
    root = hospital.data_dir.root
    tls_port, plain_port = write_config(root)
    badge = BadgeMessages.of(hospital.bundles["badge-a"])
    with ExitStack() as running:
        receiver = running.enter_context(WebhookReceiver())
        broker = running.enter_context(GeneratedBroker(root / "broker", tls_port, plain_port))
        console_port = free_port(avoid=[tls_port, plain_port])
        configure(hospital, tls_port, receiver.url, console_port)
        with (root / "gateway.toml").open("a") as config:
            config.write(CONSOLE_LIMITS)
        gateway_notify, console_notify = NotifySocket(), NotifySocket()
        running.callback(gateway_notify.close)
        running.callback(console_notify.close)
        gateway = GatewayProcess(root, gateway_notify, tmp_path / "gateway.log")
        running.callback(gateway.kill)
        gateway_notify.wait_for("READY=1")
        console = start_console(hospital, console_notify, tmp_path / "console.log", tls=False)
        running.callback(console.stop)

        officer = WebClient(console.url)
        assert officer.login("olga").status == 303
        cookie = "; ".join(f"{c.name}={c.value}" for c in officer.cookies)
        watching = http.client.HTTPConnection("127.0.0.1", console.port, timeout=WAIT_S)
        running.callback(watching.close)
        watching.request("GET", "/alerts/stream", headers={"Cookie": cookie})
        stream = watching.getresponse()
        assert stream.status == 200 and stream.readline() == b"retry: 1000\n"
        stream.readline()

        # connected first: paho's select() takes no descriptor past 1023
        session = badge_tls_session(broker, tmp_path / "bundles" / "badge-a")
        running.callback(session.close)
        assert not session.subscribe(gateway_filter("badge-a")).is_failure
        held = running.enter_context(ExitStack())
        hold_idle_sockets(console.port, held)
        assert session.publish(badge.topic("alert"), badge.alert("flooded-1")) is not None

        posted = json.loads(receiver.wait_posts(1)[0].body)
        assert (posted["badge"], posted["incident"]) == ("badge-a", "flooded-1")
        receipt_topic = gateway_topic("badge-a", "receipt")
        receipt = Receipt.open(
            bytes(session.wait_for_message(receipt_topic).payload),
            hospital.gateway_key,
            receipt_topic,
        )
        assert (receipt.subject, receipt.key) == ("alert", "flooded-1")
        assert stream.readline() == b"event: alert\n"
        shown = json.loads(stream.readline().removeprefix(b"data: "))
        assert (shown["badge"], shown["incident"]) == ("badge-a", "flooded-1")
        assert gateway.terminate() == 0
    for log in (tmp_path / "gateway.log", tmp_path / "console.log"):
        text = log.read_text(errors="replace")
        assert "Too many open files" not in text and "Traceback" not in text
