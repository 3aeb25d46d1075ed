"""The intake's second stage: acknowledgements in arrival order, segments stored in order."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bench.procfs import running
from evidence.messages import SegmentChunk
from gateway.alerts.alerts import AlertEvent
from gateway.intake.acks import OrderedAcks
from gateway.intake.intake import PARTIAL_DIR, Intake
from gateway.intake.reassembly import PartialSegment, Reassembly
from gateway.intake.stage import StoreStage
from gateway.storage.badges import EnrolledBadge
from tests.gateway.badge_messages import BadgeMessages, Hospital, make_hospital, receipts
from tests.gateway.webhook_receiver import wait_until

REPO = Path(__file__).resolve().parents[3]


def test_acknowledgements_leave_in_arrival_order() -> None:
    sent: list[str] = []
    acks: OrderedAcks[str] = OrderedAcks(sent.append)
    first, second, third = (acks.take(name) for name in ("first", "second", "third"))
    acks.done(second)
    acks.done(third)
    assert sent == [] and acks.waiting() == 3  # the first is still being stored
    acks.done(first)
    assert sent == ["first", "second", "third"] and acks.waiting() == 0
    acks.done(acks.take("fourth"))
    assert sent[-1] == "fourth"


def test_a_failed_acknowledgement_does_not_hold_back_the_rest() -> None:
    sent: list[str] = []

    def send(name: str) -> None:
        if name == "lost":
            raise ConnectionError("the connection dropped")
        sent.append(name)

    acks: OrderedAcks[str] = OrderedAcks(send)
    tickets = [acks.take(name) for name in ("lost", "next")]
    acks.done(tickets[1])
    with pytest.raises(ConnectionError):
        acks.done(tickets[0])
    assert sent == ["next"] and acks.waiting() == 0


def _complete_partials(
    badge: BadgeMessages, partials: Reassembly, count: int
) -> list[PartialSegment]:
    """Reassemble ``count`` chained segments of one incident as the intake thread does."""
    done = []
    for segment in badge.seal(count, size=40_000):
        for chunk in badge.chunks(segment, "inc-1"):
            partial = partials.add(SegmentChunk.from_bytes(chunk, "test"))
        assert partial.complete and partial.stream is not None
        done.append(partial)
    return done


def _reading_intake(
    tmp_path: Path, last_seq: int
) -> tuple[Hospital, BadgeMessages, list[tuple[str, bytes]], Intake]:
    """A hospital, badge-a, and the intake that reads its incident inc-1 of 0..``last_seq``;
    what is published goes to the list."""
    hospital = make_hospital(tmp_path)
    badge = BadgeMessages.of(hospital.bundles["badge-a"])
    published: list[tuple[str, bytes]] = []
    alerts: list[AlertEvent] = []
    reader = Intake(hospital.data_dir, lambda *message: published.append(message), alerts.append)
    reader.handle(badge.topic("incident"), badge.incident("inc-1", 0, last_seq))
    return hospital, badge, published, reader


def test_the_stage_stores_in_order_and_acknowledges_only_once_stored(tmp_path: Path) -> None:
    hospital, badge, published, reader = _reading_intake(tmp_path, 2)
    stored_when_acknowledged: list[tuple[int, int]] = []

    def finished(ticket: int) -> None:
        connection = sqlite3.connect(hospital.data_dir.database_path)
        (rows,) = connection.execute("SELECT COUNT(*) FROM segments").fetchone()
        connection.close()
        stored_when_acknowledged.append((ticket, rows))

    stage = StoreStage(
        hospital.data_dir, lambda *message: published.append(message), finished, depth=2
    )
    enrolled = hospital.data_dir.storage().badges.get("badge-a")
    partials = _complete_partials(badge, reader.partials, 3)
    for ticket, partial in enumerate(partials[:2]):  # handed over before the stage runs
        stage.hand_over(enrolled, partial, 0, 10 + ticket)
    waiter = threading.Thread(target=stage.wait_stored, args=("badge-a", 1))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()  # nothing is stored until the stage runs
    stage.start()
    waiter.join(10)
    assert not waiter.is_alive()
    stage.hand_over(enrolled, partials[2], 0, 12)
    stage.wait_stored()
    stage.stop()
    reader.close()
    assert stored_when_acknowledged == [(10, 1), (11, 2), (12, 3)]
    found = receipts(published, hospital.gateway_key)
    assert [(r.subject, r.key) for r in found] == [
        ("segment", "0"),
        ("segment", "1"),
        ("segment", "2"),
        ("incident", "inc-1"),
    ]
    assert not list((hospital.data_dir.root / PARTIAL_DIR).glob("*/*"))


class _StageHandoff:
    """What IntakeService does for its intake: hand segments to the stage, wait on it."""

    def __init__(self, stage: StoreStage) -> None:
        self.stage = stage
        self.handed: list[int] = []

    def store_later(self, badge: EnrolledBadge, partial: PartialSegment, received: int) -> None:
        self.handed.append(partial.seq)
        self.stage.hand_over(badge, partial, received, len(self.handed))

    def wait_stored(self, badge_id: str | None = None, seq: int | None = None) -> None:
        self.stage.wait_stored(badge_id, seq)


@pytest.mark.parametrize("resent", ["chunk", "record"])
def test_the_intake_waits_for_the_stage_before_what_depends_on_it(
    tmp_path: Path, resent: str
) -> None:
    """A resent chunk of a segment being stored is answered once it is stored, not handed
    over again; a resent incident record is answered once its segments are stored."""
    hospital = make_hospital(tmp_path)
    badge = BadgeMessages.of(hospital.bundles["badge-a"])
    published: list[tuple[str, bytes]] = []
    alerts: list[AlertEvent] = []
    reader = Intake(hospital.data_dir, lambda *message: published.append(message), alerts.append)
    stage = StoreStage(
        hospital.data_dir, lambda *message: published.append(message), lambda _ticket: None
    )
    handoff = _StageHandoff(stage)
    reader.hand_off_to(handoff)
    record = badge.incident("inc-1", 0, 0)
    reader.handle(badge.topic("incident"), record)
    (segment,) = badge.seal(1, size=40_000)
    chunks = badge.chunks(segment, "inc-1")
    for chunk in chunks:
        reader.handle(badge.topic("segment"), chunk)
    assert handoff.handed == [0] and receipts(published, hospital.gateway_key) == []
    threading.Timer(0.3, stage.start).start()  # the stage is slow to store it
    if resent == "chunk":
        reader.handle(badge.topic("segment"), chunks[0])
    else:
        reader.handle(badge.topic("incident"), record)
    stage.stop()
    reader.close()
    assert handoff.handed == [0]
    found = [(r.subject, r.key) for r in receipts(published, hospital.gateway_key)]
    answer = ("segment", "0") if resent == "chunk" else ("incident", "inc-1")
    assert found == [("segment", "0"), ("incident", "inc-1"), answer]


def test_a_store_process_that_dies_is_reported_and_holds_nothing_up(tmp_path: Path) -> None:
    hospital, badge, published, reader = _reading_intake(tmp_path, 1)
    acknowledged: list[int] = []
    stage = StoreStage(
        hospital.data_dir, lambda *message: published.append(message), acknowledged.append
    )
    stage.start()
    enrolled = hospital.data_dir.storage().badges.get("badge-a")
    first, second = _complete_partials(badge, reader.partials, 2)
    stage.hand_over(enrolled, first, 0, 1)
    stage.wait_stored()
    assert stage.is_alive() and stage.failure() is None and acknowledged == [1]
    assert stage.pid is not None
    os.kill(stage.pid, signal.SIGKILL)
    wait_until(lambda: stage.failure() is not None, "failure reported by the stage")
    assert "ended unexpectedly (killed by SIGKILL)" in str(stage.failure())
    assert not stage.is_alive()
    stage.hand_over(enrolled, second, 0, 2)  # refused at once, left unacknowledged
    stage.wait_stored()  # returns: nothing will be stored any more
    stage.stop()
    reader.close()
    assert acknowledged == [1]
    assert [(r.subject, r.key) for r in receipts(published, hospital.gateway_key)] == [
        ("segment", "0")
    ]
    assert second.path.exists()  # the partial waits for the redelivery after a restart


_ORPHANING_PARENT = """
import sys, time
from pathlib import Path
from gateway.datadir import GatewayDataDir
from gateway.intake.stage import StoreStage
stage = StoreStage(GatewayDataDir(Path(sys.argv[1])), lambda *message: None, lambda _t: None)
stage.start()
print(stage.pid, flush=True)
time.sleep(120)
"""


def test_the_store_process_ends_when_the_intake_process_is_killed(tmp_path: Path) -> None:
    hospital = make_hospital(tmp_path)
    parent = subprocess.Popen(
        [sys.executable, "-c", _ORPHANING_PARENT, str(hospital.data_dir.root)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert running(child)
        parent.kill()
        parent.wait(10)
        wait_until(lambda: not running(child), "end of the orphaned store process", 10)
    finally:
        parent.kill()
        parent.wait(10)
