"""`/healthz` and `/metrics` of a real `gateway run` on a real broker, as a scraper reads them."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from evidence.incident import Press, sign_alert
from evidence.topics import gateway_filter, gateway_topic
from tests.gateway.badge_messages import BOOT_MONO_NS, BadgeMessages, Hospital, make_hospital
from tests.gateway.generated_broker import GeneratedBroker, badge_tls_session, write_config
from tests.gateway.test_daemon import GatewayProcess, NotifySocket
from tests.gateway.webhook_receiver import wait_until
from tests.mosquitto import free_port

REPO = Path(__file__).resolve().parents[3]
Figures = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    listener = NotifySocket()
    yield listener
    listener.close()


def scrape(port: int) -> Figures:
    """Every sample of ``/metrics`` by (name, sorted labels), read with Prometheus's parser."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    figures: Figures = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            figures[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return figures


def health(port: int) -> tuple[int, dict[str, object]]:
    """The status and JSON document of ``/healthz``."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def one(figures: Figures, name: str, **labels: str) -> float:
    return figures[(name, tuple(sorted(labels.items())))]


def configure(hospital: Hospital, tls_port: int, monitoring_port: int) -> None:
    (hospital.data_dir.root / "gateway.toml").write_text(
        f"""
[broker]
port = {tls_port}

[console]
enabled = false

[monitoring]
port = {monitoring_port}
"""
    )


def test_figures_move_when_a_badge_presses_and_health_names_a_lost_broker(
    tmp_path: Path, notify: NotifySocket
) -> None:
    hospital = make_hospital(tmp_path)
    tls_port, plain_port = write_config(hospital.data_dir.root)
    port = free_port(avoid=[tls_port, plain_port])
    configure(hospital, tls_port, port)
    badge = BadgeMessages.of(hospital.bundles["badge-a"])
    broker = GeneratedBroker(hospital.data_dir.root / "broker", tls_port, plain_port)
    broker.start()
    gateway = GatewayProcess(hospital.data_dir.root, notify, tmp_path / "gateway.log")
    session = None
    try:
        notify.wait_for("READY=1")
        status, document = health(port)
        assert status == 200, document
        assert document["status"] == "ok" and document["failing"] == []
        checks = document["checks"]
        assert isinstance(checks, dict)
        assert set(checks) == {"intake", "store", "broker", "ledger", "disk"}

        before = scrape(port)
        assert one(before, "medbadge_alerts_total") == 0
        assert one(before, "medbadge_alert_latency_seconds_count") == 0
        assert one(before, "medbadge_badges_enrolled") == 2
        assert one(before, "medbadge_badges_connected") == 0
        assert ("medbadge_badge_last_heartbeat_age_seconds", (("badge", "badge-a"),)) not in before
        assert one(before, "medbadge_queue_depth", queue="intake") == 0
        assert one(before, "medbadge_health_ok", check="broker") == 1
        assert one(before, "medbadge_disk_free_bytes") > 0
        assert one(before, "process_resident_memory_bytes") > 0

        session = badge_tls_session(broker, tmp_path / "bundles" / "badge-a")
        assert not session.subscribe(gateway_filter("badge-a")).is_failure
        session.publish(badge.topic("status"), badge.status("online"))
        beat = time.time_ns()
        session.publish(badge.topic("heartbeat"), badge.heartbeat(BOOT_MONO_NS, beat))
        pressed = time.time_ns()
        press = Press(1, BOOT_MONO_NS + pressed - beat, pressed)
        alert = sign_alert(badge.identity, "inc-9", press, "Ward 3", 0)
        session.publish(badge.topic("alert"), alert)
        session.wait_for_message(gateway_topic("badge-a", "receipt"))
        wait_until(lambda: one(scrape(port), "medbadge_alerts_total") == 1, "the alert counted")

        after = scrape(port)
        assert one(after, "medbadge_alert_latency_seconds_count") == 1
        latency = one(after, "medbadge_alert_latency_seconds_sum")
        # by the clock estimated from the heartbeat: about the time the alert took, not the
        # months since the fixed times the other messages carry
        assert 0 <= latency < 30
        assert one(after, "medbadge_alert_latency_seconds_bucket", le="+Inf") == 1
        assert one(after, "medbadge_badges_connected") == 1
        age = one(after, "medbadge_badge_last_heartbeat_age_seconds", badge="badge-a")
        assert 0 <= age < 30
        assert one(after, "medbadge_badge_battery_percent", badge="badge-a") == 77
        assert one(after, "medbadge_ledger_entries") > one(before, "medbadge_ledger_entries")

        # the dashboard reads only figures the gateway gives
        dashboard = (REPO / "docs" / "grafana-medbadge.json").read_text()
        wanted = set(re.findall(r"\b(?:medbadge|process)_[a-z_]+", dashboard))
        assert len(wanted) >= 15
        # the checkpoint age appears with the first checkpoint (a minute on, or at the stop)
        assert ("medbadge_ledger_last_checkpoint_age_seconds", ()) not in after
        assert wanted - {"medbadge_ledger_last_checkpoint_age_seconds"} <= {
            name for name, _labels in after
        }

        broker.stop()  # the intake loses its connection: health says so, by name
        wait_until(lambda: health(port)[0] == 503, "health to report the lost broker")
        status, document = health(port)
        assert document["status"] == "unhealthy" and document["failing"] == ["broker"]
        assert one(scrape(port), "medbadge_health_ok", check="broker") == 0
    finally:
        if session is not None:
            session.close()
        exit_status = gateway.terminate() if gateway.process.poll() is None else None
        gateway.kill()
        broker.stop()
    assert exit_status == 0, gateway.log_text()
