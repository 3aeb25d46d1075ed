"""The intake service through a real mosquitto, with broker accounts taken from the registry."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from evidence.bundle import EnrolmentBundle
from evidence.hashing import sha256
from evidence.messages import Receipt
from evidence.topics import gateway_filter, gateway_topic
from gateway.alerts.alerts import AlertEvent
from gateway.broker.accounts import broker_accounts
from gateway.broker.config import hash_broker_password
from gateway.intake.intake import PARTIAL_DIR
from gateway.intake.service import QOS0_ROOM, QUEUE_LIMIT, IntakeService
from tests.gateway.badge_messages import BadgeMessages, Hospital, make_hospital
from tests.mosquitto import HOST, TLS_HOSTNAME, MosquittoProcess, MqttSession

GATEWAY_PASSWORD = "intake-test-password"  # noqa: S105 - a test account
WAIT_S = 15.0
REPO = Path(__file__).resolve().parents[3]


def wait_until(ready: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(0.02)


@pytest.fixture
def hospital(tmp_path: Path) -> Hospital:
    return make_hospital(tmp_path)


@pytest.fixture
def broker(tmp_path: Path, hospital: Hospital) -> Iterator[MosquittoProcess]:
    """mosquitto with exactly the registry's badge accounts and one gateway account."""
    accounts = broker_accounts(hospital.data_dir, hash_broker_password(GATEWAY_PASSWORD))
    process = MosquittoProcess(
        tmp_path / "broker", logins=(), accounts=accounts, ca=hospital.data_dir.evidence_ca()
    )
    process.start()
    yield process
    process.stop()


def badge_session(broker: MosquittoProcess, bundle: EnrolmentBundle) -> MqttSession:
    """The badge's own broker login (from its enrolment bundle), subscribed to its answers."""
    credentials = bundle.broker
    session = MqttSession(HOST, broker.plain_port, credentials.username, credentials.password)
    assert not session.connect().is_failure
    assert not session.subscribe(gateway_filter(credentials.username)).is_failure
    return session


def received_receipts(session: MqttSession, bundle: EnrolmentBundle) -> list[Receipt]:
    topic = gateway_topic(bundle.identity.badge_id, "receipt")
    key = bundle.gateway_key
    return [Receipt.open(bytes(m.payload), key, topic) for m in session.received(topic)]


def test_registry_accounts_let_badges_in_and_keep_strangers_out(
    broker: MosquittoProcess, hospital: Hospital
) -> None:
    session = badge_session(broker, hospital.bundles["badge-b"])
    session.close()
    wrong = MqttSession(HOST, broker.plain_port, "badge-b", "not its password")
    assert wrong.connect().is_failure


def test_incident_travels_through_the_broker_and_is_receipted(
    broker: MosquittoProcess, hospital: Hospital
) -> None:
    alerts: list[AlertEvent] = []
    service = IntakeService(
        hospital.data_dir,
        TLS_HOSTNAME,
        broker.tls_port,
        "gateway",
        GATEWAY_PASSWORD,
        broker.ca_file,
        on_alert=alerts.append,
    )
    service.start()
    try:
        assert service.wait_connected(WAIT_S)
        bundle = hospital.bundles["badge-a"]
        badge = BadgeMessages.of(bundle)
        session = badge_session(broker, bundle)
        segments = badge.seal(3)
        session.publish(badge.topic("status"), badge.status("online"), retain=True)
        session.publish(badge.topic("alert"), badge.alert("inc-1"))
        session.publish(badge.topic("incident"), badge.incident("inc-1", 0, 2))
        for segment in segments:
            for chunk in badge.chunks(segment, "inc-1"):
                session.publish(badge.topic("segment"), chunk)
        wait_until(lambda: len(received_receipts(session, bundle)) == 5, "five receipts")
        found = received_receipts(session, bundle)
        assert [(r.subject, r.key) for r in found] == [
            ("alert", "inc-1"),
            ("segment", "0"),
            ("segment", "1"),
            ("segment", "2"),
            ("incident", "inc-1"),
        ]
        assert [r.sha256 for r in found[1:4]] == [sha256(s.to_bytes()) for s in segments]
        assert [event.incident_id for event in alerts] == ["inc-1"]
        session.close()
    finally:
        service.stop()
    assert service.intake.counts() == {}


def test_a_shared_subscription_worker_handles_messages(
    broker: MosquittoProcess, hospital: Hospital
) -> None:
    service = IntakeService(
        hospital.data_dir,
        HOST,
        broker.plain_port,
        "gateway",
        GATEWAY_PASSWORD,
        None,
        shared_group="intake",
    )
    assert service.topic_filter == "$share/intake/medbadge/v1/badge/#"
    service.start()
    try:
        assert service.wait_connected(WAIT_S)
        bundle = hospital.bundles["badge-b"]
        badge = BadgeMessages.of(bundle)
        session = badge_session(broker, bundle)
        session.publish(badge.topic("alert"), badge.alert("inc-2"))
        wait_until(lambda: bool(received_receipts(session, bundle)), "an alert receipt")
        session.close()
    finally:
        service.stop()


class IntakeProcess:
    """``python -m gateway.intake.service`` in its own process, so it can be killed for real."""

    def __init__(self, hospital: Hospital, broker: MosquittoProcess, workdir: Path) -> None:
        self.password_file = workdir / "gateway.password"
        self.password_file.write_text(GATEWAY_PASSWORD + "\n")
        self.args = [
            sys.executable,
            "-m",
            "gateway.intake.service",
            "--data",
            str(hospital.data_dir.root),
            "--host",
            HOST,
            "--port",
            str(broker.plain_port),
            "--username",
            "gateway",
            "--password-file",
            str(self.password_file),
        ]
        self.output = workdir / "intake.out"
        self.log = workdir / "intake.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.output.write_text("")
        with self.output.open("ab") as out, self.log.open("ab") as err:
            self.process = subprocess.Popen(
                self.args, cwd=REPO, stdout=out, stderr=err, stdin=subprocess.DEVNULL
            )
        wait_until(lambda: "intake subscribed" in self.output.read_text(), "intake ready line")

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(WAIT_S)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(WAIT_S)


def test_intake_killed_mid_upload_completes_the_incident_exactly_once(
    broker: MosquittoProcess, hospital: Hospital, tmp_path: Path
) -> None:
    bundle = hospital.bundles["badge-a"]
    badge = BadgeMessages.of(bundle)
    intake = IntakeProcess(hospital, broker, tmp_path)
    intake.start()
    try:
        session = badge_session(broker, bundle)
        segments = badge.seal(6)
        session.publish(badge.topic("incident"), badge.incident("inc-1", 0, 5))
        for segment in segments[:3]:
            for chunk in badge.chunks(segment, "inc-1"):
                session.publish(badge.topic("segment"), chunk)
        wait_until(lambda: len(received_receipts(session, bundle)) == 3, "three receipts")

        # two chunks of segment 3 reach the gateway's disk, then it dies without a word
        chunks = badge.chunks(segments[3], "inc-1")
        for chunk in chunks[:2]:
            session.publish(badge.topic("segment"), chunk)
        sidecar = hospital.data_dir.root / PARTIAL_DIR / "badge-a" / "3.json"
        wait_until(
            lambda: sidecar.exists() and json.loads(sidecar.read_text())["ranges"] == [[0, 2048]],
            "a half-received segment 3",
        )
        intake.kill()

        # the badge carries on; the broker queues for the gateway's session
        for chunk in chunks[2:]:
            session.publish(badge.topic("segment"), chunk)
        for segment in segments[4:]:
            for chunk in badge.chunks(segment, "inc-1"):
                session.publish(badge.topic("segment"), chunk)
        intake.start()
        wait_until(
            lambda: (
                ("incident", "inc-1")
                in {(r.subject, r.key) for r in received_receipts(session, bundle)}
            ),
            "the incident receipt",
        )
        found = received_receipts(session, bundle)
        session.close()
    finally:
        intake.stop()

    by_key: dict[str, set[bytes]] = {}
    for receipt in found:
        by_key.setdefault(receipt.key, set()).add(receipt.sha256)
    assert by_key == {
        **{str(seq): {sha256(segments[seq].to_bytes())} for seq in range(6)},
        "inc-1": {sha256(badge.incident("inc-1", 0, 5))},
    }
    connection = sqlite3.connect(hospital.data_dir.database_path)
    try:
        assert connection.execute("SELECT seq FROM segments ORDER BY seq").fetchall() == [
            (seq,) for seq in range(6)
        ]
        ((complete,),) = connection.execute("SELECT complete_wall_ns FROM incidents").fetchall()
        assert complete is not None
    finally:
        connection.close()
    assert len(list((hospital.data_dir.root / "vault").glob("*/*.mbseal"))) == 6
    assert not list((hospital.data_dir.root / PARTIAL_DIR).glob("*/*"))
    assert not list((hospital.data_dir.root / "quarantine" / "counts").iterdir())  # no refusals


def test_a_message_is_acknowledged_only_once_it_is_stored(
    broker: MosquittoProcess, hospital: Hospital, tmp_path: Path
) -> None:
    bundle = hospital.bundles["badge-a"]
    badge = BadgeMessages.of(bundle)
    (segment,) = badge.seal(1)
    intake = IntakeProcess(hospital, broker, tmp_path)
    intake.start()
    lock = sqlite3.connect(hospital.data_dir.database_path, isolation_level=None)
    try:
        session = badge_session(broker, bundle)
        session.publish(badge.topic("incident"), badge.incident("inc-1", 0, 0))
        wait_until(
            lambda: bool(lock.execute("SELECT COUNT(*) FROM incidents").fetchone()[0]),
            "the incident record stored",
        )
        lock.execute("BEGIN IMMEDIATE")  # the intake can store bytes, but commit nothing
        for chunk in badge.chunks(segment, "inc-1"):
            session.publish(badge.topic("segment"), chunk)
        vault = hospital.data_dir.root / "vault"
        wait_until(lambda: any(vault.glob("*/*.mbseal")), "the segment in the vault")
        intake.kill()  # while its last chunk waits for the database: handled, not finished
        lock.execute("ROLLBACK")
        assert received_receipts(session, bundle) == []
        intake.start()  # the broker delivers the unacknowledged chunk again
        wait_until(lambda: len(received_receipts(session, bundle)) == 2, "two receipts")
        found = received_receipts(session, bundle)
        session.close()
    finally:
        lock.close()
        intake.stop()
    assert [(r.subject, r.key) for r in found] == [("segment", "0"), ("incident", "inc-1")]
    assert found[0].sha256 == sha256(segment.to_bytes())


def test_the_intake_sends_without_waiting_for_acks(
    broker: MosquittoProcess, hospital: Hospital
) -> None:
    service = IntakeService(
        hospital.data_dir, HOST, broker.plain_port, "gateway", GATEWAY_PASSWORD, None
    )
    service.start()
    try:
        assert service.wait_connected(WAIT_S)
        connection = service._client.socket()
        assert isinstance(connection, socket.socket)
        assert connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        service.stop()


def test_a_qos0_flood_is_shed_and_never_stops_the_network_thread(
    broker: MosquittoProcess, hospital: Hospital, monkeypatch: pytest.MonkeyPatch
) -> None:
    alerts: list[AlertEvent] = []
    service = IntakeService(
        hospital.data_dir,
        TLS_HOSTNAME,
        broker.tls_port,
        "gateway",
        GATEWAY_PASSWORD,
        broker.ca_file,
        on_alert=alerts.append,
    )
    draining = threading.Event()
    handle = service.intake.handle

    def slow_handle(topic: str, payload: bytes) -> None:  # an intake that cannot keep up
        draining.wait(WAIT_S)
        handle(topic, payload)

    monkeypatch.setattr(service.intake, "handle", slow_handle)
    service.start()
    try:
        assert service.wait_connected(WAIT_S)
        flooder = badge_session(broker, hospital.bundles["badge-a"])
        flood = 10 * (QUEUE_LIMIT + QOS0_ROOM)
        for number in range(flood):
            flooder.client.publish(
                BadgeMessages.of(hospital.bundles["badge-a"]).topic("alert"),
                b"garbage %d" % number,
                qos=0,
            )
        # paho's thread read on although the intake handled none: it shed what had no room
        wait_until(lambda: service.shed >= flood - 2 * QOS0_ROOM, "the flood read and shed")
        waiting = service.probe().queued
        assert waiting <= QOS0_ROOM
        # another badge's alert (QoS 1) still finds room while the intake is held up
        bundle = hospital.bundles["badge-b"]
        badge = BadgeMessages.of(bundle)
        wearer = badge_session(broker, bundle)
        wearer.publish(badge.topic("alert"), badge.alert("inc-q"))
        wait_until(lambda: service.probe().queued == waiting + 1, "the alert read")
        draining.set()
        wait_until(lambda: [event.incident_id for event in alerts] == ["inc-q"], "the alert")
        assert service.probe().shed == service.shed
        flooder.close()
        wearer.close()
    finally:
        draining.set()
        service.stop()
