"""The input rules where people type: console forms and the command line refuse unsafe names
and empty reasons with a clear message, and pages show an older record's characters escaped."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cli import main
from tests.gateway.badge_messages import BadgeMessages
from tests.gateway.console_support import (
    ConsoleHarness,
    WebClient,
    incident_messages,
    recorded_segments,
    running_console,
    seal_recording,
)


@pytest.fixture
def console(tmp_path: Path) -> Iterator[ConsoleHarness]:
    with running_console(tmp_path) as harness:
        badge = BadgeMessages.of(harness.hospital.bundles["badge-a"])
        segments = seal_recording(badge, recorded_segments(2.0))
        harness.send(incident_messages(badge, "inc-1", segments))
        yield harness


def custody_actions(console: ConsoleHarness) -> list[str]:
    connection = sqlite3.connect(console.hospital.data_dir.database_path)
    try:
        return [row[0] for row in connection.execute("SELECT action FROM custody_entries")]
    finally:
        connection.close()


def test_viewing_needs_a_real_reason_and_records_nothing_without_one(
    console: ConsoleHarness,
) -> None:
    officer = WebClient(console.url)
    officer.login("olga")
    token = officer.csrf("/incidents/badge-a/inc-1")
    for junk in ("\x00", "\u200b", ".", "x y"):
        refused = officer.request(
            "/incidents/badge-a/inc-1/view", {"csrf": token, "justification": junk}
        )
        assert refused.status == 400, junk
        assert "does not say why" in refused.text or "not allowed" in refused.text
    assert "view" not in custody_actions(console)
    granted = officer.request(
        "/incidents/badge-a/inc-1/view", {"csrf": token, "justification": "complaint 42 ward 3"}
    )
    assert granted.status == 303 and "view" in custody_actions(console)


def test_enrolment_refuses_a_wearer_with_a_bidi_override_in_the_console_and_the_cli(
    console: ConsoleHarness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    enrolled_before = custody_actions(console).count("enrol")
    admin = WebClient(console.url)
    admin.login("adam")
    token = admin.csrf("/badges")
    refused = admin.request(
        "/badges/enrol",
        {"csrf": token, "badge_id": "er-7", "wearer": "Dr. Ivan\u202evokaB", "location": "ER"},
    )
    assert refused.status == 400 and "RIGHT-TO-LEFT OVERRIDE" in refused.text
    assert "\u202e" not in refused.text
    data = str(console.hospital.data_dir.root)
    assert main(["--data", data, "enroll", "er-8", "--no-serve", "--location", "ER\x00"]) == 1
    assert "location 'ER\\x00' holds \\x00" in capsys.readouterr().err
    assert main(["--data", data, "init", "--hospital", "Clinic\u2067 7"]) == 1
    assert "RIGHT-TO-LEFT ISOLATE" in capsys.readouterr().err
    assert custody_actions(console).count("enrol") == enrolled_before


def test_a_stored_name_with_unsafe_characters_is_shown_escaped(console: ConsoleHarness) -> None:
    connection = sqlite3.connect(console.hospital.data_dir.database_path)
    try:
        connection.execute(
            "UPDATE badges SET wearer = ? WHERE badge_id = 'badge-a'", ("Ann\u202eA",)
        )
        connection.execute(
            "UPDATE incident_index SET wearer = ?, location = ?", ("Ann\u202eA", "E\x00R")
        )
        connection.commit()
    finally:
        connection.close()
    officer = WebClient(console.url)
    officer.login("olga")
    for path in ("/incidents", "/badges", "/incidents/badge-a/inc-1"):
        page = officer.request(path).text
        assert "\u202e" not in page and "\x00" not in page, path
    assert "Ann\\u202eA" in officer.request("/incidents").text
    api = json.loads(officer.request("/api/incidents").body)
    assert api["incidents"][0]["wearer"] == "Ann\u202eA"  # the API gives the data as stored
