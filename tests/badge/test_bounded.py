"""The byte-bounded queue between the badge's pipeline threads."""

from __future__ import annotations

import queue
import threading
import time

import pytest

from badge.bounded import ByteBoundedQueue


def sized(max_items: int, max_bytes: int) -> ByteBoundedQueue[bytes]:
    return ByteBoundedQueue(max_items, max_bytes, len)


def test_the_byte_budget_refuses_before_the_item_cap() -> None:
    q = sized(8, 10)
    q.put_nowait(b"x" * 4)
    q.put_nowait(b"x" * 6)
    with pytest.raises(queue.Full):
        q.put_nowait(b"x")  # 11 bytes would pass the budget; only 2 of 8 items are queued
    assert (q.qsize(), q.nbytes) == (2, 10)
    assert q.get() == b"x" * 4
    q.put_nowait(b"y" * 4)
    assert q.nbytes == 10 and q.peak_bytes == 10


def test_the_item_cap_still_holds_for_small_items() -> None:
    q = sized(2, 1000)
    q.put_nowait(b"a")
    q.put_nowait(b"b")
    with pytest.raises(queue.Full):
        q.put_nowait(b"c")


def test_an_item_over_the_whole_budget_passes_an_empty_queue_only() -> None:
    q = sized(8, 10)
    q.put_nowait(b"z" * 50)
    with pytest.raises(queue.Full):
        q.put_nowait(b"z" * 50)
    assert q.get_nowait() == b"z" * 50 and q.empty()
    with pytest.raises(queue.Empty):
        q.get_nowait()


def test_put_waits_for_room_and_times_out_without_it() -> None:
    q = sized(8, 10)
    q.put(b"x" * 10)
    started = time.monotonic()
    with pytest.raises(queue.Full):
        q.put(b"y", timeout=0.1)
    assert time.monotonic() - started >= 0.1
    threading.Timer(0.1, q.get).start()
    q.put(b"y", timeout=5)  # room made by the consumer
    assert q.get(timeout=1) == b"y"


def test_get_waits_for_an_item() -> None:
    q = sized(8, 10)
    threading.Timer(0.05, q.put_nowait, args=(b"late",)).start()
    assert q.get(timeout=5) == b"late"
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        sized(0, 10)
