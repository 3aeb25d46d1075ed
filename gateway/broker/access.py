"""The broker's view of each badge kept in step with the registry, while the gateway runs.

A badge revoked anywhere (console, command line, another process) is deleted from the
broker's dynamic security plugin, a badge cut off for flooding is disabled, and one whose
cut-off is lifted is enabled again, within a poll (``POLL_S``) of the change being committed:
the plugin disconnects the badge at once and refuses its next login, with no
``broker-config`` and no restart (decision 1703). The registry is the truth: after every
(re)connection the whole standing is sent once, then only what changed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Final

from gateway.broker.control import NOT_FOUND, BrokerControl
from gateway.datadir import GatewayDataDir
from gateway.errors import GatewayError

log = logging.getLogger(__name__)

POLL_S: Final = 0.2
"""How often the registry is looked at (one cheap query when nothing changed)."""
BATCH: Final = 256
"""Commands sent in one control message."""
_COMMANDS: Final = {
    "revoked": "deleteClient",
    "cut-off": "disableClient",
    "enrolled": "enableClient",
}


class BrokerAccess:
    """Applies the registry's revocations and cut-offs to the broker (``start``/``stop``)."""

    def __init__(
        self,
        data_dir: GatewayDataDir,
        control: BrokerControl,
        connected: Callable[[], bool],
        *,
        poll_s: float = POLL_S,
    ) -> None:
        """Read ``data_dir``'s registry; send through ``control`` while ``connected()``."""
        self._data_dir = data_dir
        self._control = control
        self._connected = connected
        self._poll_s = poll_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="broker-access", daemon=True)
        self._applied: dict[str, str] = {}
        self._missing: set[str] = set()

    def start(self) -> None:
        """Start watching on a thread of its own."""
        self._thread.start()

    def stop(self) -> None:
        """Stop watching."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def apply(self, standing: dict[str, str]) -> int:
        """Send what differs between ``standing`` (badge id -> ``revoked``, ``cut-off`` or
        ``enrolled``) and what was applied; return how many commands the broker accepted."""
        changed = [
            (badge, state) for badge, state in standing.items() if self._applied.get(badge) != state
        ]
        accepted = 0
        for start in range(0, len(changed), BATCH):
            batch = changed[start : start + BATCH]
            commands: list[dict[str, object]] = [
                {"command": _COMMANDS[state], "username": badge} for badge, state in batch
            ]
            answers = self._control.commands(commands)
            for (badge, state), answer in zip(batch, answers, strict=True):
                accepted += self._applied_one(badge, state, answer.get("error"))
        return accepted

    def _applied_one(self, badge: str, state: str, error: object) -> int:
        """Remember what the broker now holds for ``badge``; log a refusal once."""
        self._applied[badge] = state
        if error is None:
            if state != "enrolled":
                log.warning("broker: badge %s is %s; its connection is closed", badge, state)
            self._missing.discard(badge)
            return 1
        if error == NOT_FOUND and state == "revoked":
            return 1  # deleted before, or never given an account
        if badge not in self._missing:
            self._missing.add(badge)
            log.warning(
                "broker has no account for badge %s (%s): run 'gateway broker-config' and "
                "restart mosquitto",
                badge,
                error,
            )
        return 0

    def _run(self) -> None:
        storage = self._data_dir.storage()
        token: int | None = None
        was_connected = False
        try:
            while not self._stopping.wait(self._poll_s):
                connected = self._connected()
                if connected and not was_connected:
                    self._applied.clear()  # a new connection (or broker): send everything once
                    token = None
                was_connected = connected
                now = storage.badges.change_token()
                if not connected or now == token:
                    continue
                try:
                    self.apply(storage.cutoffs.standing())
                    token = now
                except GatewayError as error:
                    log.error("could not bring the broker's accounts up to date: %s", error)
        finally:
            storage.close()
