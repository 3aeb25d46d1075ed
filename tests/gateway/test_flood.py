"""One badge floods its own topics with garbage through the real broker into the real gateway:
its quarantine quota and its cut-off trip, while another badge's alert still reaches the
live channel and is stored; on a nearly full disk the reserve keeps the garbage out."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from evidence.topics import badge_topic
from gateway.alerts.alerts import AlertEvent
from gateway.config import GatewayConfig
from gateway.daemon import GatewayDaemon
from gateway.intake.intake import QUARANTINE_DIR
from tests.gateway.badge_messages import BadgeMessages, Hospital, make_hospital
from tests.gateway.generated_broker import GeneratedBroker, badge_tls_session, write_config
from tests.mosquitto import MqttSession
from tests.small_filesystem import small_filesystem

BADGE_QUOTA = 256 * 1024
LOG_BYTES = 64 * 1024
REFUSALS = 200
GARBAGE = os.urandom(16 * 1024)
ALERT_S = 5.0
"""Far below the badge's 61 s resend timer: the alert came through the flood itself."""


@dataclass
class Flooded:
    hospital: Hospital
    broker: GeneratedBroker
    daemon: GatewayDaemon

    def login(self, badge_id: str) -> MqttSession:
        bundles = self.hospital.data_dir.root.parent / "bundles"
        return badge_tls_session(self.broker, bundles / badge_id)

    def rows(self, sql: str) -> list[tuple[object, ...]]:
        connection = sqlite3.connect(self.hospital.data_dir.database_path)
        try:
            return connection.execute(sql).fetchall()
        finally:
            connection.close()

    def quarantine_bytes(self) -> int:
        directory = self.hospital.data_dir.root / QUARANTINE_DIR
        return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


@contextlib.contextmanager
def flooded_gateway(root: Path, extra: str = "") -> Iterator[Flooded]:
    """A hospital in ``root`` with small quotas, its generated broker and its daemon."""
    hospital = make_hospital(root)
    data = hospital.data_dir.root
    tls_port, plain_port = write_config(data)
    (data / "gateway.toml").write_text(
        f"[broker]\nport = {plain_port}\ntls = false\n[console]\nenabled = false\n"
        f"[quarantine]\nbadge_bytes = {BADGE_QUOTA}\nlog_bytes = {LOG_BYTES}\n"
        f"[cutoff]\nrefusals = {REFUSALS}\nwindow_seconds = 60.0\n{extra}"
    )
    with GeneratedBroker(data / "broker", tls_port, plain_port) as broker:
        daemon = GatewayDaemon(hospital.data_dir, GatewayConfig.load(data))
        daemon.start()
        try:
            deadline = time.monotonic() + 20
            while not daemon.connected:
                assert time.monotonic() < deadline, "the gateway did not connect"
                time.sleep(0.02)
            yield Flooded(hospital, broker, daemon)
        finally:
            daemon.stop()


class Flood:
    """Badge-a publishing garbage on its own alert and segment topics until the broker
    drops it (or ``limit`` messages), on a thread of its own."""

    def __init__(self, session: MqttSession, limit: int = 5000) -> None:
        self.session = session
        self.limit = limit
        self.sent = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the flood was never cut off"

    def _run(self) -> None:
        topics = [badge_topic("badge-a", "alert"), badge_topic("badge-a", "segment")]
        while self.sent < self.limit and not self.session.disconnects:
            self.session.client.publish(topics[self.sent % 2], GARBAGE, qos=0)
            self.sent += 1
            if self.sent % 50 == 0:
                time.sleep(0.005)  # let paho's thread write; the broker reads as fast as it can


def _press_during_the_flood(flooded: Flooded, flood: Flood) -> AlertEvent:
    """Badge-b presses while badge-a floods; return the alert the live channel carried."""
    with flooded.daemon.channel.subscribe() as live:
        flood.start()
        while flood.sent < 100:
            time.sleep(0.01)
        b = BadgeMessages.of(flooded.hospital.bundles["badge-b"])
        presser = flooded.login("badge-b")
        try:
            pressed = time.monotonic()
            presser.publish(b.topic("alert"), b.alert("inc-b"))
            item = live.get(ALERT_S)
            assert isinstance(item, AlertEvent), "the alert did not reach the live channel"
            assert time.monotonic() - pressed < ALERT_S
        finally:
            presser.close()
    flood.join(30)
    return item


def test_a_flood_trips_the_quota_and_the_cut_off_and_an_alert_still_arrives(
    tmp_path: Path,
) -> None:
    with flooded_gateway(tmp_path) as flooded:
        attacker = flooded.login("badge-a")
        flood = Flood(attacker)
        try:
            event = _press_during_the_flood(flooded, flood)
            dropped = attacker.wait_disconnected(5)  # by the broker, for the cut-off
        finally:
            attacker.close()
        # the broker's kick says "Administrative action", unless it closes the socket while
        # the flooder is mid-publish ("Unspecified error"); the refused login below is the proof
        assert dropped.getName() in {"Administrative action", "Unspecified error"}
        assert (event.badge_id, event.incident_id) == ("badge-b", "inc-b")
        assert flooded.rows("SELECT badge_id, incident_id FROM alerts") == [("badge-b", "inc-b")]
        assert flooded.rows("SELECT badge_id FROM badge_cutoffs") == [("badge-a",)]
        again = flooded.login("badge-a")
        again.close()
        assert again.connack is not None and again.connack.is_failure
        # the quota held: kept bytes within it, plus the two capped metadata logs
        assert flooded.quarantine_bytes() <= BADGE_QUOTA + 2 * LOG_BYTES + 64 * 1024
        not_kept = flooded.daemon.intake.intake.quarantine.not_kept()
        assert sum(not_kept.values()) > 0


def test_on_a_nearly_full_disk_the_reserve_keeps_garbage_out_and_the_alert_is_stored(
    tmp_path: Path,
) -> None:
    size = 96 * 1024 * 1024
    reserve = 24 * 1024 * 1024
    with (
        small_filesystem(tmp_path / "small", size) as disk,
        flooded_gateway(disk, f"[reserve]\nbytes = {reserve}\npercent = 0.0\n") as flooded,
    ):
        stats = os.statvfs(disk)
        filler = stats.f_bavail * stats.f_frsize - reserve // 2  # leave half the reserve
        with (disk / "filler.bin").open("wb") as stream:
            stream.truncate(0)
            block = bytes(1 << 20)
            for _ in range(filler >> 20):
                stream.write(block)
        attacker = flooded.login("badge-a")
        flood = Flood(attacker)
        try:
            event = _press_during_the_flood(flooded, flood)
        finally:
            attacker.close()
        assert (event.badge_id, event.incident_id) == ("badge-b", "inc-b")
        assert flooded.rows("SELECT badge_id, incident_id FROM alerts") == [("badge-b", "inc-b")]
        quarantine = flooded.hospital.data_dir.root / QUARANTINE_DIR
        assert list(quarantine.glob("*/*.bin")) == []  # below the reserve: no bytes kept
        assert flooded.daemon.intake.intake.quarantine.not_kept()["malformed"] > 0
