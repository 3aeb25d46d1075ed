"""The sealer thread: seals each encoded segment and stores it in the ring; capture never waits."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from badge.bounded import ByteBoundedQueue
from badge.errors import BadgeError
from badge.media import EncodedSegment
from badge.ring import Ring, StoredSegment
from evidence.keys import BadgeIdentity, CustodianPublicKey
from evidence.segment import SegmentFacts, seal_segment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SealerStats:
    """What the sealer has done: segments sealed, segments and frames dropped, queue depth."""

    sealed: int
    dropped_segments: int
    dropped_frames: int
    queue_depth: int
    last_error: str | None
    queue_bytes: int = 0
    """Bytes of segments waiting to be sealed now."""
    queue_peak_bytes: int = 0
    """The most bytes ever waiting at once."""


_STOP = object()
"""Queued by :meth:`Sealer.stop` behind the last segment: the thread ends when it reaches it."""


class Sealer:
    """Seals segments on its own thread and stores them in the ring, in order.

    :meth:`submit` never blocks: when the queue is full the segment is dropped, counted, and
    its frames are declared in the next stored segment's ``dropped_frames``. A segment the
    ring cannot store (full of pinned footage) is dropped the same way; the sequence number
    is consumed only by a stored segment, so the chain shows no gap, only dropped frames.
    """

    def __init__(
        self,
        identity: BadgeIdentity,
        custodian_key: CustodianPublicKey,
        ring: Ring,
        *,
        queue_size: int = 8,
        queue_bytes: int = 16_000_000,
        on_stored: Callable[[StoredSegment], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        """Prepare a sealer for ``ring``; call :meth:`start` to run its thread."""
        if queue_size < 1 or queue_bytes < 1:
            raise BadgeError(
                f"sealer queue bounds must be at least 1, not {queue_size} items, "
                f"{queue_bytes} bytes"
            )
        self._identity = identity
        self._custodian_key = custodian_key
        self._ring = ring
        self._on_stored = on_stored
        self._on_error = on_error
        # bounded in bytes too: a lagging flash holds at most ``queue_bytes`` of segments
        self._queue: ByteBoundedQueue[object] = ByteBoundedQueue(
            queue_size, queue_bytes, _segment_bytes
        )
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._sealed = 0
        self._dropped_segments = 0
        self._dropped_frames = 0
        self._undeclared_frames = 0  # lost since the last stored segment, not yet in a header
        self._last_error: str | None = None

    def start(self) -> None:
        """Start the sealing thread."""
        with self._lock:
            if self._thread is not None:
                raise BadgeError("the sealer is already started")
            self._thread = threading.Thread(target=self._run, name="sealer", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Seal and store every queued segment, then end the thread.

        Segments submitted from now on are dropped (and counted). Returns False if the
        thread has not finished within ``timeout`` seconds (None: wait as long as it takes).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._stopping = True
            thread = self._thread
        if thread is None:
            return True
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            return False
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not thread.is_alive()

    def submit(self, segment: EncodedSegment) -> bool:
        """Queue ``segment`` for sealing; never blocks. False when it had to be dropped."""
        with self._lock:
            if not self._stopping:
                try:
                    self._queue.put_nowait(segment)
                    return True
                except queue.Full:
                    reason = "the sealing queue is full"
            else:
                reason = "the sealer is stopping"
        self._drop(segment, reason)
        return False

    @property
    def stats(self) -> SealerStats:
        """A snapshot of the counters."""
        with self._lock:
            return SealerStats(
                sealed=self._sealed,
                dropped_segments=self._dropped_segments,
                dropped_frames=self._dropped_frames,
                queue_depth=self._queue.qsize(),
                last_error=self._last_error,
                queue_bytes=self._queue.nbytes,
                queue_peak_bytes=self._queue.peak_bytes,
            )

    def _drop(self, segment: EncodedSegment, reason: str) -> None:
        """Count a lost segment; its frames (and those it declared) go in the next header."""
        with self._lock:
            self._dropped_segments += 1
            self._dropped_frames += segment.video_frames
            self._undeclared_frames += segment.video_frames + segment.dropped_frames
        log.warning(
            "dropped a %d-frame segment (mono %d..%d ns): %s",
            segment.video_frames,
            segment.mono_start_ns,
            segment.mono_end_ns,
            reason,
        )

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if isinstance(item, EncodedSegment):
                self._seal_and_store(item)

    def _seal_and_store(self, segment: EncodedSegment) -> None:
        with self._lock:
            carried = self._undeclared_frames
            self._undeclared_frames = 0
        try:
            sealed = seal_segment(
                segment.data, self._facts(segment, carried), self._identity, self._custodian_key
            )
            stored = self._ring.store(sealed)
        except Exception as error:  # the thread must outlive any one segment's failure
            with self._lock:
                self._undeclared_frames += carried
                self._last_error = str(error)
            self._drop(segment, f"it could not be sealed and stored: {error}")
            if not isinstance(error, BadgeError):
                log.exception("sealing failed unexpectedly")
            self._report(error)
            return
        with self._lock:
            self._sealed += 1
        if self._on_stored is not None:
            try:
                self._on_stored(stored)
            except Exception:
                log.exception("the on_stored callback failed for segment %d", stored.seq)

    def _facts(self, segment: EncodedSegment, carried_frames: int) -> SegmentFacts:
        return SegmentFacts(
            seq=self._ring.next_seq,
            boot=self._ring.boot,
            mono_start_ns=segment.mono_start_ns,
            mono_end_ns=segment.mono_end_ns,
            wall_start_ns=segment.wall_start_ns,
            wall_end_ns=segment.wall_end_ns,
            codec=segment.codec.as_header_fields(),
            previous_header_sha256=self._ring.last_header_digest,
            dropped_frames=segment.dropped_frames + carried_frames,
        )

    def _report(self, error: Exception) -> None:
        if self._on_error is None:
            return
        try:
            self._on_error(error)
        except Exception:
            log.exception("the on_error callback failed")


def _segment_bytes(item: object) -> int:
    return len(item.data) if isinstance(item, EncodedSegment) else 0
