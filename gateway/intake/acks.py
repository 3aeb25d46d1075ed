"""Acknowledgements in arrival order, whichever thread finishes a message first.

MQTT v5 requires a receiver to send its PUBACKs in the order the PUBLISH packets arrived
(MQTT-4.6.0-2). The intake finishes most messages on its own thread but hands a
completed segment to the store stage, which finishes it later; the acknowledgements of
the messages read in between must then wait for it. Each message takes a ticket in
arrival order (``take``); ``done`` marks one finished and sends every acknowledgement
from the oldest ticket up to the first that is not finished yet.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

_Message = TypeVar("_Message")


class OrderedAcks(Generic[_Message]):
    """Sends acknowledgements (``send(message)``) in the order messages took their tickets."""

    def __init__(self, send: Callable[[_Message], None]) -> None:
        """Acknowledge through ``send``, called with this object's lock held, in order."""
        self._send = send
        self._lock = threading.Lock()
        self._waiting: deque[tuple[int, _Message]] = deque()
        self._finished: set[int] = set()
        self._next_ticket = 0

    def take(self, message: _Message) -> int:
        """A ticket for ``message``, the next in arrival order."""
        with self._lock:
            ticket = self._next_ticket
            self._next_ticket += 1
            self._waiting.append((ticket, message))
            return ticket

    def done(self, ticket: int) -> None:
        """Mark ``ticket`` finished; send its acknowledgement and the finished ones after it
        once every earlier ticket is finished too. ``send`` errors propagate after the rest
        of the run is sent."""
        failure: Exception | None = None
        with self._lock:
            self._finished.add(ticket)
            while self._waiting and self._waiting[0][0] in self._finished:
                head, message = self._waiting.popleft()
                self._finished.discard(head)
                try:
                    self._send(message)
                except Exception as error:  # the broker resends it; the rest must still go
                    failure = failure or error
        if failure is not None:
            raise failure

    def waiting(self) -> int:
        """How many messages are not yet acknowledged."""
        with self._lock:
            return len(self._waiting)
