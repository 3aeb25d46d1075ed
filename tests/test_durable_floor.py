"""The uplink benchmarks' floor: every byte hashed, written and fsynced, a file a segment."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from bench.durable_floor import DurableFloor


def test_finish_returns_once_every_byte_is_hashed_written_and_fsynced(tmp_path: Path) -> None:
    payloads = [os.urandom(size) for size in (400, 700, 300, 900, 50)]
    floor = DurableFloor(tmp_path / "floor", segment_bytes=1000)
    try:
        for payload in payloads:
            floor.take(payload)
        floor.finish()
        whole = b"".join(payloads)
        assert floor.synced_bytes == len(whole)
        # files are cut once they reach 1000 bytes: 400+700, 300+900, then 50 at finish
        assert floor.digests == [
            hashlib.sha256(whole[:1100]).digest(),
            hashlib.sha256(whole[1100:2300]).digest(),
            hashlib.sha256(whole[2300:]).digest(),
        ]
        assert list((tmp_path / "floor").iterdir()) == []  # each removed once fsynced
        floor.take(b"more")
        floor.finish()
        assert floor.synced_bytes == len(whole) + 4
        assert floor.digests[-1] == hashlib.sha256(b"more").digest()
    finally:
        floor.close()


def test_finish_with_nothing_taken_returns_at_once(tmp_path: Path) -> None:
    floor = DurableFloor(tmp_path)
    floor.close()
    assert (floor.synced_bytes, floor.digests) == (0, [])
