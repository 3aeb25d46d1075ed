"""Every attack on the gateway at once, on the real processes (mosquitto from ``gateway
broker-config``, ``gateway run``, ``gateway console``), while a wearer presses.

At the same time: badge-a floods its own topics with garbage until its quarantine quota and
its cut-off trip; 2,000 idle sockets and a slow-header client hold the console's port; wrong
passwords for the officer on duty come from four addresses. Badge-b presses and sends its
pre-roll. Its alert must reach the webhook and the officer's live stream, its alert and
pre-roll must be receipted, the officer must log in from her own desk (password and TOTP
code) within a bound, and quarantine must stay within its quota.
"""

from __future__ import annotations

import http.client
import json
import sqlite3
import threading
import time
import urllib.error
from contextlib import ExitStack
from pathlib import Path

import pytest

from evidence.messages import Receipt
from evidence.topics import gateway_filter, gateway_topic
from gateway.intake.intake import QUARANTINE_DIR
from tests.gateway.badge_messages import BadgeMessages, make_hospital
from tests.gateway.console.test_console_process import (
    CONSOLE_LIMITS,
    _slow_header_client,
    hold_idle_sockets,
    start_console,
)
from tests.gateway.console_support import SECRETS, WebClient, add_users
from tests.gateway.generated_broker import GeneratedBroker, badge_tls_session, write_config
from tests.gateway.test_daemon import GatewayProcess, NotifySocket, configure
from tests.gateway.test_flood import BADGE_QUOTA, LOG_BYTES, REFUSALS, Flood
from tests.gateway.webhook_receiver import WebhookReceiver, wait_until
from tests.mosquitto import free_port

WAIT_S = 20.0
ALERT_BOUND_S = 5.0
"""Press to webhook and live stream: far below the badge's 61 s resend timer."""
OFFICER_BOUND_S = 10.0
"""The officer's login (page, password, TOTP code) while every attack runs."""
OFFICER_DESK = "127.0.0.9"
FLOOD_ADDRESSES = ("127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7")
INCIDENT = "attack-1"


class LoginFlood:
    """Wrong passwords for one user from several addresses, a thread per address."""

    def __init__(self, url: str, username: str) -> None:
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(url, username, source), daemon=True)
            for source in FLOOD_ADDRESSES
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(WAIT_S)

    def _run(self, url: str, username: str, source: str) -> None:
        client = WebClient(url, source=source)
        while not self._stop.is_set():
            try:
                status = client.login(username, "not her password at all", code="000000").status
            except (OSError, urllib.error.URLError, AssertionError):
                status = 0  # turned away by the connection guard
            self.statuses.append(status)
            if status == 429:
                self._stop.wait(0.05)


class LiveStream:
    """The officer's page's SSE stream of alerts, read on a thread of its own."""

    def __init__(self, port: int, cookie: str) -> None:
        self._connection = http.client.HTTPConnection(
            "127.0.0.1", port, timeout=60, source_address=(OFFICER_DESK, 0)
        )
        self._connection.request("GET", "/alerts/stream", headers={"Cookie": cookie})
        self._response = self._connection.getresponse()
        assert self._response.status == 200
        self.alerts: list[dict[str, object]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        event = ""
        try:
            for raw in self._response:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: ") and event == "alert":
                    self.alerts.append(json.loads(line.removeprefix("data: ")))
        except (OSError, ValueError, AttributeError):
            return  # closed at the end of the test

    def close(self) -> None:
        self._connection.close()


def _rows(database: Path, sql: str) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(database)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def test_a_press_gets_through_every_attack_at_once(tmp_path: Path) -> None:
    hospital = make_hospital(tmp_path)
    secrets = add_users(hospital, also_second_factor=("olga",))
    root = hospital.data_dir.root
    tls_port, plain_port = write_config(root)
    presser = BadgeMessages.of(hospital.bundles["badge-b"])
    pre_roll = presser.seal(2)
    with ExitStack() as running:
        receiver = running.enter_context(WebhookReceiver())
        broker = running.enter_context(GeneratedBroker(root / "broker", tls_port, plain_port))
        console_port = free_port(avoid=[tls_port, plain_port])
        configure(hospital, plain_port, receiver.url, console_port)
        config_text = (root / "gateway.toml").read_text()
        # the gateway on the broker's loopback listener, as broker-config sets it up
        config_text = config_text.replace(
            f"port = {plain_port}\n", f"port = {plain_port}\ntls = false\n", 1
        )
        with (root / "gateway.toml").open("w") as config:
            config.write(
                f"{config_text}{CONSOLE_LIMITS}[quarantine]\nbadge_bytes = {BADGE_QUOTA}\n"
                f"log_bytes = {LOG_BYTES}\n[cutoff]\nrefusals = {REFUSALS}\n"
                "window_seconds = 60.0\n"
            )
        gateway_notify, console_notify = NotifySocket(), NotifySocket()
        running.callback(gateway_notify.close)
        running.callback(console_notify.close)
        gateway = GatewayProcess(root, gateway_notify, tmp_path / "gateway.log")
        running.callback(gateway.kill)
        gateway_notify.wait_for("READY=1")
        console = start_console(hospital, console_notify, tmp_path / "console.log", tls=False)
        running.callback(console.stop)
        SECRETS[console.url] = secrets
        running.callback(SECRETS.pop, console.url)

        # the officer on duty watches, from her desk
        officer = WebClient(console.url, source=OFFICER_DESK)
        assert officer.login("olga").status == 303
        cookie = "; ".join(f"{c.name}={c.value}" for c in officer.cookies)
        stream = LiveStream(console.port, cookie)
        running.callback(stream.close)

        # connected first: paho's select() takes no descriptor past 1023
        bundles = tmp_path / "bundles"
        attacker = badge_tls_session(broker, bundles / "badge-a")
        running.callback(attacker.close)
        wearer = badge_tls_session(broker, bundles / "badge-b")
        running.callback(wearer.close)
        assert not wearer.subscribe(gateway_filter("badge-b")).is_failure

        # every attack at once
        flood = Flood(attacker)
        flood.start()
        logins = LoginFlood(console.url, "olga")
        logins.start()
        running.callback(logins.stop)
        stop_slow = threading.Event()
        slow = threading.Thread(
            target=_slow_header_client, args=(console.port, None, stop_slow, []), daemon=True
        )
        slow.start()
        running.callback(slow.join, WAIT_S)
        running.callback(stop_slow.set)
        held = running.enter_context(ExitStack())
        hold_idle_sockets(console.port, held)
        wait_until(lambda: flood.sent >= 100, "a flood under way")

        # the wearer presses, then sends the pre-roll
        pressed = time.monotonic()
        wearer.client.publish(presser.topic("alert"), presser.alert(INCIDENT, 1, first_seq=0), 1)
        for segment in pre_roll:
            for chunk in presser.chunks(segment, INCIDENT, chunk_bytes=64 * 1024):
                wearer.client.publish(presser.topic("segment"), chunk, qos=1)

        def posted() -> bool:
            return any(json.loads(p.body).get("incident") == INCIDENT for p in receiver.posts)

        wait_until(posted, "the alert's webhook", ALERT_BOUND_S)
        wait_until(lambda: bool(stream.alerts), "the alert on the live stream", ALERT_BOUND_S)
        shown = stream.alerts[0]
        assert (shown["badge"], shown["incident"]) == ("badge-b", INCIDENT)
        assert time.monotonic() - pressed < ALERT_BOUND_S

        receipt_topic = gateway_topic("badge-b", "receipt")

        def receipted() -> set[tuple[str, str]]:
            return {
                (receipt.subject, receipt.key)
                for receipt in (
                    Receipt.open(bytes(m.payload), hospital.gateway_key, receipt_topic)
                    for m in wearer.received(receipt_topic)
                )
            }

        wanted = {("alert", INCIDENT), ("segment", "0"), ("segment", "1")}
        wait_until(lambda: wanted <= receipted(), "receipts of the alert and pre-roll", WAIT_S)

        # the officer logs in again from her desk while the attacks go on, once the login
        # flood on her name is being slowed
        wait_until(lambda: 429 in logins.statuses, "the login flood slowed", WAIT_S)
        started = time.monotonic()
        again = WebClient(console.url, source=OFFICER_DESK).login("olga")
        took = time.monotonic() - started
        assert again.status == 303, again.text[:300]
        assert took < OFFICER_BOUND_S, f"the officer's login took {took:.1f} s under attack"

        flood.join(30)
        attacker.wait_disconnected(5)
        logins.stop()
        held.close()
        again_attacker = badge_tls_session(broker, bundles / "badge-a")
        again_attacker.close()
        assert again_attacker.connack is not None and again_attacker.connack.is_failure
        assert gateway.terminate() == 0

    database = hospital.data_dir.database_path
    assert _rows(database, "SELECT badge_id FROM badge_cutoffs") == [("badge-a",)]
    assert _rows(database, "SELECT badge_id, incident_id FROM alerts") == [("badge-b", INCIDENT)]
    quarantine = root / QUARANTINE_DIR
    kept = sum(path.stat().st_size for path in quarantine.rglob("*") if path.is_file())
    assert kept <= BADGE_QUOTA + 2 * LOG_BYTES + 64 * 1024
    for log in (tmp_path / "gateway.log", tmp_path / "console.log"):
        text = log.read_text(errors="replace")
        assert "Too many open files" not in text and "Traceback" not in text


pytestmark = pytest.mark.slow
