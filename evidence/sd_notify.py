"""systemd's service notification protocol (sd_notify) for the gateway: READY, WATCHDOG, STATUS.

The badge has its own copy (badge/notify.py): the gateway does not depend on the badge
package, and the protocol is one datagram, too small to share through a third package.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def sd_notify(message: str) -> bool:
    """Send ``message`` to systemd if it asked for notifications; return whether it was sent.

    Never blocks: a supervisor that has gone away or stopped reading (its queue is full)
    is logged, not raised, and the gateway keeps running.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract socket namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.send(message.encode(), socket.MSG_DONTWAIT)
    except OSError as error:
        log.warning("could not notify systemd on %s: %s", address, error)
        return False
    return True


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
