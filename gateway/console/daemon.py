"""``gateway console``: the security console as a process of its own (decision 1740).

data directory -> AlertFollower (new alerts, from the database) -> AlertChannel -> alert stream
               -> ConsoleServer (guarded uvicorn: pages, API, playback, export)

The console shares nothing with ``gateway run`` but the data directory: a console under
load, stuck or dead takes no file handle, thread or byte of memory from the intake, and
the webhooks still fire. ``run`` tells systemd READY=1 once the socket listens, and
WATCHDOG=1 while the server and the follower both run; SIGTERM or SIGINT stop it cleanly.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import replace
from types import FrameType

from evidence.sd_notify import sd_notify, watchdog_interval_s
from gateway.alerts.live import AlertChannel
from gateway.config import GatewayConfig
from gateway.console.guard import GuardStats
from gateway.console.live_feed import AlertFollower
from gateway.console.server import ConsoleServer
from gateway.datadir import GatewayDataDir
from gateway.errors import GatewayConfigError
from gateway.storage import Storage

log = logging.getLogger(__name__)

EXIT_OK = 0
"""Stopped by SIGTERM or SIGINT after a clean shutdown."""
EXIT_FAILED = 1
"""Could not start, or the server or the alert follower stopped while running."""
HEALTH_POLL_S = 1.0
"""How often ``run`` checks that the server and the follower run (and pings the watchdog)."""
REFUSALS_LOG_S = 10.0
"""At most this often, the log says how many connections the guard has turned away."""


class ConsoleDaemon:
    """One running console: the follower of new alerts and the HTTP(S) server."""

    def __init__(self, data_dir: GatewayDataDir, config: GatewayConfig) -> None:
        """Check what the console needs (GatewayError) before anything starts."""
        data_dir.require_initialised()
        if not config.console.enabled:
            raise GatewayConfigError(
                "the console is turned off ([console] enabled = false): set it to true, or "
                "disable medbadge-console.service"
            )
        self.data_dir = data_dir
        self.config = config
        self.channel = AlertChannel(config.live_queue_limit)
        self.server = ConsoleServer(data_dir, config, self.channel)
        self._follower_storage: Storage | None = None
        self.follower: AlertFollower | None = None
        self._stopping = threading.Event()
        self._refusals_logged = GuardStats()
        self._refusals_logged_at = 0.0

    @property
    def url(self) -> str:
        """Where browsers reach the console."""
        return self.server.url

    @property
    def healthy(self) -> bool:
        """True while the server and the alert follower both run."""
        return self.server.alive and self.follower is not None and self.follower.alive

    def start(self) -> None:
        """Start following new alerts, then listen (ConsoleError if the port is taken)."""
        storage = self.data_dir.storage()
        follower = AlertFollower(
            storage, self.channel, self.config.console.limits.live_poll_ms / 1000
        )
        try:
            follower.start()
            self.server.start()
        except BaseException:
            follower.stop()
            storage.close()
            raise
        self._follower_storage, self.follower = storage, follower

    def stop(self) -> None:
        """Stop following, close the channel (ending open streams), stop serving."""
        if self.follower is not None:
            self.follower.stop()
            self.follower = None
        if self._follower_storage is not None:
            self._follower_storage.close()
            self._follower_storage = None
        self.channel.close()
        self.server.stop()
        log.info("console stopped")

    def request_stop(self) -> None:
        """Ask ``run`` to return (what SIGTERM does); safe from any thread."""
        self._stopping.set()

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT (EXIT_OK) or until the server or the follower stops
        (EXIT_FAILED, so that systemd restarts the console)."""
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, self._on_signal)
        self.start()
        failed = False
        try:
            sd_notify(f"READY=1\nSTATUS=serving at {self.url}")
            interval = min(watchdog_interval_s() or HEALTH_POLL_S, HEALTH_POLL_S)
            while not self._stopping.wait(interval):
                if not self.healthy:
                    failed = True
                    break
                sd_notify("WATCHDOG=1")
                self.log_refusals()
        finally:
            sd_notify("STOPPING=1")
            self.stop()
        if failed:
            log.error("console stopped: its server or its alert follower is no longer running")
            return EXIT_FAILED
        return EXIT_OK

    def log_refusals(self) -> None:
        """Say in the log what the guard has turned away since it last said so (rate-limited:
        a flood of connections must not become a flood of log lines)."""
        guard = self.server.guard
        now = time.monotonic()
        if guard is None or now - self._refusals_logged_at < REFUSALS_LOG_S:
            return
        stats, before = replace(guard.stats), self._refusals_logged
        if stats == before:
            return
        log.warning(
            "console turned connections away: %d over the per-address cap, %d with the "
            "server full, %d closed to make way, %d too slow to send a request (in all since "
            "start; %d open now)",
            stats.refused_per_address,
            stats.refused_full,
            stats.evicted,
            stats.timed_out,
            guard.open_connections,
        )
        self._refusals_logged, self._refusals_logged_at = stats, now

    def _on_signal(self, number: int, _frame: FrameType | None) -> None:
        log.info("received %s: stopping", signal.Signals(number).name)
        self._stopping.set()
