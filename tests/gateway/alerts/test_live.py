"""The live alert channel: fan-out, order, bounded queues with counted overflow, threads."""

from __future__ import annotations

import json
import threading

import pytest

from evidence.incident import Press
from gateway.alerts.alerts import AlertEvent
from gateway.alerts.live import AlertChannel, Overflow, alert_document, iso_time

WALL_NS = 1_790_000_000_123_456_789


def event(number: int, *, estimated: bool = False) -> AlertEvent:
    """An alert event whose incident id carries ``number``."""
    return AlertEvent(
        badge_id="er-badge-01",
        wearer="Nurse Aigerim",
        registered_location="Emergency",
        location="Bay 3",
        incident_id=f"inc-{number:04d}",
        press=Press(2, 5_000_000_000, WALL_NS + number),
        received_wall_ns=WALL_NS + number + 12_000_000,
        claimed_latency_ns=12_000_000,
        estimated_press_wall_ns=WALL_NS + number + 1_000_000 if estimated else None,
        estimated_latency_ns=11_000_000 if estimated else None,
        latency_error_ns=500_000 if estimated else None,
    )


def incident(item: object) -> str:
    assert isinstance(item, AlertEvent), item
    return item.incident_id


def test_every_subscriber_gets_every_alert_in_order() -> None:
    channel = AlertChannel()
    first, second = channel.subscribe(), channel.subscribe()
    for number in range(5):
        channel.publish(event(number))
    for subscription in (first, second):
        assert [incident(subscription.get(1.0)) for _ in range(5)] == [
            f"inc-{number:04d}" for number in range(5)
        ]
        assert subscription.get(0.01) is None
    assert channel.published == 5


def test_a_subscriber_sees_only_alerts_after_it_subscribed() -> None:
    channel = AlertChannel()
    channel.publish(event(0))
    subscription = channel.subscribe()
    channel.publish(event(1))
    assert incident(subscription.get(1.0)) == "inc-0001"
    assert subscription.get(0.01) is None


def test_a_subscriber_that_falls_behind_gets_a_counted_overflow_marker() -> None:
    channel = AlertChannel(queue_limit=3)
    slow, fast = channel.subscribe(), channel.subscribe()
    for number in range(5):
        channel.publish(event(number))
        assert incident(fast.get(1.0)) == f"inc-{number:04d}"
    # the two oldest are gone; the marker stands where they were
    assert slow.get(1.0) == Overflow(lost=2)
    assert [incident(slow.get(1.0)) for _ in range(3)] == ["inc-0002", "inc-0003", "inc-0004"]
    assert slow.get(0.01) is None
    assert slow.lost == 2
    assert fast.lost == 0
    channel.publish(event(5))
    assert incident(slow.get(1.0)) == "inc-0005"  # no second marker without a new loss


def test_losses_accumulate_until_the_subscriber_reads() -> None:
    channel = AlertChannel(queue_limit=1)
    subscription = channel.subscribe()
    for number in range(4):
        channel.publish(event(number))
    assert subscription.get(1.0) == Overflow(lost=3)
    assert incident(subscription.get(1.0)) == "inc-0003"
    channel.publish(event(4))
    channel.publish(event(5))
    assert subscription.get(1.0) == Overflow(lost=1)
    assert subscription.lost == 4


def test_get_waits_for_a_publication_from_another_thread() -> None:
    channel = AlertChannel()
    subscription = channel.subscribe()
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(subscription.get(10.0)))
    reader.start()
    channel.publish(event(7))
    reader.join(10.0)
    assert [incident(item) for item in got] == ["inc-0007"]


def test_close_wakes_a_waiting_reader_and_stops_delivery() -> None:
    channel = AlertChannel()
    subscription = channel.subscribe()
    other = channel.subscribe()
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(subscription.get(None)))
    reader.start()
    subscription.close()
    reader.join(10.0)
    assert not reader.is_alive()
    assert got == [None]
    assert subscription.closed
    assert channel.subscribers == 1
    channel.publish(event(1))
    assert subscription.get(0.01) is None
    assert incident(other.get(1.0)) == "inc-0001"
    subscription.close()  # twice is fine


def test_closing_the_channel_ends_every_subscription() -> None:
    channel = AlertChannel()
    with channel.subscribe() as subscription:
        channel.close()
        assert subscription.closed
        assert subscription.get(None) is None
    late = channel.subscribe()
    assert late.closed
    channel.publish(event(1))  # publishing after close is harmless
    assert channel.subscribers == 0


def test_concurrent_publishers_lose_nothing_uncounted() -> None:
    channel = AlertChannel(queue_limit=16)
    roomy = AlertChannel(queue_limit=10_000)
    small, large = channel.subscribe(), roomy.subscribe()
    per_thread, threads = 200, 4

    def publish(offset: int) -> None:
        for number in range(per_thread):
            alert = event(offset * per_thread + number)
            channel.publish(alert)
            roomy.publish(alert)

    workers = [threading.Thread(target=publish, args=(offset,)) for offset in range(threads)]
    for worker in workers:
        worker.start()
    received = lost = 0
    while True:
        item = small.get(0.2)
        if item is None:
            if not any(worker.is_alive() for worker in workers):
                break
            continue
        if isinstance(item, Overflow):
            lost += item.lost
        else:
            received += 1
    for worker in workers:
        worker.join()
    assert received + lost == per_thread * threads
    assert lost == small.lost
    seen = [incident(large.get(1.0)) for _ in range(per_thread * threads)]
    assert sorted(seen) == sorted(f"inc-{number:04d}" for number in range(per_thread * threads))
    # each publisher's own alerts arrive in the order it published them
    for offset in range(threads):
        low, high = offset * per_thread, (offset + 1) * per_thread
        mine = [name for name in seen if low <= int(name[4:]) < high]
        assert mine == sorted(mine)


@pytest.mark.parametrize("limit", [0, -1, True, 1.5])
def test_queue_limit_must_be_a_positive_int(limit: object) -> None:
    with pytest.raises(ValueError, match="queue limit"):
        AlertChannel(queue_limit=limit)  # type: ignore[arg-type]


def test_alert_document_is_json_with_exact_and_readable_times() -> None:
    document = alert_document(event(3))
    assert json.loads(json.dumps(document)) == document
    assert document["badge"] == "er-badge-01"
    assert document["wearer"] == "Nurse Aigerim"
    assert document["location"] == "Bay 3"
    assert document["registered_location"] == "Emergency"
    assert document["incident"] == "inc-0003"
    assert document["press"] == {
        "boot": 2,
        "mono_ns": 5_000_000_000,
        "badge_wall_ns": WALL_NS + 3,
        "badge_wall": "2026-09-21T14:13:20.123456Z",
    }
    assert document["received"] == {
        "wall_ns": WALL_NS + 3 + 12_000_000,
        "wall": "2026-09-21T14:13:20.135456Z",
    }
    assert document["press_estimate"] is None
    estimated = alert_document(event(3, estimated=True))["press_estimate"]
    assert estimated == {
        "wall_ns": WALL_NS + 3 + 1_000_000,
        "wall": iso_time(WALL_NS + 3 + 1_000_000),
        "error_ns": 500_000,
        "latency_ns": 11_000_000,
    }


def test_iso_time() -> None:
    assert iso_time(0) == "1970-01-01T00:00:00Z"
    assert iso_time(1_500_000_000) == "1970-01-01T00:00:01.500000Z"
