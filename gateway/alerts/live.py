"""The live alert channel: every stored alert, fanned out at once to whoever is watching.

The intake publishes each new ``AlertEvent`` here from its intake thread; the console's
alert screen (server-sent events) and anything else live subscribes. Publishing never
blocks: each subscriber has its own bounded queue, and one that falls behind loses its
oldest alerts, never silently: its next ``get`` returns an ``Overflow`` marker saying how
many it lost, so it can reload the list from the database. The alerts themselves are
already stored by then; the channel carries news, not evidence.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeAlias

from gateway.alerts.alerts import AlertEvent

DEFAULT_QUEUE_LIMIT = 256
"""Alerts one subscriber may have waiting before its oldest are dropped (and counted)."""

_SECOND_NS = 1_000_000_000


@dataclass(frozen=True)
class Overflow:
    """A subscriber fell behind: ``lost`` alerts before the ones that follow were dropped."""

    lost: int


LiveItem: TypeAlias = AlertEvent | Overflow
"""What a subscription yields: an alert, or the marker of alerts it lost."""


class Subscription:
    """One subscriber's view of the channel: ``get`` the next item, ``close`` when done."""

    def __init__(self, channel: AlertChannel, queue_limit: int) -> None:
        """Use ``AlertChannel.subscribe``; this is its constructor."""
        self._channel = channel
        self._limit = queue_limit
        self._items: deque[AlertEvent] = deque()
        self._pending_lost = 0
        self._lost_total = 0
        self._closed = False
        self._changed = threading.Condition()

    @property
    def closed(self) -> bool:
        """True once this subscription (or its channel) is closed."""
        with self._changed:
            return self._closed

    @property
    def lost(self) -> int:
        """How many alerts this subscriber has lost by falling behind, in all."""
        with self._changed:
            return self._lost_total

    def get(self, timeout: float | None = None) -> LiveItem | None:
        """The next item, waiting up to ``timeout`` seconds (None: for ever).

        Returns None when nothing arrived in time or the subscription is closed (see
        ``closed``). After a loss the ``Overflow`` marker comes first, where the lost
        (oldest) alerts would have been.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while not self._closed:
                if self._pending_lost:
                    marker = Overflow(self._pending_lost)
                    self._pending_lost = 0
                    return marker
                if self._items:
                    return self._items.popleft()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._changed.wait(remaining)
            return None

    def close(self) -> None:
        """Stop receiving; wakes a ``get`` waiting in another thread. Safe to call twice."""
        self._end()
        self._channel._forget(self)

    def _put(self, event: AlertEvent) -> None:
        """Queue ``event``, dropping (and counting) the oldest if the queue is full."""
        with self._changed:
            if self._closed:
                return
            if len(self._items) >= self._limit:
                self._items.popleft()
                self._pending_lost += 1
                self._lost_total += 1
            self._items.append(event)
            self._changed.notify_all()

    def _end(self) -> None:
        with self._changed:
            self._closed = True
            self._items.clear()
            self._changed.notify_all()

    def __enter__(self) -> Subscription:
        """Use as a context manager that closes the subscription."""
        return self

    def __exit__(self, *_exc: object) -> None:
        """Close the subscription."""
        self.close()


class AlertChannel:
    """A thread-safe publish/subscribe hub of alert events, in publication order."""

    def __init__(self, queue_limit: int = DEFAULT_QUEUE_LIMIT) -> None:
        """``queue_limit`` bounds each subscriber's queue (at least 1)."""
        if isinstance(queue_limit, bool) or not isinstance(queue_limit, int) or queue_limit < 1:
            raise ValueError(f"alert channel queue limit {queue_limit!r} must be a positive int")
        self._limit = queue_limit
        self._lock = threading.Lock()
        self._subscriptions: list[Subscription] = []
        self._published = 0
        self._closed = False

    @property
    def published(self) -> int:
        """How many alerts have been published so far."""
        with self._lock:
            return self._published

    @property
    def subscribers(self) -> int:
        """How many subscriptions are open."""
        with self._lock:
            return len(self._subscriptions)

    def subscribe(self) -> Subscription:
        """A new subscription that receives every alert published from now on."""
        subscription = Subscription(self, self._limit)
        with self._lock:
            if self._closed:
                subscription._end()
            else:
                self._subscriptions.append(subscription)
        return subscription

    def publish(self, event: AlertEvent) -> None:
        """Give ``event`` to every open subscription; never blocks on a slow subscriber."""
        # Holding the lock while queueing keeps every subscriber's order the same as the
        # publication order when several threads publish at once; _put never waits.
        with self._lock:
            self._published += 1
            for subscription in self._subscriptions:
                subscription._put(event)

    def close(self) -> None:
        """Close every subscription (waking their readers) and refuse new ones."""
        with self._lock:
            self._closed = True
            subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            subscription._end()

    def _forget(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)


def alert_document(event: AlertEvent) -> dict[str, object]:
    """The JSON form of an alert event, as webhooks and the console's live feed carry it.

    Times are given both as integer nanoseconds since the Unix epoch (exact) and as
    ISO 8601 UTC text (for people). ``received`` is gateway time, the trusted one;
    ``press.badge_wall`` is the badge's own, uncorrected clock; ``press_estimate`` is the
    press in gateway time from the badge's measured clock offset, null until the badge
    has sent a heartbeat since it booted.
    """
    press = event.press
    estimate: dict[str, object] | None = None
    if event.estimated_press_wall_ns is not None:
        estimate = {
            "wall_ns": event.estimated_press_wall_ns,
            "wall": iso_time(event.estimated_press_wall_ns),
            "error_ns": event.latency_error_ns,
            "latency_ns": event.estimated_latency_ns,
        }
    return {
        "event": "alert",
        "version": 1,
        "badge": event.badge_id,
        "wearer": event.wearer,
        "location": event.location,
        "registered_location": event.registered_location,
        "incident": event.incident_id,
        "press": {
            "boot": press.boot,
            "mono_ns": press.mono_ns,
            "badge_wall_ns": press.wall_ns,
            "badge_wall": iso_time(press.wall_ns),
        },
        "press_estimate": estimate,
        "received": {
            "wall_ns": event.received_wall_ns,
            "wall": iso_time(event.received_wall_ns),
        },
        "claimed_latency_ns": event.claimed_latency_ns,
    }


def iso_time(wall_ns: int) -> str:
    """``wall_ns`` (ns since the Unix epoch, UTC) as ISO 8601 text with microseconds."""
    seconds, rest = divmod(wall_ns, _SECOND_NS)
    try:
        moment = datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest // 1000)
    except (OverflowError, OSError, ValueError):
        return ""
    return moment.isoformat().replace("+00:00", "Z")
