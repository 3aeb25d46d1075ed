"""Fixtures for the trust core: keys and runs of sealed segments."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from evidence.hashing import ZERO_DIGEST
from evidence.keys import BadgeIdentity, CustodianPrivateKey, HpkeSuite
from evidence.segment import SealedSegment, SegmentFacts, seal_segment

CODEC: dict[str, str | int] = {
    "container": "mpegts",
    "video_codec": "h264",
    "width": 1920,
    "height": 1080,
    "fps_num": 30,
    "fps_den": 1,
}
SEGMENT_NS = 2_000_000_000


@pytest.fixture(scope="session")
def identity() -> BadgeIdentity:
    """A badge identity shared by the trust-core tests."""
    return BadgeIdentity.generate("badge-007")


@pytest.fixture(scope="session")
def custodian() -> CustodianPrivateKey:
    """A custodian key (default suite) shared by the trust-core tests."""
    return CustodianPrivateKey.generate()


@pytest.fixture(scope="session")
def hybrid_custodian() -> CustodianPrivateKey:
    """A custodian key for the ML-KEM-768 + X25519 hybrid suite."""
    return CustodianPrivateKey.generate(HpkeSuite.MLKEM768_X25519)


def facts_for(seq: int, previous: bytes, boot: int = 1, mono_offset_ns: int = 0) -> SegmentFacts:
    """Facts for the ``seq``-th two-second segment."""
    start = seq * SEGMENT_NS - mono_offset_ns
    return SegmentFacts(
        seq=seq,
        boot=boot,
        mono_start_ns=start,
        mono_end_ns=start + SEGMENT_NS,
        wall_start_ns=1_790_000_000_000_000_000 + seq * SEGMENT_NS,
        wall_end_ns=1_790_000_000_000_000_000 + (seq + 1) * SEGMENT_NS,
        codec=CODEC,
        previous_header_sha256=previous,
    )


SealRun = Callable[[int], list[SealedSegment]]


@pytest.fixture(scope="session")
def seal_run(identity: BadgeIdentity, custodian: CustodianPrivateKey) -> SealRun:
    """Seal a chained run of ``count`` small random segments."""

    def run(count: int) -> list[SealedSegment]:
        sealed: list[SealedSegment] = []
        previous = ZERO_DIGEST
        for seq in range(count):
            segment = seal_segment(
                os.urandom(2048), facts_for(seq, previous), identity, custodian.public_key
            )
            previous = segment.header.digest()
            sealed.append(segment)
        return sealed

    return run
