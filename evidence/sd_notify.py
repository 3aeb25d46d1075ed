"""systemd's service notification protocol (sd_notify): READY, WATCHDOG, STATUS, STOPPING.

One datagram per message to ``NOTIFY_SOCKET``, for both daemons (``badge run`` and
``gateway run``); it lives here, beside the trust core, because it is the one module both
import and it needs nothing but the standard library (decision 1802). Sending never blocks
and never raises: a supervisor that has gone away or stopped reading is logged, once until
a message gets through again, and the daemon runs on.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

log = logging.getLogger(__name__)

_failing: str | None = None
"""The notify socket the last send failed on (a failure after the first is not logged)."""
_failing_lock = threading.Lock()


def sd_notify(message: str) -> bool:
    """Send ``message`` to systemd if it asked for notifications; return whether it was sent.

    Nothing is sent, and nothing logged, without ``NOTIFY_SOCKET``.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    target = "\0" + address[1:] if address.startswith("@") else address  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(target)
            sock.send(message.encode(), socket.MSG_DONTWAIT)
    except OSError as error:
        _note_failure(address, error)
        return False
    _note_success()
    return True


def _note_success() -> None:
    global _failing  # noqa: PLW0603 - one notify socket per process, one outage at a time
    with _failing_lock:
        _failing = None


def _note_failure(address: str, error: OSError) -> None:
    global _failing  # noqa: PLW0603
    with _failing_lock:
        first = _failing != address
        _failing = address
    if first:
        log.warning(
            "could not notify systemd on %s: %s (further failures are not logged until a "
            "notification gets through)",
            address,
            error,
        )


def watchdog_interval_s() -> float | None:
    """Half the watchdog timeout systemd set for this service, or None if there is none."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or os.environ.get("WATCHDOG_PID") not in (None, str(os.getpid())):
        return None
    try:
        return int(usec) / 2e6
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not a whole number of microseconds", usec)
        return None
