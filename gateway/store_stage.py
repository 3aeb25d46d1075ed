"""The store stage: complete segments stored in order on a thread of their own.

Storing a segment is mostly waiting on the disk (its fsync, the vault directory's, the
database's commit) and then sending its receipt; the intake thread meanwhile can read and
reassemble the next segment's chunks (decision 1503). The stage owns a second Intake on
its own database connection, sharing the first's partial segments, and stores what it is
handed strictly in order. The intake thread asks it to catch up (``wait_stored``) before
anything that depends on what it stores. At most ``depth`` segments wait at once; beyond
that the intake thread waits, so memory stays bounded whatever the broker sends.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from gateway.intake import Intake
from gateway.reassembly import PartialSegment
from gateway.registry import EnrolledBadge

log = logging.getLogger(__name__)

DEPTH = 4
"""Segments handed over and not yet stored, at most (each is one file on disk)."""


@dataclass(frozen=True)
class _Handed:
    badge: EnrolledBadge
    partial: PartialSegment
    received: int
    ticket: int


class StoreStage:
    """Stores handed-over segments with ``storer`` on its own thread, in order."""

    def __init__(
        self, storer: Intake, finished: Callable[[int], None], *, depth: int = DEPTH
    ) -> None:
        """Store with ``storer``; call ``finished(ticket)`` after each segment is stored."""
        self._storer = storer
        self._finished = finished
        self._queue: queue.Queue[_Handed | None] = queue.Queue(depth)
        self._changed = threading.Condition()
        self._pending: Counter[tuple[str, int]] = Counter()
        self._thread = threading.Thread(target=self._run, name="intake-store", daemon=True)

    def start(self) -> None:
        """Start the stage's thread."""
        self._thread.start()

    def stop(self) -> None:
        """Store what was handed over, then end the thread and close the storer."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._storer.close()

    def is_alive(self) -> bool:
        """Whether the stage's thread is running."""
        return self._thread.is_alive()

    def hand_over(
        self, badge: EnrolledBadge, partial: PartialSegment, received: int, ticket: int
    ) -> None:
        """Queue ``partial`` to be stored after what was handed over before it."""
        with self._changed:
            self._pending[badge.badge_id, partial.seq] += 1
        self._queue.put(_Handed(badge, partial, received, ticket))

    def wait_stored(self, badge_id: str | None = None, seq: int | None = None) -> None:
        """Return once no handed-over segment matching ``badge_id`` and ``seq`` (None: any)
        waits to be stored."""

        def settled() -> bool:
            return not any(
                (badge_id is None or badge_id == badge) and (seq is None or seq == number)
                for badge, number in self._pending
            )

        with self._changed:
            self._changed.wait_for(settled)

    def _run(self) -> None:
        while (handed := self._queue.get()) is not None:
            self._storer.store(handed.badge, handed.partial, handed.received)  # never raises
            try:
                self._finished(handed.ticket)
            except Exception:  # the broker delivers it again; the store answers it again
                log.exception("could not acknowledge segment %d", handed.partial.seq)
            key = (handed.badge.badge_id, handed.partial.seq)
            with self._changed:
                self._pending[key] -= 1
                if self._pending[key] <= 0:
                    del self._pending[key]
                self._changed.notify_all()
