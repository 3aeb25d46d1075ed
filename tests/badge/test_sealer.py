"""The sealer seals and stores in order, never blocks capture, and declares every drop."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from badge.errors import StorageFullError
from badge.media import CodecParameters, EncodedSegment
from badge.ring import Ring, StoredSegment
from badge.sealer import Sealer
from evidence.chain import check_chain
from evidence.hashing import ZERO_DIGEST
from evidence.keys import BadgeIdentity, CustodianPrivateKey
from evidence.segment import SealedSegment

SEGMENT_NS = 2_000_000_000
MINUTE_NS = 60_000_000_000
CODEC = CodecParameters("mpegts", "h264", 320, 240, 30, 1, "aac", 48_000, 1)
HEADER_SLACK = 16  # a header grows by a few bytes with larger counts (e.g. dropped frames)
WAIT = 10.0  # seconds; only a safety net against a hang, never a speed assertion


@pytest.fixture(scope="module")
def identity() -> BadgeIdentity:
    return BadgeIdentity.generate("ward-3-badge")


@pytest.fixture(scope="module")
def custodian() -> CustodianPrivateKey:
    return CustodianPrivateKey.generate()


def encoded(index: int, *, frames: int = 60, dropped: int = 0, size: int = 500) -> EncodedSegment:
    """A tiny stand-in for the ``index``-th two-second MPEG-TS segment."""
    return EncodedSegment(
        data=os.urandom(size),
        mono_start_ns=index * SEGMENT_NS,
        mono_end_ns=(index + 1) * SEGMENT_NS,
        wall_start_ns=1_790_000_000_000_000_000 + index * SEGMENT_NS,
        wall_end_ns=1_790_000_000_000_000_000 + (index + 1) * SEGMENT_NS,
        video_frames=frames,
        codec=CODEC,
        dropped_frames=dropped,
    )


def read_back(ring: Ring) -> list[SealedSegment]:
    return [SealedSegment.read(stored.path) for stored in ring.segments(0)]


class GatedRing(Ring):
    """A ring whose ``store`` waits until the test opens the gate: flash as slow as it gets."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.entered = threading.Event()
        self.gate = threading.Event()

    def store(self, segment: SealedSegment) -> StoredSegment:
        self.entered.set()
        assert self.gate.wait(WAIT), "the test never opened the gate"
        return super().store(segment)


def largest_size(directory: Path, identity: BadgeIdentity, custodian: CustodianPrivateKey) -> int:
    """The stored size of a segment late in a boot (larger clocks: the longest header)."""
    probe = Ring.open(directory, pre_roll_ns=MINUTE_NS, max_bytes=1 << 30)
    sealer = Sealer(identity, custodian.public_key, probe)
    sealer.start()
    sealer.submit(encoded(1000))
    assert sealer.stop(WAIT)
    return probe.segments(0)[0].size


def test_sealed_segments_are_stored_in_order_and_open(
    tmp_path: Path, identity: BadgeIdentity, custodian: CustodianPrivateKey
) -> None:
    ring = Ring.open(tmp_path, pre_roll_ns=MINUTE_NS, max_bytes=1 << 30)
    stored: list[StoredSegment] = []
    sealer = Sealer(identity, custodian.public_key, ring, on_stored=stored.append)
    sealer.start()
    segments = [encoded(index, dropped=index % 2) for index in range(5)]
    assert all(sealer.submit(segment) for segment in segments)
    assert sealer.stop(WAIT)

    assert [s.seq for s in stored] == [0, 1, 2, 3, 4]
    sealed = read_back(ring)
    for segment, original in zip(sealed, segments, strict=True):
        segment.verify(identity.signing_key.public_key)
        assert segment.open(custodian) == original.data
        header = segment.header
        assert header.boot == ring.boot
        assert (header.mono_start_ns, header.mono_end_ns) == (
            original.mono_start_ns,
            original.mono_end_ns,
        )
        assert (header.wall_start_ns, header.wall_end_ns) == (
            original.wall_start_ns,
            original.wall_end_ns,
        )
        assert header.codec == CODEC.as_header_fields()
        assert header.dropped_frames == original.dropped_frames
    assert check_chain([s.header for s in sealed], expected_previous=ZERO_DIGEST).intact
    stats = sealer.stats
    assert (stats.sealed, stats.dropped_segments, stats.dropped_frames) == (5, 0, 0)
    assert stats.queue_depth == 0 and stats.last_error is None


@pytest.mark.timeout(60)
def test_submit_never_blocks_and_drops_are_declared_in_the_next_header(
    tmp_path: Path,
    identity: BadgeIdentity,
    custodian: CustodianPrivateKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ring = GatedRing.open(tmp_path, pre_roll_ns=MINUTE_NS, max_bytes=1 << 30)
    sealer = Sealer(identity, custodian.public_key, ring, queue_size=2)
    sealer.start()
    assert sealer.submit(encoded(0))
    assert ring.entered.wait(WAIT)  # the sealer thread is now stuck in store()

    # With storage stuck, these calls must return at once: a blocking put would hang here.
    results = [sealer.submit(encoded(index, frames=50 + index)) for index in range(1, 5)]
    assert results == [True, True, False, False]
    during = sealer.stats
    assert (during.dropped_segments, during.dropped_frames, during.queue_depth) == (2, 53 + 54, 2)
    assert "sealing queue is full" in caplog.text

    ring.gate.set()
    assert sealer.stop(WAIT)
    headers = [segment.header for segment in read_back(ring)]
    assert [h.seq for h in headers] == [0, 1, 2]
    assert [h.mono_start_ns for h in headers] == [0, SEGMENT_NS, 2 * SEGMENT_NS]
    # Segment 0 was sealed before the drops; the next sealed one declares them.
    assert [h.dropped_frames for h in headers] == [0, 53 + 54, 0]
    assert check_chain(headers, expected_previous=ZERO_DIGEST).intact
    assert sealer.stats.sealed == 3


@pytest.mark.timeout(60)
def test_the_queue_is_bounded_in_bytes_not_only_in_segments(
    tmp_path: Path, identity: BadgeIdentity, custodian: CustodianPrivateKey
) -> None:
    """Large segments while the flash lags: the queue holds its byte budget, no more."""
    ring = GatedRing.open(tmp_path, pre_roll_ns=MINUTE_NS, max_bytes=1 << 30)
    sealer = Sealer(identity, custodian.public_key, ring, queue_size=8, queue_bytes=25_000)
    sealer.start()
    assert sealer.submit(encoded(0, size=10_000))
    assert ring.entered.wait(WAIT)  # stuck storing segment 0: the rest wait in the queue
    results = [sealer.submit(encoded(index, size=10_000)) for index in range(1, 5)]
    assert results == [True, True, False, False]  # a third would make 30,000 bytes
    during = sealer.stats
    assert (during.queue_depth, during.queue_bytes, during.dropped_segments) == (2, 20_000, 2)
    ring.gate.set()
    assert sealer.stop(WAIT)
    assert sealer.stats.queue_peak_bytes == 20_000 and sealer.stats.sealed == 3
    assert [h.dropped_frames for h in (s.header for s in read_back(ring))] == [0, 120, 0]


def test_storage_full_is_reported_and_the_chain_continues_without_a_gap(
    tmp_path: Path, identity: BadgeIdentity, custodian: CustodianPrivateKey
) -> None:
    size = largest_size(tmp_path / "probe", identity, custodian)

    max_bytes = 2 * size + HEADER_SLACK
    ring = Ring.open(tmp_path / "ring", pre_roll_ns=MINUTE_NS, max_bytes=max_bytes)
    ring.pin("incident-1", 0)
    errors: list[Exception] = []
    failed = threading.Event()

    def on_error(error: Exception) -> None:
        errors.append(error)
        failed.set()

    sealer = Sealer(identity, custodian.public_key, ring, on_error=on_error)
    sealer.start()
    for index in range(3):
        assert sealer.submit(encoded(index, frames=60, dropped=index))
    assert failed.wait(WAIT)
    assert isinstance(errors[0], StorageFullError)
    stats = sealer.stats
    assert (stats.sealed, stats.dropped_segments, stats.dropped_frames) == (2, 1, 60)
    assert stats.last_error is not None and "full" in stats.last_error
    assert ring.status().full

    ring.unpin("incident-1")  # the gateway receipted the incident
    assert sealer.submit(encoded(3, frames=60, dropped=1))
    assert sealer.stop(WAIT)
    headers = [segment.header for segment in read_back(ring)]
    assert [h.seq for h in headers] == [1, 2]  # seq 0 evicted for room; no seq was skipped
    assert headers[1].mono_start_ns == 3 * SEGMENT_NS
    # The lost segment's 60 frames and the 2 it declared, plus the new segment's own 1.
    assert headers[1].dropped_frames == 60 + 2 + 1
    assert check_chain(headers).intact
    assert not ring.status().full
    assert sealer.stats.sealed == 3


def test_stop_drains_the_queue_and_later_submissions_are_counted(
    tmp_path: Path, identity: BadgeIdentity, custodian: CustodianPrivateKey
) -> None:
    ring = Ring.open(tmp_path, pre_roll_ns=MINUTE_NS, max_bytes=1 << 30)
    sealer = Sealer(identity, custodian.public_key, ring)
    for index in range(4):
        assert sealer.submit(encoded(index))
    sealer.start()
    assert sealer.stop(WAIT)  # as on SIGTERM: what was queued is sealed, not lost
    assert [stored.seq for stored in ring.segments(0)] == [0, 1, 2, 3]

    assert not sealer.submit(encoded(4, frames=30))
    assert (sealer.stats.dropped_segments, sealer.stats.dropped_frames) == (1, 30)


def test_a_failing_callback_does_not_stop_the_sealer(
    tmp_path: Path, identity: BadgeIdentity, custodian: CustodianPrivateKey
) -> None:
    ring = Ring.open(tmp_path, pre_roll_ns=MINUTE_NS, max_bytes=1 << 30)

    def broken(stored: StoredSegment) -> None:
        raise RuntimeError(f"listener failed on {stored.seq}")

    sealer = Sealer(identity, custodian.public_key, ring, on_stored=broken)
    sealer.start()
    for index in range(3):
        sealer.submit(encoded(index))
    assert sealer.stop(WAIT)
    assert sealer.stats.sealed == 3


@pytest.mark.timeout(60)
def test_drops_carried_by_a_segment_that_failed_to_store_are_not_lost(
    tmp_path: Path, identity: BadgeIdentity, custodian: CustodianPrivateKey
) -> None:
    one_segment = largest_size(tmp_path / "probe", identity, custodian) + HEADER_SLACK
    ring = GatedRing.open(tmp_path / "ring", pre_roll_ns=MINUTE_NS, max_bytes=one_segment)
    ring.pin("incident-1", 0)
    stored: list[StoredSegment] = []
    failed = threading.Event()
    sealer = Sealer(
        identity,
        custodian.public_key,
        ring,
        queue_size=1,
        on_stored=stored.append,
        on_error=lambda _: failed.set(),
    )
    sealer.start()
    assert sealer.submit(encoded(0))
    assert ring.entered.wait(WAIT)
    assert sealer.submit(encoded(1, frames=40))
    assert not sealer.submit(encoded(2, frames=50, dropped=5))  # queue full: 55 undeclared
    ring.gate.set()
    assert failed.wait(WAIT)  # segment 1 carried the 55, then found the ring full

    ring.unpin("incident-1")
    assert sealer.submit(encoded(3, frames=60, dropped=2))
    assert sealer.stop(WAIT)
    headers = [segment.header for segment in stored]
    assert [h.seq for h in headers] == [0, 1]
    assert headers[1].mono_start_ns == 3 * SEGMENT_NS
    assert headers[1].dropped_frames == 55 + 40 + 2
    assert check_chain(headers, expected_previous=ZERO_DIGEST).intact
    assert (sealer.stats.dropped_segments, sealer.stats.dropped_frames) == (2, 90)
