"""Reassembly: chunks of a sealed segment written straight to a partial file until it is whole.

Each (badge, seq) being received has ``<dir>/<badge>/<seq>.part`` (the bytes, each chunk
written at its offset) and ``<seq>.json`` (what the first chunk declared: total size,
SHA-256 of the sealed segment, chunk count, incident; which byte ranges have arrived; when
the last chunk came). Memory use is one chunk at a time, whatever the segment's size.

A chunk that repeats bytes already received is accepted if it carries the same bytes (a
resend or a redelivery), refused if it carries different ones, and never written again; a
chunk declaring another total size, SHA-256 or chunk count than the partial's first chunk
is refused. A partial that sees no chunk for ``timeout_ns`` is handed back by ``expired``
(or ``stale``) for the caller to move into quarantine; the next chunk then starts the
segment afresh.

While a segment's chunks come in order (the normal case), they also go through an
``evidence.segment.SegmentStream`` as they are written: it hashes the whole file and the
ciphertext and keeps the header and signature, so a complete partial carries everything
its checks need (``stream``) and nobody reads the file back. Chunks out of order, or a
partial begun by an earlier process, leave it None: the caller streams the file from disk.

Partial files are not fsynced: nothing is receipted until the whole segment has been
checked and stored in the vault, so a partial lost to a power cut is simply sent again.
The sidecar is rewritten in place by one small write (blank-padded, never truncated or
renamed over, which on ext4 would start a flush of it on every chunk): a killed process
leaves the old or the new one, and one torn by a power cut reads as no partial, or at
worst names bytes that never came, which the SHA-256 check of the whole segment refuses.
The state lives on disk, not in this object, so a restarted gateway carries on where it
stopped. Two processes must not receive chunks of one segment at the same time
(decision 0701).
"""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from evidence.durable import fsync_directory
from evidence.identifiers import validate_badge_id
from evidence.messages import SegmentChunk
from evidence.segment import SegmentStream, StreamResult
from gateway.errors import Reason, RejectedMessageError

DEFAULT_TIMEOUT_NS = 10 * 60 * 1_000_000_000
"""docs/protocol.md: a partial segment with no new chunk for 10 minutes goes to quarantine."""


@dataclass(frozen=True)
class PartialSegment:
    """Where a segment's reassembly stands."""

    badge_id: str
    seq: int
    incident_id: str
    path: Path
    total_size: int
    sealed_sha256: bytes
    received_bytes: int
    last_chunk_wall_ns: int
    stream: SegmentStream | StreamResult | None = None
    """Every byte written, in order, when complete and every chunk came in order; else None.
    (A StreamResult when handed to the store process: see ``for_handoff``.)"""

    @property
    def complete(self) -> bool:
        """True when every byte of the segment has arrived."""
        return self.received_bytes == self.total_size

    def for_handoff(self) -> PartialSegment:
        """This partial with its stream's findings as plain values, to send to another
        process (pickled: hash objects cannot be)."""
        if isinstance(self.stream, SegmentStream):
            return replace(self, stream=self.stream.result())
        return self


@dataclass
class _State:
    """The sidecar's contents."""

    incident: str
    total_size: int
    sealed_sha256: bytes
    count: int
    ranges: list[tuple[int, int]]
    first_chunk_wall_ns: int
    last_chunk_wall_ns: int

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "incident": self.incident,
                "total_size": self.total_size,
                "sealed_sha256": self.sealed_sha256.hex(),
                "count": self.count,
                "ranges": [list(span) for span in self.ranges],
                "first_chunk_wall_ns": self.first_chunk_wall_ns,
                "last_chunk_wall_ns": self.last_chunk_wall_ns,
            }
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> _State:
        fields = json.loads(data)
        return cls(
            incident=str(fields["incident"]),
            total_size=int(fields["total_size"]),
            sealed_sha256=bytes.fromhex(fields["sealed_sha256"]),
            count=int(fields["count"]),
            ranges=[(int(start), int(end)) for start, end in fields["ranges"]],
            first_chunk_wall_ns=int(fields["first_chunk_wall_ns"]),
            last_chunk_wall_ns=int(fields["last_chunk_wall_ns"]),
        )

    @property
    def received(self) -> int:
        return sum(end - start for start, end in self.ranges)


class _InOrder:
    """A partial's bytes from offset 0 up to ``end``, streamed as they were written."""

    def __init__(self, where: str) -> None:
        self.stream = SegmentStream(where)
        self.end = 0

    def extend(self, offset: int, data: bytes) -> bool:
        """Take the bytes ``data`` written at ``offset``; False if they leave a gap."""
        if offset > self.end:
            return False
        skip = self.end - offset  # bytes already taken, and checked equal by the overlap test
        if skip < len(data):
            self.stream.update(memoryview(data)[skip:])
            self.end = offset + len(data)
        return True


class Reassembly:
    """Partial segments on disk, keyed by (badge, seq)."""

    def __init__(
        self,
        directory: Path,
        *,
        timeout_ns: int = DEFAULT_TIMEOUT_NS,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        """Keep partial segments under ``directory`` (created, mode 0700)."""
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.timeout_ns = timeout_ns
        self._clock = clock
        self._in_order: dict[Path, _InOrder] = {}
        """Streams of partials this object is receiving in order (lost on restart: harmless)."""

    def data_path(self, badge_id: str, seq: int) -> Path:
        """The partial file of segment ``seq`` of ``badge_id``."""
        return self.directory / validate_badge_id(badge_id) / f"{int(seq)}.part"

    def add(
        self, chunk: SegmentChunk, *, on_stale: Callable[[PartialSegment], None] | None = None
    ) -> PartialSegment:
        """Write ``chunk`` into its partial segment and say how far the segment has come.

        A partial that has timed out is first handed to ``on_stale`` (which quarantines and
        discards it), so the chunk starts the segment afresh. Raises RejectedMessageError
        (``conflict``) for a chunk that disagrees with what the partial already holds or
        declared, and (``malformed``) for an empty chunk.
        """
        if not chunk.data:
            raise _refusal(Reason.MALFORMED, chunk, "carries no data")
        now = self._clock()
        path = self.data_path(chunk.badge, chunk.seq)
        state = self._load(path)
        if (
            state is not None
            and on_stale is not None
            and now - state.last_chunk_wall_ns > self.timeout_ns
        ):
            on_stale(self._partial(chunk.badge, chunk.seq, path, state))
            state = self._load(path)
        if state is None:
            path.parent.mkdir(mode=0o700, exist_ok=True)
            path.unlink(missing_ok=True)  # bytes left without a sidecar by a crash
            state = _State(
                chunk.incident, chunk.total_size, chunk.sealed_sha256, chunk.count, [], now, now
            )
            self._in_order[path] = _InOrder(f"segment {chunk.seq} from badge {chunk.badge}")
        elif (state.total_size, state.sealed_sha256, state.count) != (
            chunk.total_size,
            chunk.sealed_sha256,
            chunk.count,
        ):
            raise _refusal(
                Reason.CONFLICT,
                chunk,
                "declares another size, SHA-256 or chunk count than the partial segment "
                "already being received",
            )
        new_bytes = self._write(path, chunk, state)
        self._follow(path, chunk)
        if new_bytes:
            state.ranges = _merge([*state.ranges, (chunk.offset, chunk.offset + len(chunk.data))])
        state.last_chunk_wall_ns = now
        _overwrite(_sidecar(path), state.to_json())
        stream = self._complete_stream(path, state)
        return self._partial(chunk.badge, chunk.seq, path, state, stream)

    def _write(self, path: Path, chunk: SegmentChunk, state: _State) -> bool:
        """Write the chunk's bytes at its offset, after checking any overlap agrees.

        A chunk whose bytes have all been received is compared, not written (the file may
        already be in the vault); return whether it brought any new bytes.
        """
        start, end = chunk.offset, chunk.offset + len(chunk.data)
        overlaps = [
            (max(start, covered_start), min(end, covered_end))
            for covered_start, covered_end in state.ranges
            if max(start, covered_start) < min(end, covered_end)
        ]
        new_bytes = sum(high - low for low, high in overlaps) < end - start
        access = os.O_RDWR | os.O_CREAT if new_bytes else os.O_RDONLY
        descriptor = os.open(path, access | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            for low, high in overlaps:
                if os.pread(descriptor, high - low, low) != chunk.data[low - start : high - start]:
                    raise _refusal(
                        Reason.CONFLICT,
                        chunk,
                        f"differs from bytes {low}..{high} already received for this segment",
                    )
            view = memoryview(chunk.data) if new_bytes else memoryview(b"")
            position = start
            while view:
                written = os.pwrite(descriptor, view, position)
                view, position = view[written:], position + written
        finally:
            os.close(descriptor)
        return new_bytes

    def _follow(self, path: Path, chunk: SegmentChunk) -> None:
        """Extend the partial's in-order stream with a chunk just taken; drop it at a gap."""
        in_order = self._in_order.get(path)
        if in_order is not None and not in_order.extend(chunk.offset, chunk.data):
            del self._in_order[path]

    def _complete_stream(self, path: Path, state: _State) -> SegmentStream | None:
        """The in-order stream of a complete partial, if every byte went through it; it is
        then forgotten here (whoever stores the segment holds it now)."""
        in_order = self._in_order.get(path)
        if (
            in_order is None
            or in_order.end != state.total_size
            or state.received != state.total_size
        ):
            return None
        del self._in_order[path]
        return in_order.stream

    def continues(self, chunk: SegmentChunk) -> bool:
        """Whether ``chunk`` carries on, in order, a partial this object is receiving: one
        that began here with a first chunk its caller accepted and is not complete yet."""
        in_order = self._in_order.get(self.data_path(chunk.badge, chunk.seq))
        return (
            in_order is not None
            and 0 < in_order.end == chunk.offset
            and in_order.end < chunk.total_size
        )

    def stale(self, badge_id: str, seq: int) -> PartialSegment | None:
        """The partial segment ``seq`` of ``badge_id`` if it has timed out, else None.

        Call it before ``add``: a timed-out partial goes to quarantine and the chunk then
        starts the segment afresh.
        """
        path = self.data_path(badge_id, seq)
        state = self._load(path)
        if state is None or self._clock() - state.last_chunk_wall_ns <= self.timeout_ns:
            return None
        return self._partial(badge_id, seq, path, state)

    def discard(self, badge_id: str, seq: int, *, durably: bool = True) -> None:
        """Forget a partial segment (after it was stored, or moved to quarantine).

        ``durably`` fsyncs the directory so that a power cut cannot bring the names back.
        A stored segment's partial (the vault's file under a second name) is removed
        without that wait: if a power cut brings it back, the sweep finds its segment
        stored and removes it again (``Intake.expire_partials``).
        """
        path = self.data_path(badge_id, seq)
        self.discard_path(path)
        if durably and path.parent.is_dir():
            fsync_directory(path.parent)

    def expired(self) -> list[PartialSegment]:
        """Partial segments that have seen no chunk for longer than the timeout."""
        now = self._clock()
        stale = []
        for sidecar in sorted(self.directory.glob("*/*.json")):
            if not sidecar.stem.isdigit():
                continue  # not ours
            path = sidecar.with_suffix(".part")
            state = self._load(path)
            if state is not None and now - state.last_chunk_wall_ns > self.timeout_ns:
                stale.append(self._partial(sidecar.parent.name, int(sidecar.stem), path, state))
        return stale

    def _load(self, path: Path) -> _State | None:
        """The partial's state, or None when there is no (usable) partial."""
        try:
            state = _State.from_json(_sidecar(path).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            # a sidecar torn by a crash: start over, the badge sends every chunk again
            self.discard_path(path)
            return None
        if not path.exists():
            _sidecar(path).unlink(missing_ok=True)
            return None
        return state

    def discard_path(self, path: Path) -> None:
        """Remove a partial file and its sidecar by the partial file's path."""
        self._in_order.pop(path, None)
        path.unlink(missing_ok=True)
        _sidecar(path).unlink(missing_ok=True)

    @staticmethod
    def _partial(
        badge_id: str, seq: int, path: Path, state: _State, stream: SegmentStream | None = None
    ) -> PartialSegment:
        return PartialSegment(
            badge_id=badge_id,
            seq=seq,
            incident_id=state.incident,
            path=path,
            total_size=state.total_size,
            sealed_sha256=state.sealed_sha256,
            received_bytes=state.received,
            last_chunk_wall_ns=state.last_chunk_wall_ns,
            stream=stream,
        )


def _refusal(reason: Reason, chunk: SegmentChunk, what: str) -> RejectedMessageError:
    return RejectedMessageError(
        reason,
        f"chunk {chunk.index} of segment {chunk.seq} {what}",
        subject="segment",
        key=str(chunk.seq),
    )


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sort and join overlapping or touching byte ranges."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _overwrite(path: Path, data: bytes) -> None:
    """Write ``data`` at the start of ``path`` in one write, blanking the rest of what it held
    (JSON allows trailing blanks); no fsync, no rename (see the module doc)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        padded = data.ljust(os.fstat(descriptor).st_size)
        if os.pwrite(descriptor, padded, 0) != len(padded):
            raise OSError(errno.ENOSPC, f"short write to {path}")
    finally:
        os.close(descriptor)
