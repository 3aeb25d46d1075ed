"""The console's live alerts: each alert the intake stores, followed from the database.

The console is a process of its own (decision 1740): ``gateway run`` does not know it is
there, and nothing the console does can slow the intake or its webhooks. The console learns
of a new alert by reading, every ``poll_s``, the alerts stored after the newest it has seen
(their arrival numbers, decision 1402), and publishes each on its own ``AlertChannel``,
which the alert screen's stream reads. The press in gateway time is estimated here from the
clock samples the intake has stored, as the intake does for its webhooks.

It starts from the newest alert stored when it starts: older ones are not news, and the
alert page lists them from the database. A failed read is logged once and tried again at
the next poll; the alerts are stored, so none is missed by a retry.
"""

from __future__ import annotations

import logging
import threading

from evidence.incident import Press
from gateway.alerts.alerts import AlertEvent, alert_event
from gateway.alerts.live import AlertChannel
from gateway.errors import GatewayError
from gateway.intake.clock import BadgeClocks
from gateway.storage import Storage
from gateway.storage.alert_feed import FEED_BATCH, ArrivedAlert

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 5.0


class AlertFollower:
    """A thread publishing each newly stored alert on ``channel``, on a storage of its own."""

    def __init__(self, storage: Storage, channel: AlertChannel, poll_s: float) -> None:
        """Follow ``storage`` (used from the follower's thread only, once started)."""
        if poll_s <= 0:
            raise ValueError(f"alert follower poll interval {poll_s!r} must be positive")
        self._storage = storage
        self._channel = channel
        self._poll_s = poll_s
        self._clocks = BadgeClocks(storage.clock_samples)
        self._last = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    @property
    def alive(self) -> bool:
        """True while the follower's thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Note the newest stored alert (GatewayError if the database cannot be read), then
        follow from there on a background thread."""
        self._last = self._storage.alert_feed.last_arrival()
        self._thread = threading.Thread(target=self._follow, name="console-alerts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following (the storage stays open: its owner closes it)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)
            self._thread = None

    def poll(self) -> int:
        """Publish the alerts stored since the last poll; how many there were."""
        published = 0
        while True:
            batch = self._storage.alert_feed.after(self._last, FEED_BATCH)
            for arrived in batch:
                self._channel.publish(self._event(arrived))
                self._last = arrived.arrival
            published += len(batch)
            if len(batch) < FEED_BATCH:
                return published

    def _follow(self) -> None:
        while not self._stopping.wait(self._poll_s):
            try:
                self.poll()
            except GatewayError as error:
                if not self._failing:
                    log.warning("console cannot read new alerts (trying again): %s", error)
                self._failing = True
            else:
                if self._failing:
                    log.info("console reads new alerts again")
                self._failing = False

    def _event(self, arrived: ArrivedAlert) -> AlertEvent:
        press = Press(arrived.press_boot, arrived.press_mono_ns, arrived.press_wall_ns)
        estimate = self._clocks.estimate(arrived.badge_id, press.boot)
        pressed = None
        if estimate is not None and estimate.boot == press.boot:
            pressed = estimate.gateway_time(press.wall_ns, press.mono_ns)
        return alert_event(
            badge_id=arrived.badge_id,
            wearer=arrived.wearer,
            registered_location=arrived.registered_location,
            location=arrived.location,
            incident_id=arrived.incident_id,
            press=press,
            received_wall_ns=arrived.received_wall_ns,
            press_estimate=pressed,
        )
