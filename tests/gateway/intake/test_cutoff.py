"""A badge flooding refused messages is cut off: counted in a window, recorded, refused
without an answer or kept bytes, while other badges' alerts go on; lifting lets it back."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from evidence.topics import gateway_topic
from gateway.alerts.alerts import AlertEvent
from gateway.config import CutoffSettings, IntakeLimits
from gateway.enrolment.enrolment import lift_cutoff
from gateway.intake.cutoff import RefusalWindow
from gateway.intake.intake import Intake
from gateway.intake.quarantine import LOG_FILE
from tests.gateway.badge_messages import BadgeMessages, make_hospital


def test_the_window_counts_refusals_per_badge_and_forgets_old_ones() -> None:
    now = [0]
    window = RefusalWindow(CutoffSettings(refusals=3, window_seconds=1.0), clock=lambda: now[0])
    assert [window.refused("badge-a") for _ in range(3)] == [False] * 3
    assert not window.refused("badge-b")  # each badge has its own count
    now[0] = 2_000_000_000  # the first three are out of the window
    assert [window.refused("badge-a") for _ in range(3)] == [False] * 3
    assert window.refused("badge-a")  # the fourth within a second


def test_a_flooding_badge_is_cut_off_and_another_badges_alert_still_arrives(
    tmp_path: Path,
) -> None:
    hospital = make_hospital(tmp_path)
    published: list[tuple[str, bytes]] = []
    alerts: list[AlertEvent] = []
    limits = IntakeLimits(cutoff=CutoffSettings(refusals=5, window_seconds=60.0))
    intake = Intake(
        hospital.data_dir,
        lambda topic, payload: published.append((topic, payload)),
        alerts.append,
        limits=limits,
    )
    a = BadgeMessages.of(hospital.bundles["badge-a"])
    b = BadgeMessages.of(hospital.bundles["badge-b"])
    try:
        for _ in range(6):
            intake.handle(a.topic("alert"), b"\x00garbage")
        rejects = [topic for topic, _ in published if topic == gateway_topic("badge-a", "reject")]
        assert len(rejects) == 6
        database = sqlite3.connect(hospital.data_dir.database_path)
        try:
            assert database.execute("SELECT badge_id, refusals FROM badge_cutoffs").fetchall() == [
                ("badge-a", 6)
            ]
            custody = database.execute(
                "SELECT actor, action, subject FROM custody_entries WHERE action = 'cut-off'"
            ).fetchall()
            assert custody == [("gateway", "cut-off", "badge-a")]
        finally:
            database.close()
        published.clear()
        intake.handle(a.topic("alert"), b"\x00more garbage")
        intake.handle(a.topic("alert"), a.alert("inc-a"))  # even a good one, until lifted
        assert published == [] and alerts == []
        assert intake.counts()["cut-off"] == 2
        assert intake.quarantine.not_kept()["cut-off"] == 2
        last = (intake.quarantine.directory / LOG_FILE).read_text().splitlines()[-1]
        assert json.loads(last)["badge"] == "badge-a"  # the metadata says who was cut off
        kept = list(intake.quarantine.directory.glob("*/*.bin"))
        assert len(kept) == 6  # only the refusals from before the cut-off kept their bytes

        intake.handle(b.topic("alert"), b.alert("inc-b"))
        assert [event.incident_id for event in alerts] == ["inc-b"]

        lift_cutoff(hospital.data_dir, "badge-a", operator="adam")
        intake.handle(a.topic("alert"), a.alert("inc-a"))
        assert [event.incident_id for event in alerts] == ["inc-b", "inc-a"]
    finally:
        intake.close()
