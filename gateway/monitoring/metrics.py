"""``/metrics``: the gateway's figures for Prometheus (docs/deployment.md lists each one).

Two kinds: what is counted as it happens (alerts, and how long each took from the press to
being stored and handed to the live channel), kept by ``AlertMetrics``; and what is read at
each scrape from a ``GatewaySample`` by ``GatewayCollector``. Both live in a registry of the
daemon's own, with the process's own figures (memory, CPU, open files).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric

from gateway.alerts.alerts import AlertEvent
from gateway.config import MonitoringSettings
from gateway.monitoring.health import assess
from gateway.monitoring.sample import GatewaySample

PREFIX = "medbadge_"
LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
"""Alert latency buckets: the goal is well under a second from press to the console."""
_NS = 1e9
_MB = 1 << 20


class AlertMetrics:
    """Counts alerts and their latency from the press (in gateway time) to the live channel."""

    def __init__(
        self, registry: CollectorRegistry, clock: Callable[[], int] = time.time_ns
    ) -> None:
        """Register the alert counter and latency histogram in ``registry``."""
        self._clock = clock
        self.alerts = Counter(
            f"{PREFIX}alerts",
            "Alerts stored and handed to the live channel since the gateway started.",
            registry=registry,
        )
        self.latency = Histogram(
            f"{PREFIX}alert_latency_seconds",
            "From the press (in gateway time when the badge's clock is estimated, else by "
            "the badge's clock) to the alert stored and handed to the live channel.",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )

    def observe(self, event: AlertEvent) -> None:
        """Count one alert, now stored, and its latency."""
        pressed = event.estimated_press_wall_ns
        if pressed is None:
            pressed = event.press.wall_ns
        self.alerts.inc()
        self.latency.observe(max(0.0, (self._clock() - pressed) / _NS))


class GatewayCollector:
    """Reads a sample at each scrape and reports it as gauges."""

    def __init__(self, sample: Callable[[], GatewaySample], settings: MonitoringSettings) -> None:
        """Report what ``sample()`` reads; ``settings`` give the health limits."""
        self._sample = sample
        self._settings = settings

    def collect(self) -> Iterator[Metric]:
        """Every figure of one fresh sample."""
        sample = self._sample()
        yield _gauge("badges_enrolled", "Badges enrolled and not revoked.", sample.enrolled_badges)
        yield _gauge(
            "badges_connected",
            "Badges whose last status or heartbeat says they are online.",
            sample.connected_badges,
        )
        age = GaugeMetricFamily(
            f"{PREFIX}badge_last_heartbeat_age_seconds",
            "Seconds since the gateway received each badge's last heartbeat.",
            labels=["badge"],
        )
        battery = GaugeMetricFamily(
            f"{PREFIX}badge_battery_percent",
            "Each badge's battery charge from its last heartbeat (absent: no gauge fitted).",
            labels=["badge"],
        )
        for badge in sample.badges:
            if badge.last_heartbeat_wall_ns is not None:
                seconds = max(0.0, (sample.at_ns - badge.last_heartbeat_wall_ns) / _NS)
                age.add_metric([badge.badge_id], seconds)
            if badge.battery_percent is not None:
                battery.add_metric([badge.badge_id], badge.battery_percent)
        yield age
        yield battery
        queues = GaugeMetricFamily(
            f"{PREFIX}queue_depth",
            "Items waiting: intake (messages read, not handled), store (segments handed to "
            "the store process, not stored), webhook (alerts not yet delivered).",
            labels=["queue"],
        )
        queues.add_metric(["intake"], sample.intake.queued)
        queues.add_metric(["store"], sample.intake.store_pending)
        queues.add_metric(["webhook"], sample.webhook_queued)
        yield queues
        yield _gauge(
            "webhook_undelivered",
            "Alerts no webhook accepted in time since the start (in the undelivered file).",
            sample.webhook_undelivered,
        )
        yield _gauge("live_subscribers", "Open live alert subscriptions.", sample.live_subscribers)
        yield _gauge(
            "disk_free_bytes",
            "Free bytes on the data directory's filesystem.",
            sample.disk.free_bytes,
        )
        yield _gauge(
            "disk_total_bytes",
            "Size of the data directory's filesystem.",
            sample.disk.total_bytes,
        )
        yield _gauge(
            "disk_min_free_bytes",
            "Below this much free space /healthz reports the disk unhealthy.",
            self._settings.disk_min_free_mb * _MB,
        )
        yield _gauge("quarantine_bytes", "Bytes the quarantine holds.", sample.quarantine.bytes)
        yield _gauge("quarantine_files", "Files the quarantine holds.", sample.quarantine.files)
        yield _gauge("ledger_entries", "Entries in the ledger.", sample.ledger_size)
        last = sample.last_checkpoint
        yield _gauge(
            "ledger_checkpoint_entries",
            "Entries the last signed checkpoint covers.",
            0 if last is None else last.size,
        )
        if last is not None:
            yield _gauge(
                "ledger_last_checkpoint_age_seconds",
                "Seconds since the last checkpoint was signed.",
                max(0.0, (sample.at_ns - last.created_at_ns) / _NS),
            )
        health = GaugeMetricFamily(
            f"{PREFIX}health_ok",
            "1 when the /healthz check is fine, 0 when it fails.",
            labels=["check"],
        )
        for check in assess(sample, self._settings).checks:
            health.add_metric([check.name], 1 if check.ok else 0)
        yield health


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}{name}", documentation, value=value)


def new_registry() -> CollectorRegistry:
    """A registry of the daemon's own, holding the process's figures."""
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    return registry
