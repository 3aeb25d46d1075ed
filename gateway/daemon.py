"""The gateway daemon: intake on the broker, each alert to the live channel and the webhooks.

broker -> IntakeService -> Intake (stores, receipts) -> on_alert -> log line,
                                                         AlertChannel (in-process), AlertWebhooks

``run`` tells systemd READY=1 once the intake is connected and subscribed, and WATCHDOG=1
while it stays so (decision 1002); SIGTERM or SIGINT stop it cleanly. The daemon serves no
console (only its loopback health and metrics listener): the console is a process of its own
(``gateway console``, decision 1740) that follows the stored alerts from the database, so
nothing it does can reach the intake or the webhooks.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from evidence.sd_notify import sd_notify, watchdog_interval_s
from gateway.alerts.alerts import AlertEvent
from gateway.alerts.live import AlertChannel
from gateway.alerts.webhooks import AlertWebhooks
from gateway.broker.access import BrokerAccess
from gateway.config import GatewayConfig
from gateway.datadir import GatewayDataDir
from gateway.errors import GatewayError, MonitoringError
from gateway.intake.service import IntakeService
from gateway.ledger.ledger import open_ledger
from gateway.ledger.schedule import CheckpointSchedule
from gateway.monitoring.metrics import AlertMetrics, GatewayCollector, new_registry
from gateway.monitoring.sample import Sampler
from gateway.monitoring.server import MonitoringServer

log = logging.getLogger(__name__)

EXIT_OK = 0
"""Stopped by SIGTERM or SIGINT after a clean shutdown."""
EXIT_FAILED = 1
"""Could not start (configuration, data directory, keys, broker password, webhook secret),
or the store process died while running."""

STARTUP_POLL_S = 0.05
"""How often ``run`` looks for the first connection (READY=1 should follow it closely)."""
HEALTH_POLL_S = 1.0
"""How often ``run`` checks the connection once ready (and pings the watchdog if healthy)."""
WEBHOOK_FLUSH_S = 5.0
"""How long a stop waits for queued webhook deliveries before recording them as undelivered."""
_MS = 1e6


class GatewayDaemon:
    """One running gateway: intake, live alert channel and webhooks."""

    def __init__(
        self,
        data_dir: GatewayDataDir,
        config: GatewayConfig,
        *,
        channel: AlertChannel | None = None,
    ) -> None:
        """Check everything needed to run (raising GatewayError) before anything starts."""
        data_dir.require_initialised()
        self.data_dir = data_dir
        self.config = config
        self.channel = channel or AlertChannel(config.live_queue_limit)
        self.webhooks = AlertWebhooks.from_settings(config.webhooks, config.paths.undelivered_file)
        broker = config.broker
        if broker.tls and not broker.ca_file.is_file():
            raise GatewayError(
                f"broker CA certificate {broker.ca_file} is missing: set broker.ca_file"
            )
        timestamper = data_dir.configured_timestamper(config.timestamps)
        self.intake = IntakeService(
            data_dir,
            broker.host,
            broker.port,
            broker.username,
            broker.read_password(),
            broker.ca_file if broker.tls else None,
            shared_group=broker.shared_group,
            on_alert=self.on_alert,
            timestamps=config.timestamps,
            limits=config.limits,
        )
        # revocations and cut-offs reach the broker at once, on the intake's connection
        self.access = BrokerAccess(data_dir, self.intake.control, lambda: self.connected)
        # Checkpoints at least every minute while the log grows, each time-stamped by the
        # configured TSA (the hospital's own by default), on a ledger connection of their
        # own: the intake keeps its own connection and stamps its incident checkpoints.
        self._checkpoint_storage = data_dir.storage()
        self.checkpoints = CheckpointSchedule(
            open_ledger(
                data_dir,
                self._checkpoint_storage,
                timestamper=timestamper,
                verify=False,  # the intake has just checked the whole log against its checkpoint
            )
        )
        self._stopping = threading.Event()
        self._started = False
        # health and metrics on a listener of the daemon's own, bound last (decision 2400)
        self.registry = new_registry()
        self.alert_metrics = AlertMetrics(self.registry)
        self.monitoring: MonitoringServer | None = None
        if config.monitoring.enabled:
            sampler = Sampler(data_dir, self.intake, self.webhooks, self.channel)
            self.registry.register(GatewayCollector(sampler.sample, config.monitoring))
            try:
                self.monitoring = MonitoringServer(config.monitoring, sampler, self.registry)
            except MonitoringError as error:  # alerts must not wait for a monitoring port
                log.error("%s; running without health and metrics", error)

    @property
    def connected(self) -> bool:
        """True while the intake is connected to the broker and subscribed."""
        return self.intake.wait_connected(0)

    def start(self) -> None:
        """Start the webhooks, then the intake (which connects in the background)."""
        self.webhooks.start()
        self.intake.start()
        self.access.start()
        self.checkpoints.start()
        if self.monitoring is not None:
            self.monitoring.start()
        self._started = True
        broker = self.config.broker
        log.info(
            "gateway starting: broker %s:%d (%s) as %s, %d webhook(s)",
            broker.host,
            broker.port,
            "TLS" if broker.tls else "plain MQTT",
            broker.username,
            len(self.webhooks.urls),
        )

    def stop(self) -> None:
        """Stop the intake (no new alerts), flush the webhooks, close the live channel."""
        if not self._started:
            return
        self._started = False
        if self.monitoring is not None:
            self.monitoring.stop()
        self.access.stop()
        self.intake.stop()
        self.checkpoints.stop()
        self.checkpoints.tick()  # what arrived since the last tick is checkpointed before exit
        self._checkpoint_storage.close()
        self.webhooks.stop(WEBHOOK_FLUSH_S)
        self.channel.close()
        log.info("gateway stopped")

    def request_stop(self) -> None:
        """Ask ``run`` to return (what SIGTERM does); safe from any thread."""
        self._stopping.set()

    def run(self) -> int:
        """Run until SIGTERM or SIGINT (EXIT_OK) or until the intake can no longer store
        (EXIT_FAILED, so that systemd restarts the gateway)."""
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, self._on_signal)
        self.start()
        try:
            self._supervise()
        finally:
            sd_notify("STOPPING=1")
            self.stop()
        failure = self.intake.failure()
        if failure is not None:
            log.error("gateway stopped: %s", failure)
            return EXIT_FAILED
        return EXIT_OK

    def on_alert(self, event: AlertEvent) -> None:
        """Log the alert, publish it live and queue it for the webhooks; never raises."""
        log.info("%s", alert_line(event))
        steps = (
            ("live channel", self.channel.publish),
            ("webhooks", self.webhooks.deliver),
            ("metrics", self.alert_metrics.observe),
        )
        for step, action in steps:
            try:
                action(event)
            except Exception:
                log.exception("could not pass alert %s to the %s", event.incident_id, step)

    def _on_signal(self, number: int, _frame: FrameType | None) -> None:
        log.info("received %s: stopping", signal.Signals(number).name)
        self._stopping.set()

    def _supervise(self) -> None:
        """Wait for the first connection, then keep the watchdog fed while it lasts."""
        broker = self.config.broker
        where = f"{broker.host}:{broker.port}"
        sd_notify(f"STATUS=connecting to the broker at {where}")
        while not self.connected:
            if self._stopping.wait(STARTUP_POLL_S) or self.intake.failure() is not None:
                return
        sd_notify(f"READY=1\nSTATUS=connected to the broker at {where}")
        log.info("gateway ready: intake subscribed at %s", where)
        interval = min(watchdog_interval_s() or HEALTH_POLL_S, HEALTH_POLL_S)
        healthy = True
        while not self._stopping.wait(interval):
            if self.intake.failure() is not None:
                return
            now_healthy = self.connected
            if now_healthy:
                sd_notify("WATCHDOG=1")
            if now_healthy != healthy:
                healthy = now_healthy
                state = "connected to" if healthy else "lost the connection to"
                sd_notify(f"STATUS={state} the broker at {where}")


def alert_line(event: AlertEvent) -> str:
    """The one log line of an alert: who, where, which incident, and how late it arrived."""
    latency = f"{event.claimed_latency_ns / _MS:.1f} ms by the badge clock"
    if event.estimated_latency_ns is not None:
        error = event.latency_error_ns or 0
        latency = (
            f"{event.estimated_latency_ns / _MS:.1f} ms +/- {error / _MS:.1f} ms "
            f"(estimated; {latency})"
        )
    wearer = f" ({event.wearer})" if event.wearer else ""
    location = event.location or event.registered_location or "unknown location"
    return (
        f"ALERT badge {event.badge_id}{wearer} at {location!r}, incident {event.incident_id}: "
        f"latency {latency}"
    )
