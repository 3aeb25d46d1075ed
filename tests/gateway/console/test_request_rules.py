"""Rules on every request: the Origin check on writes, the security headers (HSTS only
under TLS), and a logout that always ends the session server-side."""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.alerts.live import AlertChannel
from gateway.config import GatewayConfig
from gateway.console.origin import origin_of
from gateway.console.server import ConsoleServer
from tests.gateway.badge_messages import BadgeMessages, make_hospital
from tests.gateway.console_support import (
    ConsoleHarness,
    WebClient,
    incident_messages,
    recorded_segments,
    running_console,
    seal_recording,
)
from tests.mosquitto import free_port


@pytest.fixture
def console(tmp_path: Path) -> Iterator[ConsoleHarness]:
    with running_console(tmp_path) as harness:
        yield harness


def session_cookie(client: WebClient) -> str:
    [value] = [cookie.value for cookie in client.cookies if cookie.name == "medbadge_session"]
    assert value
    return value


def test_a_cross_origin_write_is_refused_even_with_the_right_token(
    console: ConsoleHarness,
) -> None:
    badge = BadgeMessages.of(console.hospital.bundles["badge-a"])
    console.send(incident_messages(badge, "inc-1", seal_recording(badge, recorded_segments(2.0))))
    officer = WebClient(console.url)
    officer.login("olga")
    token = officer.csrf("/alerts")
    path = "/alerts/badge-a/inc-1/acknowledge"
    for headers in (
        {"Origin": "http://attacker.example"},
        {"Origin": "null"},
        {"Origin": console.url.replace("127.0.0.1", "localhost")},
        {"Referer": "http://attacker.example/page.html"},
    ):
        refused = officer.request(path, {"csrf": token}, headers=headers)
        assert refused.status == 403, headers
        assert "did not come from a page of this console" in refused.text
    api = officer.request(
        "/api/alerts/badge-a/inc-1/acknowledge",
        {},
        headers={"X-CSRF-Token": token, "Origin": "https://attacker.example"},
    )
    assert api.status == 403 and "page of this console" in json.loads(api.body)["error"]
    assert json.loads(officer.request("/api/incidents/badge-a/inc-1").body)["status"] == "open"
    login = WebClient(console.url).request(
        "/login", {"username": "olga", "password": "x"}, headers={"Origin": "http://evil.test"}
    )
    assert login.status == 403
    done = officer.request(
        path, {"csrf": token}, headers={"Origin": console.url, "Referer": console.url + "/alerts"}
    )
    assert done.status == 303
    assert json.loads(officer.request("/api/incidents/badge-a/inc-1").body)["status"] == (
        "acknowledged"
    )


def test_origins_compare_by_scheme_host_and_port() -> None:
    assert origin_of("HTTPS://Console.Example:443/x?y") == "https://console.example"
    assert origin_of("http://127.0.0.1:8080") == "http://127.0.0.1:8080"
    assert origin_of("http://[::1]:80/") == "http://[::1]"
    assert origin_of("/relative") is None and origin_of("http://host:notaport") is None


def test_logout_without_a_token_still_ends_the_session_server_side(
    console: ConsoleHarness,
) -> None:
    officer = WebClient(console.url)
    assert officer.login("olga").status == 303
    stolen = session_cookie(officer)
    replay = WebClient(console.url)
    cookie = {"Cookie": f"medbadge_session={stolen}"}
    assert replay.request("/alerts", headers=cookie).status == 200  # the cookie works
    assert officer.request("/logout", {}).status == 303  # no CSRF token at all
    gone = replay.request("/alerts", headers=cookie)
    assert gone.status == 303 and gone.headers["location"].startswith("/login")
    again = WebClient(console.url)
    again.login("olga")
    second = session_cookie(again)
    assert again.request("/logout", {"csrf": "forged"}).status == 303
    assert replay.request("/alerts", headers={"Cookie": f"medbadge_session={second}"}).status == 303


def test_every_page_denies_device_features_and_plain_http_gets_no_hsts(
    console: ConsoleHarness,
) -> None:
    headers = WebClient(console.url).request("/login").headers
    policy = headers["permissions-policy"]
    for feature in ("camera=()", "microphone=()", "geolocation=()", "usb=()"):
        assert feature in policy
    assert headers["referrer-policy"] == "same-origin"
    assert "strict-transport-security" not in headers


def test_the_console_over_tls_sends_hsts(tmp_path: Path) -> None:
    hospital = make_hospital(tmp_path)
    port = free_port()
    config = GatewayConfig.from_mapping(
        hospital.data_dir.root, {"console": {"tls": True, "host": "127.0.0.1", "port": port}}
    )
    channel = AlertChannel()
    server = ConsoleServer(hospital.data_dir, config, channel)
    server.start()
    try:
        context = ssl.create_default_context(cafile=hospital.data_dir.ca_dir / "ca.crt")
        connection = http.client.HTTPSConnection("localhost", port, context=context, timeout=10)
        connection.request("GET", "/login")
        answer = connection.getresponse()
        answer.read()
        connection.close()
    finally:
        channel.close()
        server.stop()
    assert answer.status == 200
    assert answer.getheader("strict-transport-security") == "max-age=31536000"
    assert "camera=()" in (answer.getheader("permissions-policy") or "")
