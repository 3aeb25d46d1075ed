"""Reassembly of chunked segments on disk: order, repeats, disagreements, restarts, timeouts."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from evidence.hashing import sha256
from evidence.messages import SegmentChunk
from gateway.errors import Reason, RejectedMessageError
from gateway.reassembly import DEFAULT_TIMEOUT_NS, Reassembly

CHUNK = 1000


class Clock:
    """Wall time for the reassembly, set by the test."""

    def __init__(self) -> None:
        self.now_ns = 1_800_000_000_000_000_000

    def __call__(self) -> int:
        return self.now_ns


def chunks_of(data: bytes, seq: int = 4) -> list[SegmentChunk]:
    count = -(-len(data) // CHUNK)
    return [
        SegmentChunk(
            "badge-a",
            "inc-1",
            seq,
            index,
            count,
            index * CHUNK,
            len(data),
            sha256(data),
            data[index * CHUNK : (index + 1) * CHUNK],
        )
        for index in range(count)
    ]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def reassembly(tmp_path: Path, clock: Clock) -> Reassembly:
    return Reassembly(tmp_path / "partial", clock=clock)


def test_chunks_in_any_order_make_the_segment(reassembly: Reassembly) -> None:
    data = os.urandom(4500)
    chunks = chunks_of(data)
    progress = [reassembly.add(chunk) for chunk in (chunks[3], chunks[0], chunks[4], chunks[1])]
    assert [p.received_bytes for p in progress] == [1000, 2000, 2500, 3500]
    assert not any(p.complete for p in progress)
    done = reassembly.add(chunks[2])
    assert done.complete and done.total_size == 4500 and done.incident_id == "inc-1"
    assert done.path.read_bytes() == data
    reassembly.discard("badge-a", 4)
    assert list(reassembly.directory.rglob("*.*")) == []


def test_a_repeated_chunk_changes_nothing(reassembly: Reassembly) -> None:
    data = os.urandom(2500)
    chunks = chunks_of(data)
    reassembly.add(chunks[0])
    again = reassembly.add(chunks[0])
    assert again.received_bytes == 1000
    for chunk in chunks[1:]:
        last = reassembly.add(chunk)
    assert last.complete and last.path.read_bytes() == data


def test_a_chunk_with_other_bytes_for_received_ones_is_a_conflict(
    reassembly: Reassembly,
) -> None:
    data = os.urandom(2500)
    first = chunks_of(data)[0]
    reassembly.add(first)
    with pytest.raises(RejectedMessageError) as refused:
        reassembly.add(replace(first, data=bytes(len(first.data))))
    assert refused.value.reason is Reason.CONFLICT
    assert reassembly.data_path("badge-a", 4).read_bytes() == first.data  # kept as it was


@pytest.mark.parametrize(
    "change",
    [{"total_size": 2600}, {"sealed_sha256": bytes(32)}, {"count": 4}],
    ids=["size", "sha256", "count"],
)
def test_a_chunk_declaring_another_segment_is_refused(
    reassembly: Reassembly, change: dict[str, object]
) -> None:
    chunks = chunks_of(os.urandom(2500))
    reassembly.add(chunks[0])
    with pytest.raises(RejectedMessageError) as refused:
        reassembly.add(replace(chunks[1], **change))  # type: ignore[arg-type]
    assert refused.value.reason is Reason.CONFLICT
    assert reassembly.add(chunks[1]).received_bytes == 2000


def test_an_empty_chunk_is_malformed(reassembly: Reassembly) -> None:
    chunk = replace(chunks_of(os.urandom(10))[0], data=b"")
    with pytest.raises(RejectedMessageError) as refused:
        reassembly.add(chunk)
    assert refused.value.reason is Reason.MALFORMED


def test_a_new_reassembly_continues_from_disk(tmp_path: Path, clock: Clock) -> None:
    data = os.urandom(3000)
    chunks = chunks_of(data)
    Reassembly(tmp_path / "partial", clock=clock).add(chunks[0])
    restarted = Reassembly(tmp_path / "partial", clock=clock)
    restarted.add(chunks[1])
    done = restarted.add(chunks[2])
    assert done.complete and done.path.read_bytes() == data


def test_a_torn_sidecar_starts_the_segment_afresh(reassembly: Reassembly) -> None:
    chunks = chunks_of(os.urandom(3000))
    reassembly.add(chunks[0])
    reassembly.data_path("badge-a", 4).with_suffix(".json").write_text('{"incid')
    assert reassembly.add(chunks[1]).received_bytes == 1000


def test_partials_time_out_after_ten_minutes_without_a_chunk(
    reassembly: Reassembly, clock: Clock
) -> None:
    chunks = chunks_of(os.urandom(3000))
    other = chunks_of(os.urandom(2000), seq=5)
    reassembly.add(chunks[0])
    clock.now_ns += DEFAULT_TIMEOUT_NS - 1
    reassembly.add(other[0])
    assert reassembly.expired() == [] and reassembly.stale("badge-a", 4) is None
    clock.now_ns += 2
    (stale,) = reassembly.expired()
    assert (stale.seq, stale.received_bytes) == (4, 1000)
    assert reassembly.stale("badge-a", 4) == stale
    assert reassembly.stale("badge-a", 5) is None
