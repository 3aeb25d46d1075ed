"""Reassembly of chunked segments on disk: order, repeats, disagreements, restarts, timeouts."""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import replace
from pathlib import Path

import pytest

from evidence.errors import SegmentFormatError
from evidence.hashing import sha256
from evidence.messages import SegmentChunk
from evidence.segment import SegmentStream, StreamResult
from gateway.errors import Reason, RejectedMessageError
from gateway.intake.reassembly import DEFAULT_TIMEOUT_NS, PartialSegment, Reassembly

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


def test_chunks_in_order_carry_the_stream_of_what_was_written(reassembly: Reassembly) -> None:
    data = os.urandom(4500)
    chunks = chunks_of(data)
    progress = [reassembly.add(chunk) for chunk in (chunks[0], chunks[1], chunks[1], *chunks[2:])]
    assert [p.stream for p in progress[:-1]] == [None] * (len(progress) - 1)
    stream = progress[-1].stream
    assert progress[-1].complete and isinstance(stream, SegmentStream)
    assert (stream.sealed_sha256(), stream.size) == (sha256(data), len(data))
    handed = progress[-1].for_handoff()  # what crosses to the store process
    assert isinstance(handed.stream, StreamResult)
    assert handed.stream.sealed_sha256() == sha256(data)
    crossed = pickle.loads(pickle.dumps(handed))  # noqa: S301 - bytes made just above
    assert crossed.path == handed.path and crossed.stream.sealed_sha256() == sha256(data)
    with pytest.raises(SegmentFormatError, match="bad magic"):  # random bytes: no segment
        crossed.stream.finish()


def test_chunks_out_of_order_leave_the_stream_to_the_caller(reassembly: Reassembly) -> None:
    chunks = chunks_of(os.urandom(3000))
    for chunk in (chunks[0], chunks[2]):
        reassembly.add(chunk)
    done = reassembly.add(chunks[1])
    assert done.complete and done.stream is None


def test_a_partial_resumed_by_a_new_reassembly_leaves_the_stream_to_the_caller(
    tmp_path: Path, clock: Clock
) -> None:
    chunks = chunks_of(os.urandom(3000))
    Reassembly(tmp_path / "partial", clock=clock).add(chunks[0])
    restarted = Reassembly(tmp_path / "partial", clock=clock)
    restarted.add(chunks[1])
    done = restarted.add(chunks[2])
    assert done.complete and done.stream is None


def test_a_chunk_already_received_is_compared_not_written(reassembly: Reassembly) -> None:
    data = os.urandom(2500)
    chunks = chunks_of(data)
    for chunk in chunks:
        done = reassembly.add(chunk)
    os.utime(done.path, ns=(0, 0))  # any write would move the modification time
    assert done.stream is not None and done.stream.sealed_sha256() == sha256(data)
    again = reassembly.add(chunks[1])
    # the in-order stream went with the completed partial: a repeat reads the file instead
    assert again.complete and again.stream is None
    assert done.path.stat().st_mtime_ns == 0 and done.path.read_bytes() == data
    with pytest.raises(RejectedMessageError) as refused:
        reassembly.add(replace(chunks[1], data=bytes(len(chunks[1].data))))
    assert refused.value.reason is Reason.CONFLICT


def test_a_stale_partial_is_handed_over_before_the_chunk_starts_afresh(
    reassembly: Reassembly, clock: Clock
) -> None:
    chunks = chunks_of(os.urandom(3000))
    reassembly.add(chunks[0])
    handed: list[tuple[int, int]] = []

    def quarantine(stale: PartialSegment) -> None:
        handed.append((stale.seq, stale.received_bytes))
        reassembly.discard(stale.badge_id, stale.seq)

    assert reassembly.add(chunks[1], on_stale=quarantine).received_bytes == 2000
    assert handed == []
    clock.now_ns += DEFAULT_TIMEOUT_NS + 1
    assert reassembly.add(chunks[2], on_stale=quarantine).received_bytes == 1000
    assert handed == [(4, 2000)]


def test_a_sidecar_rewritten_shorter_still_reads_back(tmp_path: Path, clock: Clock) -> None:
    data = os.urandom(5000)
    chunks = chunks_of(data)
    first = Reassembly(tmp_path / "partial", clock=clock)
    for chunk in (chunks[0], chunks[2], chunks[4]):
        first.add(chunk)
    sidecar = first.data_path("badge-a", 4).with_suffix(".json")
    long_size = sidecar.stat().st_size
    first.add(chunks[1])  # three ranges become two: the sidecar's text gets shorter
    assert json.loads(sidecar.read_text())["ranges"] == [[0, 3000], [4000, 5000]]
    assert sidecar.stat().st_size == long_size  # blank-padded in place, not truncated
    restarted = Reassembly(tmp_path / "partial", clock=clock)
    done = restarted.add(chunks[3])
    assert done.complete and done.path.read_bytes() == data


def test_only_the_next_chunk_in_order_carries_on_a_partial(
    reassembly: Reassembly, clock: Clock
) -> None:
    chunks = chunks_of(os.urandom(3000))
    assert not reassembly.continues(chunks[0])  # nothing begun: the first chunk is checked
    reassembly.add(chunks[0])
    assert reassembly.continues(chunks[1])
    assert not reassembly.continues(chunks[0]) and not reassembly.continues(chunks[2])
    reassembly.add(chunks[1])
    restarted = Reassembly(reassembly.directory, clock=clock)
    assert not restarted.continues(chunks[2])  # begun by another: checked again
    reassembly.add(chunks[2])
    assert not any(reassembly.continues(chunk) for chunk in chunks)  # complete
