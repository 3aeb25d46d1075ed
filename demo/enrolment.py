"""Enrolment on one machine: the gateway's and the badge's halves joined without a network.

Benchmarks and tests that need an enrolled badge use this; it runs the real code of both
halves (``gateway.enrolment`` issues the code and accepts the request, ``badge.enrolment``
makes the key and writes the bundle) and hands the request across in memory instead of
over HTTP. The demo itself enrols over HTTP with the two commands (demo/run.py).
"""

from __future__ import annotations

from pathlib import Path

from badge.enrolment import enrol
from gateway.datadir import GatewayDataDir
from gateway.enrolment.enrolment import accept_request, issue_code
from gateway.enrolment.nonces import NonceBook
from gateway.storage.badges import EnrolledBadge


class LocalTransport:
    """The badge's transport, answered by the gateway's own functions in this process."""

    def __init__(self, data_dir: GatewayDataDir) -> None:
        """Answer for the gateway in ``data_dir``."""
        self.data_dir = data_dir
        self.nonces = NonceBook()

    def nonce(self) -> bytes:
        """A nonce from the gateway's book."""
        return self.nonces.issue()

    def submit(self, request: bytes) -> bytes:
        """The gateway's sealed answer to ``request``."""
        return accept_request(self.data_dir, request, self.nonces).answer


def enroll_badge(
    data_dir: GatewayDataDir,
    badge_id: str,
    bundle_dir: Path,
    *,
    wearer: str = "",
    location: str = "",
    broker_host: str = "localhost",
    broker_port: int = 8883,
    operator: str = "cli",
    rotate: bool = False,
) -> EnrolledBadge:
    """Issue a code for ``badge_id``, enrol a key made in ``bundle_dir`` with it; the record."""
    issued = issue_code(
        data_dir,
        badge_id,
        wearer=wearer,
        location=location,
        broker_host=broker_host,
        broker_port=broker_port,
        operator=operator,
        rotate=rotate,
    )
    enrol(bundle_dir, badge_id, issued.code, LocalTransport(data_dir), rotate=rotate)
    storage = data_dir.storage()
    try:
        return storage.badges.get(badge_id)
    finally:
        storage.close()
