"""Health and metrics of a running gateway: ``/healthz`` and ``/metrics`` on a small listener.

``gateway run`` serves both on its own loopback listener (``[monitoring]`` in gateway.toml),
apart from the console, so they tell the intake's state even when the console is down
(decision 2400).
"""

from __future__ import annotations

from gateway.monitoring.health import Check, HealthReport, assess
from gateway.monitoring.metrics import AlertMetrics, GatewayCollector
from gateway.monitoring.sample import GatewaySample, Sampler
from gateway.monitoring.server import MonitoringServer

__all__ = [
    "AlertMetrics",
    "Check",
    "GatewayCollector",
    "GatewaySample",
    "HealthReport",
    "MonitoringServer",
    "Sampler",
    "assess",
]
