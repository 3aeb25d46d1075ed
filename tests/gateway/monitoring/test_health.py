"""The health checks over samples built by hand: each failure is named and explained."""

from __future__ import annotations

import dataclasses
import json
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from gateway.config import GatewayConfig, MonitoringSettings
from gateway.daemon import GatewayDaemon
from gateway.errors import MonitoringError, StorageError
from gateway.intake.service import IntakeProbe
from gateway.monitoring.health import assess
from gateway.monitoring.metrics import GatewayCollector, new_registry
from gateway.monitoring.sample import DiskUse, GatewaySample, QuarantineUse, Sampler
from gateway.monitoring.server import MonitoringServer
from gateway.storage.checkpoints import CheckpointRow
from tests.gateway.badge_messages import make_hospital
from tests.gateway.generated_broker import write_config

NOW = 1_800_000_000_000_000_000
SETTINGS = MonitoringSettings(disk_min_free_mb=100, checkpoint_max_age_s=300)
FINE = GatewaySample(
    at_ns=NOW,
    intake=IntakeProbe(True, True, None, True, 0, 0),
    webhook_queued=0,
    webhook_undelivered=0,
    live_subscribers=0,
    enrolled_badges=1,
    badges=(),
    ledger_size=10,
    last_checkpoint=CheckpointRow(3, 8, b"r" * 32, b"note", None, NOW - 10**9),
    disk=DiskUse(200 << 20, 1 << 30),
    quarantine=QuarantineUse(0, 0),
)


def failing(sample: GatewaySample) -> dict[str, str]:
    report = assess(sample, SETTINGS)
    document = json.loads(report.to_json())
    assert document["status"] == ("ok" if report.ok else "unhealthy")
    return {name: document["checks"][name]["detail"] for name in report.failing}


def test_a_fine_sample_is_healthy() -> None:
    assert failing(FINE) == {}


def test_each_failure_names_its_check() -> None:
    store_died = dataclasses.replace(
        FINE,
        intake=IntakeProbe(True, False, "the store process ended (killed by SIGKILL)", True, 0, 0),
    )
    assert failing(store_died) == {"store": "the store process ended (killed by SIGKILL)"}
    stopped = dataclasses.replace(FINE, intake=IntakeProbe(False, True, None, False, 0, 0))
    assert set(failing(stopped)) == {"intake", "broker"}
    full = dataclasses.replace(FINE, disk=DiskUse(50 << 20, 1 << 30))
    assert failing(full) == {"disk": "50 MB free in the data directory, below 100 MB"}


def test_a_ledger_shorter_than_its_checkpoint_is_unhealthy() -> None:
    rolled_back = dataclasses.replace(FINE, ledger_size=5)
    assert "fewer than the 8 its last checkpoint signed" in failing(rolled_back)["ledger"]


def test_entries_waiting_too_long_for_a_checkpoint_are_unhealthy() -> None:
    old = CheckpointRow(3, 8, b"r" * 32, b"note", None, NOW - 301 * 10**9)
    assert (
        "2 entries wait for a checkpoint"
        in failing(dataclasses.replace(FINE, last_checkpoint=old))["ledger"]
    )
    # an old checkpoint over every entry is fine: nothing waits
    assert failing(dataclasses.replace(FINE, last_checkpoint=old, ledger_size=8)) == {}


def test_a_taken_monitoring_port_does_not_stop_the_gateway(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hospital = make_hospital(tmp_path, ("badge-a",))
    write_config(hospital.data_dir.root)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = GatewayConfig.from_mapping(
            hospital.data_dir.root, {"monitoring": {"port": port}, "console": {"enabled": False}}
        )
        daemon = GatewayDaemon(hospital.data_dir, config)
    assert daemon.monitoring is None
    assert f"cannot bind 127.0.0.1:{port}" in caplog.text
    assert "running without health and metrics" in caplog.text


class UnreadableSampler(Sampler):
    """A sampler whose database cannot be read (the listener must say so, not fail)."""

    def __init__(self) -> None:
        """Nothing to open."""

    def sample(self) -> GatewaySample:
        raise StorageError(
            "gateway database /x/gateway.db failed: database disk image is malformed"
        )

    def close(self) -> None:
        """Nothing to close."""


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - http on loopback
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_an_unreadable_state_is_a_failed_check_and_other_paths_are_not_found(host: str) -> None:
    if host == "::1" and not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    sampler = UnreadableSampler()
    registry = new_registry()
    registry.register(GatewayCollector(sampler.sample, SETTINGS))
    try:
        server = MonitoringServer(MonitoringSettings(host=host, port=0), sampler, registry)
    except MonitoringError:
        pytest.skip(f"{host} cannot be bound here")
    server.start()
    try:
        bound, port = server.address
        base = f"http://[{bound}]:{port}" if ":" in bound else f"http://{bound}:{port}"
        status, body = get(f"{base}/healthz")
        assert status == 503
        document = json.loads(body)
        assert document["failing"] == ["storage"]
        assert "database disk image is malformed" in document["checks"]["storage"]["detail"]
        assert get(f"{base}/metrics")[0] == 503
        assert get(f"{base}/")[0] == 404
    finally:
        server.stop()


def test_a_revoked_badge_leaves_the_figures(tmp_path: Path) -> None:
    """Its last state stays on file, but it is neither counted nor watched for heartbeats."""
    hospital = make_hospital(tmp_path, ("badge-a", "badge-b"))
    storage = hospital.data_dir.storage()
    try:
        for badge_id in ("badge-a", "badge-b"):
            storage.badge_states.status(badge_id, True, 1, NOW)
        assert storage.badges.count_active() == 2
        storage.badges.revoke("badge-b", operator="Admin", reason="lost")
        assert [state.badge_id for state in storage.badge_states.of_active_badges()] == ["badge-a"]
        assert storage.badge_states.get("badge-b") is not None
        assert storage.badges.count_active() == 1
    finally:
        storage.close()
