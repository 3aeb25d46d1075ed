"""An incident's segments from its alert on: the pre-roll belongs to it before the record comes,
the record bounds it, and disagreements between alert, record and uploads are reported."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.alerts.alerts import AlertEvent
from gateway.console import casefile
from gateway.intake.intake import Intake
from gateway.ledger.ledger import Ledger, open_ledger
from gateway.storage import Storage
from tests.gateway.badge_messages import BadgeMessages, Hospital, make_hospital
from tests.gateway.console_support import (
    WebClient,
    recorded_segments,
    running_console,
    seal_recording,
)


class Desk:
    """A real intake on a fresh hospital, and a second connection reading as the console does."""

    def __init__(self, root: Path) -> None:
        self.hospital: Hospital = make_hospital(root)
        self.alerts: list[AlertEvent] = []
        self.intake = Intake(self.hospital.data_dir, lambda _t, _p: None, self.alerts.append)
        self.storage: Storage = self.hospital.data_dir.storage()
        self.ledger: Ledger = open_ledger(self.hospital.data_dir, self.storage, verify=False)
        self.badge = BadgeMessages.of(self.hospital.bundles["badge-a"])

    def upload(self, incident_id: str, seqs: range) -> None:
        for seq in seqs:
            segment = self.badge.sealed[seq]
            for chunk in self.badge.chunks(segment, incident_id, chunk_bytes=4096):
                self.intake.handle(self.badge.topic("segment"), chunk)

    def case(self, incident_id: str) -> casefile.CaseFile:
        self.storage.incident_index.catch_up()
        summary = self.storage.incident_index.require("badge-a", incident_id)
        return casefile.gather(self.ledger, summary)

    def check(self, incident_id: str) -> casefile.StoreCheck:
        case = self.case(incident_id)
        return casefile.check_store(case, self.storage.badges, self.storage.vault, self.ledger)

    def close(self) -> None:
        self.storage.close()
        self.intake.close()


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    made = Desk(tmp_path)
    try:
        yield made
    finally:
        made.close()


def seqs(case: casefile.CaseFile) -> list[int]:
    return [stored.seq for stored in case.segments]


def test_the_pre_roll_belongs_to_the_open_incident_as_soon_as_it_is_stored(desk: Desk) -> None:
    desk.badge.seal(8)
    desk.upload("earlier", range(0, 2))  # an older incident's footage, before the pre-roll
    desk.intake.handle(desk.badge.topic("alert"), desk.badge.alert("inc-1", 5, first_seq=2))
    assert desk.case("inc-1").segments == () and desk.case("inc-1").recording
    desk.upload("inc-1", range(2, 5))
    case = desk.case("inc-1")
    assert case.recording and case.incident is None
    assert seqs(case) == [2, 3, 4]
    assert [press.mono_ns for press in case.presses] == [desk.badge.press(5).mono_ns]
    check = desk.check("inc-1")
    assert check.verdict == "incomplete"
    assert "the incident record has not arrived yet" in check.findings
    assert any("3 segments: bytes match" in finding for finding in check.findings)

    desk.upload("inc-1", range(5, 7))
    assert seqs(desk.case("inc-1")) == [2, 3, 4, 5, 6]
    desk.intake.handle(desk.badge.topic("incident"), desk.badge.incident("inc-1", 2, 7))
    desk.upload("inc-1", range(7, 8))
    case = desk.case("inc-1")
    assert not case.recording and case.complete
    assert seqs(case) == [2, 3, 4, 5, 6, 7]
    assert desk.check("inc-1").verdict != "failed"


def test_a_record_that_ends_before_what_was_uploaded_is_reported_not_relinked(
    desk: Desk,
) -> None:
    desk.badge.seal(6)
    desk.intake.handle(desk.badge.topic("alert"), desk.badge.alert("inc-2", 1, first_seq=0))
    desk.upload("inc-2", range(0, 6))
    assert seqs(desk.case("inc-2")) == [0, 1, 2, 3, 4, 5]
    desk.intake.handle(desk.badge.topic("incident"), desk.badge.incident("inc-2", 1, 3))
    case = desk.case("inc-2")
    assert seqs(case) == [1, 2, 3]
    check = desk.check("inc-2")
    assert check.verdict == "failed"
    assert any(
        "while the incident was open, segments 4, 5 came for it, but its record ends at "
        "segment 3" in finding
        for finding in check.findings
    )
    assert any(
        "while the incident was open, segment 0 came for it, but its record starts at "
        "segment 1" in finding
        for finding in check.findings
    )


def test_a_record_starting_before_its_alert_says_so(desk: Desk) -> None:
    desk.badge.seal(4)
    desk.intake.handle(desk.badge.topic("alert"), desk.badge.alert("inc-3", 3, first_seq=2))
    desk.intake.handle(desk.badge.topic("incident"), desk.badge.incident("inc-3", 1, 3))
    desk.upload("inc-3", range(1, 4))
    assert seqs(desk.case("inc-3")) == [1, 2, 3]
    findings = desk.check("inc-3").findings
    assert any(
        "the incident record starts at segment 1, before the first segment its alert named (2)"
        in finding
        for finding in findings
    )


def test_segments_of_a_boot_before_the_press_are_not_shown_while_it_records(desk: Desk) -> None:
    desk.badge.seal(3)  # boot 1
    desk.badge.boot = 2
    desk.badge.seal(2)  # boot 2: seqs 3 and 4
    desk.intake.handle(desk.badge.topic("alert"), desk.badge.alert("inc-4", 4, first_seq=2))
    desk.upload("inc-4", range(2, 5))
    assert seqs(desk.case("inc-4")) == [3, 4]
    findings = desk.check("inc-4").findings
    assert any("segment 2 came from a boot before the press's (boot 2)" in f for f in findings)


def test_the_incident_page_counts_the_pre_roll_while_it_records(tmp_path: Path) -> None:
    with running_console(tmp_path) as console:
        badge = BadgeMessages.of(console.hospital.bundles["badge-a"])
        segments = seal_recording(badge, recorded_segments())
        console.send([(badge.topic("alert"), badge.alert("inc-5", 2, first_seq=0))])
        for segment in segments[:2]:
            console.send(
                [(badge.topic("segment"), chunk) for chunk in badge.chunks(segment, "inc-5")]
            )
        officer = WebClient(console.url)
        officer.login("olga")
        page = officer.request("/incidents/badge-a/inc-5").text
        assert "2 stored so far; the badge is still recording" in page
        console.send([(badge.topic("incident"), badge.incident("inc-5", 0, 2))])
        console.send([(badge.topic("segment"), c) for c in badge.chunks(segments[2], "inc-5")])
        assert "3 of 3 (complete)" in officer.request("/incidents/badge-a/inc-5").text
