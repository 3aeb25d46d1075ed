"""The console's live alerts follow the database: a real intake stores, a follower on its own
connection (as in the ``gateway console`` process) publishes what is new, in order."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.alerts.alerts import AlertEvent
from gateway.alerts.live import AlertChannel
from gateway.console.live_feed import AlertFollower
from gateway.intake.intake import Intake
from gateway.storage.alert_feed import FEED_BATCH
from tests.gateway.badge_messages import BASE_WALL_NS, BOOT_MONO_NS, BadgeMessages, make_hospital

WAIT_S = 10.0


@dataclass
class Followed:
    intake: Intake
    badge: BadgeMessages
    follower: AlertFollower
    channel: AlertChannel
    intake_events: list[AlertEvent]

    def press(self, incident_id: str) -> None:
        self.intake.handle(self.badge.topic("alert"), self.badge.alert(incident_id))

    def next_event(self) -> AlertEvent:
        with self.channel.subscribe() as subscription:
            item = subscription.get(WAIT_S)
        assert isinstance(item, AlertEvent), item
        return item


@pytest.fixture
def followed(tmp_path: Path) -> Iterator[Followed]:
    hospital = make_hospital(tmp_path)
    events: list[AlertEvent] = []
    intake = Intake(hospital.data_dir, lambda _topic, _payload: None, events.append)
    badge = BadgeMessages.of(hospital.bundles["badge-a"])
    intake.handle(badge.topic("alert"), badge.alert("before-start"))
    storage = hospital.data_dir.storage()
    channel = AlertChannel()
    follower = AlertFollower(storage, channel, poll_s=0.01)
    try:
        yield Followed(intake, badge, follower, channel, events)
    finally:
        follower.stop()
        storage.close()
        intake.close()


def test_an_alert_stored_by_the_intake_reaches_the_console_channel(followed: Followed) -> None:
    followed.follower.start()
    with followed.channel.subscribe() as subscription:
        followed.press("inc-1")
        event = subscription.get(WAIT_S)
        assert subscription.get(0.2) is None, "an alert stored before the start was repeated"
    assert isinstance(event, AlertEvent)
    assert event == followed.intake_events[-1]
    assert (event.badge_id, event.incident_id, event.wearer) == (
        "badge-a",
        "inc-1",
        "Nurse badge-a",
    )
    assert event.location == event.registered_location == "Ward 3"


def test_the_press_is_in_gateway_time_once_the_badge_has_heartbeaten(followed: Followed) -> None:
    badge = followed.badge
    followed.intake.handle(
        badge.topic("heartbeat"), badge.heartbeat(BOOT_MONO_NS, BASE_WALL_NS + 7_000_000_000)
    )
    followed.follower.start()
    with followed.channel.subscribe() as subscription:
        followed.press("inc-2")
        event = subscription.get(WAIT_S)
    assert isinstance(event, AlertEvent)
    assert event.estimated_press_wall_ns is not None
    assert event == followed.intake_events[-1]


def test_a_burst_larger_than_one_read_arrives_whole_and_in_order(followed: Followed) -> None:
    followed.follower.start()
    followed.follower.stop()  # polled by hand below
    ids = [f"burst-{number:03d}" for number in range(FEED_BATCH * 2 + 5)]
    for incident_id in ids:
        followed.press(incident_id)
    with followed.channel.subscribe() as subscription:
        assert followed.follower.poll() == len(ids)
        seen = []
        while (item := subscription.get(0)) is not None:
            assert isinstance(item, AlertEvent)
            seen.append(item.incident_id)
    assert seen == ids
    assert followed.follower.poll() == 0
