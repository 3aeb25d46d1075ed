"""Sealed two-second segments that continue a ring's chain, as the badge's sealer makes them."""

from __future__ import annotations

import os

from badge.ring import Ring, StoredSegment
from evidence.keys import BadgeIdentity, CustodianPrivateKey
from evidence.segment import SealedSegment, SegmentFacts, seal_segment

SEGMENT_NS = 2_000_000_000
WALL_START_NS = 1_790_000_000_000_000_000
CODEC: dict[str, str | int] = {
    "container": "mpegts",
    "video_codec": "h264",
    "width": 320,
    "height": 240,
    "fps_num": 30,
    "fps_den": 1,
}


class Recorder:
    """Seals two-second segments of random bytes that continue a ring's chain."""

    def __init__(self, identity: BadgeIdentity, custodian: CustodianPrivateKey) -> None:
        self.identity = identity
        self.custodian = custodian
        self.plaintexts: dict[int, bytes] = {}

    def seal(self, ring: Ring, index: int, size: int = 1000) -> SealedSegment:
        """Seal the ``index``-th segment of this boot (mono clock from 0) for ``ring``."""
        data = os.urandom(size)
        facts = SegmentFacts(
            seq=ring.next_seq,
            boot=ring.boot,
            mono_start_ns=index * SEGMENT_NS,
            mono_end_ns=(index + 1) * SEGMENT_NS,
            wall_start_ns=WALL_START_NS + index * SEGMENT_NS,
            wall_end_ns=WALL_START_NS + (index + 1) * SEGMENT_NS,
            codec=CODEC,
            previous_header_sha256=ring.last_header_digest,
        )
        sealed = seal_segment(data, facts, self.identity, self.custodian.public_key)
        self.plaintexts[facts.seq] = data
        return sealed

    def store(
        self, ring: Ring, count: int, first_index: int = 0, size: int = 1000
    ) -> list[StoredSegment]:
        """Seal and store ``count`` segments, the first the ``first_index``-th of this boot."""
        return [
            ring.store(self.seal(ring, index, size))
            for index in range(first_index, first_index + count)
        ]
