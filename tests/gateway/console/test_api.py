"""The console over real HTTP (uvicorn on 127.0.0.1), fed by a real intake: sessions, roles,
CSRF, rate limits, custody records, playback, search, enrolment and the live stream."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from badge.enrolment import enrol
from demo.enrolment import LocalTransport
from evidence.bundle import EnrolmentBundle
from gateway.broker.accounts import broker_accounts
from gateway.broker.config import hash_broker_password
from gateway.cli import main
from gateway.console.users import Role, UserDirectory
from gateway.datadir import GatewayDataDir
from gateway.storage.cutoffs import Cutoff
from tests.gateway.badge_messages import BadgeMessages
from tests.gateway.console_support import (
    PASSWORD,
    ConsoleHarness,
    WebClient,
    incident_messages,
    recorded_segments,
    running_console,
    seal_recording,
)
from tests.storage_backends import DatabaseFactory


@pytest.fixture
def console(tmp_path: Path, database_factory: DatabaseFactory) -> Iterator[ConsoleHarness]:
    root = tmp_path / "gateway"
    database = database_factory(root)
    with running_console(tmp_path, toml=database.gateway_toml(root)) as harness:
        harness.database = database
        yield harness


def custody_rows(console: ConsoleHarness) -> list[tuple[str, str, str, str]]:
    assert console.database is not None
    rows = console.database.rows(
        "SELECT actor, action, subject, justification FROM custody_entries ORDER BY entry_id"
    )
    return [tuple(row) for row in rows]


def record_incident(console: ConsoleHarness, incident_id: str = "inc-1") -> None:
    badge = BadgeMessages.of(console.hospital.bundles["badge-a"])
    console.send(incident_messages(badge, incident_id, seal_recording(badge, recorded_segments())))


def test_login_sets_a_strict_http_only_session_and_is_recorded(console: ConsoleHarness) -> None:
    client = WebClient(console.url)
    refused = client.login("olga", "not the password at all")
    assert refused.status == 401 and "Wrong user name, password or one-time code" in refused.text
    accepted = client.login("olga")
    assert accepted.status == 303 and accepted.headers["location"] == "/alerts"
    cookie = accepted.headers["set-cookie"]
    assert "medbadge_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert client.request("/alerts").status == 200
    assert [row[:3] for row in custody_rows(console)[-2:]] == [
        ("olga", "login", "olga"),
        ("olga", "login", "olga"),
    ]
    token = client.csrf("/alerts")
    assert client.request("/logout", {"csrf": token}).status == 303
    assert client.request("/alerts").headers["location"].startswith("/login")


def test_each_role_sees_what_it_needs_and_is_told_which_role_it_lacks(
    console: ConsoleHarness,
) -> None:
    record_incident(console)
    anonymous = WebClient(console.url)
    assert anonymous.request("/incidents").headers["location"] == "/login?next=/incidents"
    assert anonymous.request("/api/incidents").status == 401
    officer, custodian = WebClient(console.url), WebClient(console.url)
    officer.login("olga")
    custodian.login("carl")
    token = officer.csrf("/incidents/badge-a/inc-1")
    denied = officer.request(
        "/incidents/badge-a/inc-1/export", {"csrf": token, "justification": "court order 7"}
    )
    assert denied.status == 403 and "evidence custodian" in denied.text
    assert "Traceback" not in denied.text
    users = custodian.request("/users")
    assert users.status == 403 and "administrator" in users.text
    assert custodian.request("/alerts").status == 403
    assert "export" not in [row[1] for row in custody_rows(console)]


def test_a_post_without_the_session_csrf_token_does_nothing(console: ConsoleHarness) -> None:
    record_incident(console)
    officer = WebClient(console.url)
    officer.login("olga")
    refused = officer.request("/alerts/badge-a/inc-1/acknowledge", {"csrf": "forged"})
    assert refused.status == 400 and "security token" in refused.text
    api = officer.request(
        "/api/alerts/badge-a/inc-1/acknowledge", {}, headers={"X-CSRF-Token": "forged"}
    )
    assert api.status == 400
    assert json.loads(officer.request("/api/incidents/badge-a/inc-1").body)["status"] == "open"
    token = json.loads(officer.request("/api/session").body)["csrf_token"]
    done = officer.request("/api/alerts/badge-a/inc-1/acknowledge", {}, {"X-CSRF-Token": token})
    assert done.status == 200
    state = json.loads(officer.request("/api/incidents/badge-a/inc-1").body)
    assert state["status"] == "acknowledged" and state["actions"][0]["by"] == "olga"
    assert ("olga", "acknowledge", "inc-1", "") in custody_rows(console)


def test_footage_plays_only_after_a_recorded_justification(
    console: ConsoleHarness, tmp_path: Path
) -> None:
    record_incident(console)
    officer = WebClient(console.url)
    officer.login("olga")
    page = officer.request("/incidents/badge-a/inc-1").text
    assert "Verification: verified" in page and "/video/" not in page
    token = officer.csrf("/incidents/badge-a/inc-1")
    unjustified = officer.request("/incidents/badge-a/inc-1/view", {"csrf": token})
    assert unjustified.status == 400
    assert officer.request("/incidents/badge-a/inc-1/video/guessed").status == 400
    granted = officer.request(
        "/incidents/badge-a/inc-1/view", {"csrf": token, "justification": "complaint 42"}
    )
    assert granted.status == 303
    player = officer.request(granted.headers["location"].split("#")[0]).text
    found = re.search(r'data-stream="(/incidents/badge-a/inc-1/video/[^"]+)"', player)
    assert found is not None
    video = officer.request(found.group(1))
    assert video.status == 200 and video.headers["content-type"] == "video/mp4"
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(video.body)
    probe = json.loads(
        subprocess.run(
            ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(clip)],
            capture_output=True,
            check=True,
        ).stdout
    )
    assert sorted(stream["codec_name"] for stream in probe["streams"]) == ["aac", "h264"]
    assert float(probe["format"]["duration"]) == pytest.approx(6.0, abs=0.1)
    assert ("olga", "view", "inc-1", "complaint 42") in custody_rows(console)
    stranger = WebClient(console.url)
    stranger.login("carl")
    assert stranger.request(found.group(1)).status == 400  # the grant is olga's alone


def test_search_filters_and_pages_through_incidents(console: ConsoleHarness) -> None:
    a = BadgeMessages.of(console.hospital.bundles["badge-a"])
    b = BadgeMessages.of(console.hospital.bundles["badge-b"])
    for number in range(5):
        console.send([(a.topic("alert"), a.alert(f"a-{number}"))])
    console.send([(b.topic("alert"), b.alert("b-0"))])
    auditor = WebClient(console.url)
    auditor.login("aida")
    first = json.loads(auditor.request("/api/incidents?badge=badge-a&limit=2").body)
    assert [item["incident"] for item in first["incidents"]] == ["a-4", "a-3"]
    following = json.loads(
        auditor.request(f"/api/incidents?badge=badge-a&limit=2&after={first['next']}").body
    )
    assert [item["incident"] for item in following["incidents"]] == ["a-2", "a-1"]
    wearer = json.loads(auditor.request("/api/incidents?wearer=Nurse+badge-b").body)
    assert [item["incident"] for item in wearer["incidents"]] == ["b-0"]
    assert json.loads(auditor.request("/api/incidents?status=resolved").body)["incidents"] == []
    page = auditor.request("/incidents?badge=badge-a&limit=2").text
    assert 'id="older"' in page and "a-4" in page and "a-2" not in page


def test_enrolment_code_enrols_the_badges_own_key_and_revocation_closes_the_broker_account(
    console: ConsoleHarness, tmp_path: Path
) -> None:
    admin = WebClient(console.url)
    admin.login("adam")
    token = admin.csrf("/badges")
    issued = admin.request(
        "/badges/enrol",
        {"csrf": token, "badge_id": "er-badge-07", "wearer": "Dr. N. Sadykov", "location": "ER"},
    )
    assert issued.status == 200  # shown on this page only, never in a URL to follow
    code = re.search(r'<code id="code">([A-Z2-7-]+)</code>', issued.text)
    assert code is not None
    assert re.search(r'<div id="code-qr"><svg [^>]*class="segno"', issued.text)
    data_dir = console.hospital.data_dir
    enrol(tmp_path / "badge", "er-badge-07", code.group(1), LocalTransport(data_dir))
    loaded = EnrolmentBundle.load(tmp_path / "badge")
    assert loaded.identity.badge_id == "er-badge-07"
    page = admin.request("/badges").text
    assert "er-badge-07" in page and code.group(1) not in page
    revoked = admin.request(
        "/badges/er-badge-07/revoke", {"csrf": token, "reason": "lost in the car park"}
    )
    assert revoked.status == 303
    storage = data_dir.storage()
    try:
        assert storage.badges.get("er-badge-07").revoked_at_ns is not None
    finally:
        storage.close()
    accounts = [
        account.username
        for account in broker_accounts(data_dir, hash_broker_password("gateway-pass"))
    ]
    assert "er-badge-07" not in accounts and "badge-a" in accounts
    assert [row[:2] for row in custody_rows(console)[-2:]] == [
        ("adam", "enrol"),
        ("adam", "revoke"),
    ]


def test_a_cut_off_badge_is_flagged_and_an_administrator_lifts_it(
    console: ConsoleHarness,
) -> None:
    storage = console.hospital.data_dir.storage()
    try:
        storage.cutoffs.cut_off(Cutoff("badge-b", time.time_ns(), 101, 60 * 10**9, "malformed"))
    finally:
        storage.close()
    officer = WebClient(console.url)
    officer.login("olga")
    page = officer.request("/badges").text
    assert 'class="error cut-off"' in page and "lift-cutoff" not in page  # officers only see it
    admin = WebClient(console.url)
    admin.login("adam")
    token = admin.csrf("/badges")
    assert admin.request("/badges/badge-b/lift-cutoff", {"csrf": token}).status == 303
    assert 'class="error cut-off"' not in admin.request("/badges").text
    assert admin.request("/badges/badge-b/lift-cutoff", {"csrf": token}).status == 400
    assert [row[:3] for row in custody_rows(console)[-1:]] == [
        ("adam", "lift-cut-off", "badge-b")
    ]


@pytest.mark.parametrize(("reserve", "low"), [(2**60, True), (0, False)])
def test_every_page_warns_when_the_disk_is_below_its_reserve(
    tmp_path: Path, reserve: int, low: bool
) -> None:
    settings: dict[str, dict[str, object]] = {"reserve": {"bytes": reserve, "percent": 0.0}}
    with running_console(tmp_path, settings) as harness:
        for user, page in (("olga", "/alerts"), ("adam", "/badges"), ("carl", "/incidents")):
            client = WebClient(harness.url)
            client.login(user)
            text = client.request(page).text
            assert ('id="disk-low"' in text) is low, (user, page)
        login_page = WebClient(harness.url).request("/login").text
        assert 'id="disk-low"' not in login_page  # nothing about the gateway before login


def test_the_live_stream_carries_a_press_to_an_open_console(console: ConsoleHarness) -> None:
    officer = WebClient(console.url)
    officer.login("olga")
    cookie = "; ".join(f"{c.name}={c.value}" for c in officer.cookies)
    host, port = console.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("GET", "/alerts/stream", headers={"Cookie": cookie})
    response = connection.getresponse()
    assert response.status == 200
    assert response.getheader("content-type", "").startswith("text/event-stream")
    assert response.readline() == b"retry: 1000\n"
    response.readline()
    badge = BadgeMessages.of(console.hospital.bundles["badge-b"])
    threading.Timer(0.2, console.send, [[(badge.topic("alert"), badge.alert("live-1"))]]).start()
    assert response.readline() == b"event: alert\n"
    document = json.loads(response.readline().removeprefix(b"data: "))
    assert (document["badge"], document["incident"]) == ("badge-b", "live-1")
    assert (document["wearer"], document["location"]) == ("Nurse badge-b", "Ward 3")
    assert document["received"]["wall"].endswith("Z")
    connection.close()


def test_errors_are_pages_and_the_api_is_described(console: ConsoleHarness) -> None:
    client = WebClient(console.url)
    missing = client.request("/no/such/page")
    assert missing.status == 404 and "<html" in missing.text and "Traceback" not in missing.text
    schema = json.loads(client.request("/api/openapi.json").body)
    assert schema["openapi"].startswith("3.") and "/api/incidents" in schema["paths"]
    headers = client.request("/login").headers
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"


def test_init_creates_the_first_administrator(tmp_path: Path) -> None:
    password_file = tmp_path / "admin.password"
    password_file.write_text(PASSWORD + "\n")
    data = tmp_path / "gateway"
    assert (
        main(
            [
                "--data",
                str(data),
                "init",
                "--hospital",
                "Init Hospital",
                "--admin",
                "root-admin",
                "--admin-password-file",
                str(password_file),
            ]
        )
        == 0
    )
    storage = GatewayDataDir(data).storage()
    try:
        users = UserDirectory(storage.users)
        admin = users.authenticate("root-admin", PASSWORD)
        assert admin is not None and admin.role is Role.ADMIN
        assert users.authenticate("root-admin", "wrong password!!") is None
    finally:
        storage.close()
    short = tmp_path / "short.password"
    short.write_text("short\n")
    refused = main(
        [
            "--data",
            str(tmp_path / "other"),
            "init",
            "--hospital",
            "H",
            "--admin",
            "a",
            "--admin-password-file",
            str(short),
        ]
    )
    assert refused == 1 and not (tmp_path / "other").exists()


def test_a_custodian_exports_a_verified_package_recorded_in_custody(
    console: ConsoleHarness,
) -> None:
    record_incident(console)
    custodian = WebClient(console.url)
    custodian.login("carl")
    token = custodian.csrf("/incidents/badge-a/inc-1")
    done = custodian.request(
        "/incidents/badge-a/inc-1/export", {"csrf": token, "justification": "court order 7/2026"}
    )
    assert done.status == 303, done.text
    link = re.search(
        r'href="(/incidents/badge-a/inc-1/export/[^"]+)"',
        custodian.request(done.headers["location"]).text,
    )
    assert link is not None
    package = custodian.request(link.group(1))
    assert package.status == 200 and package.body.startswith(b"PK")
    assert custodian.request(link.group(1)).status == 400  # once only
    assert ("carl", "export", "inc-1", "court order 7/2026") in custody_rows(console)


def test_the_custody_log_refuses_an_unknown_action_filter(console: ConsoleHarness) -> None:
    auditor = WebClient(console.url)
    auditor.login("aida")
    assert auditor.request("/custody?action=login").status == 200
    for path in ("/custody?action=wipe", "/api/custody?action=wipe"):
        refused = auditor.request(path)
        assert refused.status == 400 and "wipe" in refused.text
        assert "is not a custody action" in refused.text


def test_the_page_and_the_api_read_a_custody_search_alike(console: ConsoleHarness) -> None:
    auditor = WebClient(console.url)
    auditor.login("aida")
    today = time.strftime("%Y-%m-%d", time.gmtime())
    logins = json.loads(auditor.request(f"/api/custody?action=login&from={today}").text)
    assert [entry["subject"] for entry in logins["entries"]] == ["aida"]
    before = json.loads(auditor.request("/api/custody?action=login&to=2000-01-01").text)
    assert before["entries"] == []
    for query in ("page=two", "offset=-1", "from=yesterday"):
        for path in ("/custody", "/api/custody"):
            refused = auditor.request(f"{path}?{query}")
            assert refused.status == 400, (path, query)


def test_the_badge_list_warns_of_a_low_battery(console: ConsoleHarness) -> None:
    """Below ``[console] low_battery_percent`` (20 by default) a badge's charge is flagged."""
    low = BadgeMessages.of(console.hospital.bundles["badge-a"])
    fine = BadgeMessages.of(console.hospital.bundles["badge-b"])
    now = time.time_ns()
    console.send(
        [
            (low.topic("heartbeat"), low.heartbeat(10**9, now, battery_percent=12)),
            (fine.topic("heartbeat"), fine.heartbeat(10**9, now, battery_percent=20)),
        ]
    )
    client = WebClient(console.url)
    client.login("olga")
    page = client.request("/badges").text
    assert re.search(r'<strong class="low-battery" role="alert">LOW 12 %</strong>', page)
    assert page.count("low-battery") == 1 and "<td class=\"battery\">20 %</td>" in page
    listed = {b["badge"]: b for b in json.loads(client.request("/api/badges").text)["badges"]}
    assert listed["badge-a"]["low_battery"] is True and listed["badge-b"]["low_battery"] is False
    assert listed["badge-a"]["battery_millivolts"] == 3_912
    assert listed["badge-a"]["soc_temperature_millicelsius"] == 51_540
    assert listed["badge-a"]["clock_synchronised"] is True
