"""Runs a badge uplink in its own process until it is killed, so a test can SIGKILL it.

``python -m tests.badge.uplink_process BUNDLE RING OUTBOX RECEIPTS BANDWIDTH``
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

from badge.heartbeat import read_heartbeat
from badge.outbox import Outbox
from badge.receipts import ReceiptStore
from badge.ring import Ring
from badge.uplink import Uplink
from evidence.bundle import EnrolmentBundle

RING_MAX_BYTES = 200_000_000
PRE_ROLL_NS = 60_000_000_000


def main(argv: list[str]) -> int:
    """Start the uplink and wait forever (the test kills this process)."""
    logging.basicConfig(level=logging.INFO, format="uplink-process %(levelname)s %(message)s")
    bundle_dir, ring_dir, outbox_path, receipts_path, bandwidth = argv
    bundle = EnrolmentBundle.load(Path(bundle_dir))
    ring = Ring.open(Path(ring_dir), pre_roll_ns=PRE_ROLL_NS, max_bytes=RING_MAX_BYTES)
    outbox = Outbox(Path(outbox_path))
    uplink = Uplink(
        bundle.identity,
        bundle,
        ring,
        outbox,
        receipts=ReceiptStore(Path(receipts_path)),
        tls=True,
        heartbeat=lambda: read_heartbeat(bundle.identity.badge_id, ring, outbox),
        chunk_bytes=64 * 1024,
        bandwidth_bytes_per_s=int(bandwidth),
        resend_seconds=2.0,
    )
    uplink.start()
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
