"""A queue bounded by bytes as well as by items, between the badge's pipeline threads.

A count alone does not bound memory: eight 1080p BGR frames are 50 MB, eight 720p ones
22 MB, and a queue grows to its bound exactly when the encoder or the flash lags, which on
a shared CPU is often. Each queue here has a byte budget (what its items hold, measured by
the ``size`` function it is given) and an item cap. One item larger than the whole budget is
still taken when the queue is empty, so nothing is refused forever; otherwise an item that
would pass the budget waits (``put``) or is refused (``put_nowait``), and the caller counts
the drop as it did for a full queue.

The API is the part of :class:`queue.Queue` the pipeline uses, with the same exceptions.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

_T = TypeVar("_T")


class ByteBoundedQueue(Generic[_T]):
    """FIFO of at most ``max_items`` items and ``max_bytes`` bytes (see the module note)."""

    def __init__(self, max_items: int, max_bytes: int, size: Callable[[_T], int]) -> None:
        """Bound by ``max_items`` and ``max_bytes``, an item weighing ``size(item)`` bytes."""
        if max_items < 1 or max_bytes < 1:
            raise ValueError(f"queue bounds must be positive, not {max_items}, {max_bytes}")
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._size = size
        self._items: deque[tuple[_T, int]] = deque()
        self._bytes = 0
        self._peak_bytes = 0
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)

    def _fits(self, weight: int) -> bool:
        if not self._items:
            return True
        return len(self._items) < self.max_items and self._bytes + weight <= self.max_bytes

    def _append(self, item: _T, weight: int) -> None:
        self._items.append((item, weight))
        self._bytes += weight
        self._peak_bytes = max(self._peak_bytes, self._bytes)
        self._not_empty.notify()

    def put_nowait(self, item: _T) -> None:
        """Queue ``item`` now, or raise :class:`queue.Full`."""
        weight = self._size(item)
        with self._lock:
            if not self._fits(weight):
                raise queue.Full
            self._append(item, weight)

    def put(self, item: _T, timeout: float | None = None) -> None:
        """Queue ``item``, waiting up to ``timeout`` seconds for room (:class:`queue.Full`)."""
        weight = self._size(item)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._not_full:
            while not self._fits(weight):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise queue.Full
                self._not_full.wait(remaining)
            self._append(item, weight)

    def get(self, timeout: float | None = None) -> _T:
        """The oldest item, waiting up to ``timeout`` seconds (:class:`queue.Empty`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._not_empty:
            while not self._items:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise queue.Empty
                self._not_empty.wait(remaining)
            item, weight = self._items.popleft()
            self._bytes -= weight
            self._not_full.notify_all()
            return item

    def get_nowait(self) -> _T:
        """The oldest item now, or :class:`queue.Empty`."""
        return self.get(timeout=0)

    def empty(self) -> bool:
        """Whether nothing is queued now."""
        with self._lock:
            return not self._items

    def qsize(self) -> int:
        """Items queued now."""
        with self._lock:
            return len(self._items)

    @property
    def nbytes(self) -> int:
        """Bytes queued now."""
        with self._lock:
            return self._bytes

    @property
    def peak_bytes(self) -> int:
        """The most bytes ever queued at once."""
        with self._lock:
            return self._peak_bytes
