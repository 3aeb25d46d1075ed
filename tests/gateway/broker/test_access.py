"""Revocation and cut-off reach the real broker at once: the generated mosquitto (dynamic
security plugin) and the gateway daemon on it, with no broker-config and no restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from evidence.topics import badge_topic
from gateway.cli import main
from gateway.config import GatewayConfig
from gateway.daemon import GatewayDaemon
from gateway.storage.cutoffs import Cutoff
from tests.gateway.badge_messages import Hospital, make_hospital
from tests.gateway.generated_broker import GeneratedBroker, badge_tls_session, write_config
from tests.mosquitto import MqttSession

NOT_AUTHORIZED = 0x87
AT_ONCE_S = 1.0
"""Revocation takes effect at once: the badge is off the broker within a second."""


@dataclass
class Running:
    hospital: Hospital
    broker: GeneratedBroker
    daemon: GatewayDaemon
    bundles: Path

    def login(self, badge_id: str) -> MqttSession:
        return badge_tls_session(self.broker, self.bundles / badge_id)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    hospital = make_hospital(tmp_path)
    root = hospital.data_dir.root
    tls_port, plain_port = write_config(root)
    (root / "gateway.toml").write_text(
        f"[broker]\nport = {plain_port}\ntls = false\n[console]\nenabled = false\n"
    )
    with GeneratedBroker(root / "broker", tls_port, plain_port) as broker:
        daemon = GatewayDaemon(hospital.data_dir, GatewayConfig.load(root))
        daemon.start()
        try:
            deadline = time.monotonic() + 20
            while not daemon.connected:
                assert time.monotonic() < deadline, "the gateway did not connect"
                time.sleep(0.02)
            yield Running(hospital, broker, daemon, tmp_path / "bundles")
        finally:
            daemon.stop()


def _connected(session: MqttSession) -> bool:
    return session.connack is not None and session.connack.value == 0


def _refused_within(running: Running, badge_id: str, seconds: float) -> float:
    """Log in again until the broker refuses; return how long that took."""
    started = time.monotonic()
    while True:
        again = running.login(badge_id)
        again.close()
        if again.connack is not None and again.connack.value == NOT_AUTHORIZED:
            return time.monotonic() - started
        assert time.monotonic() - started < seconds, "the broker still lets the badge in"
        time.sleep(0.02)


def test_a_revoked_badge_is_off_the_broker_within_a_second(running: Running) -> None:
    badge = running.login("badge-a")
    other = running.login("badge-b")
    try:
        assert _connected(badge) and _connected(other)
        root = str(running.hospital.data_dir.root)
        assert main(["--data", root, "revoke", "badge-a", "--reason", "stolen"]) == 0
        revoked_at = time.monotonic()
        badge.wait_disconnected(AT_ONCE_S)
        assert time.monotonic() - revoked_at < AT_ONCE_S
        # its next publish goes nowhere: the session is gone and no new one is let in
        assert badge.publish(badge_topic("badge-a", "alert"), b"x", timeout=1) is None
        assert _refused_within(running, "badge-a", AT_ONCE_S) < AT_ONCE_S
        # another badge is untouched
        assert other.disconnects == []
        assert other.publish(badge_topic("badge-b", "status"), b"x") is not None
    finally:
        badge.close()
        other.close()
    assert "deleteClient" in running.broker.log_text()


def test_a_cut_off_badge_is_disabled_and_enabled_again_when_lifted(running: Running) -> None:
    badge = running.login("badge-b")
    try:
        assert _connected(badge)
        storage = running.hospital.data_dir.storage()
        try:
            assert storage.cutoffs.cut_off(
                Cutoff("badge-b", time.time_ns(), 101, 60_000_000_000, "malformed")
            )
            badge.wait_disconnected(AT_ONCE_S)
            assert _refused_within(running, "badge-b", AT_ONCE_S) < AT_ONCE_S
        finally:
            storage.close()
    finally:
        badge.close()
    root = str(running.hospital.data_dir.root)
    assert main(["--data", root, "lift-cutoff", "badge-b", "--operator", "adam"]) == 0
    deadline = time.monotonic() + AT_ONCE_S
    while True:
        back = running.login("badge-b")
        back.close()
        if _connected(back):
            break
        assert time.monotonic() < deadline, "a lifted badge is still refused"
        time.sleep(0.02)


def test_revoking_or_lifting_what_cannot_be_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = str(make_hospital(tmp_path, ("badge-a",)).data_dir.root)
    capsys.readouterr()
    assert main(["--data", root, "lift-cutoff", "badge-a"]) == 1
    assert "badge badge-a is not cut off" in capsys.readouterr().err
    assert main(["--data", root, "revoke", "badge-a", "--reason", " "]) == 1
    assert "say why the badge is revoked" in capsys.readouterr().err
    assert main(["--data", root, "revoke", "badge-a", "--reason", "lost"]) == 0
    assert main(["--data", root, "revoke", "badge-a", "--reason", "lost"]) == 1
    assert "revoked already" in capsys.readouterr().err
