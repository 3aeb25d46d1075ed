"""The player's plan: stored segments on a timeline from 0, gaps where a segment is missing,
a reboot followed on, and the press splitting pre-roll from post-roll."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.console import footage
from gateway.errors import ConsoleError
from tests.gateway import badge_messages
from tests.gateway.badge_messages import SEGMENT_NS
from tests.gateway.console.test_span import Desk


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    made = Desk(tmp_path)
    try:
        yield made
    finally:
        made.close()


def test_the_timeline_starts_at_the_first_stored_segment_and_keeps_gaps(desk: Desk) -> None:
    desk.badge.seal(10)
    desk.intake.handle(desk.badge.topic("alert"), desk.badge.alert("inc-1", 7, first_seq=4))
    desk.upload("inc-1", range(5, 7))
    desk.upload("inc-1", range(8, 9))  # segment 7 has not come yet; 4 was pruned or is late
    plan = footage.plan(desk.case("inc-1"))
    assert plan.origin_seq == 5 and plan.recording
    assert [(p.seq, p.start_ns, p.end_ns) for p in plan.segments] == [
        (5, 0, SEGMENT_NS),
        (6, SEGMENT_NS, 2 * SEGMENT_NS),
        (8, 3 * SEGMENT_NS, 4 * SEGMENT_NS),
    ]
    assert plan.missing == (4, 7)
    assert plan.presses_ns == (2 * SEGMENT_NS,)  # the press began segment 7
    shown = plan.to_json(now_ns=1)
    assert shown["pre_roll_end"] == 4.0 and shown["end"] == 8.0 and shown["recording"]
    assert plan.place(5, 8).start_ns == 3 * SEGMENT_NS
    with pytest.raises(ConsoleError, match="reload the player"):
        plan.place(4, 8)
    with pytest.raises(ConsoleError, match="not reached the gateway"):
        plan.place(5, 7)


def test_a_reboot_inside_the_incident_follows_on_from_the_last_segment(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    desk.badge.seal(2)
    desk.badge.boot = 2  # its monotonic clock starts again from near 0; the seqs go on
    monkeypatch.setattr(badge_messages, "BOOT_MONO_NS", 1_000_000)
    desk.badge.seal(2)
    desk.intake.handle(desk.badge.topic("incident"), desk.badge.incident("inc-2", 0, 3))
    desk.upload("inc-2", range(0, 4))
    plan = footage.plan(desk.case("inc-2"))
    assert not plan.recording and plan.missing == ()
    assert [p.start_ns for p in plan.segments] == [0, SEGMENT_NS, 2 * SEGMENT_NS, 3 * SEGMENT_NS]
    assert plan.end_ns == 4 * SEGMENT_NS
