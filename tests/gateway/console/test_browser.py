"""The console in a real browser (Debian's Chromium through Playwright) against a real
``gateway run`` and a real mosquitto: a badge press appears live, the footage plays after a
justification, a custodian exports, the auditor sees both accesses, and roles are enforced.

Screenshots of every page go to ``test-artifacts/console/``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.gateway.badge_messages import BadgeMessages, Hospital, make_hospital
from tests.gateway.console_support import (
    PASSWORD,
    add_users,
    one_time_code,
    recorded_segments,
    seal_recording,
)
from tests.gateway.generated_broker import GeneratedBroker, badge_tls_session, write_config
from tests.mosquitto import free_port

REPO = Path(__file__).resolve().parents[3]
ARTIFACTS = REPO / "test-artifacts" / "console"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 15_000


class RunningGateway:
    """``gateway run`` and ``gateway console`` (plain HTTP on a free loopback port), as the two
    processes a hospital runs."""

    def __init__(self, hospital: Hospital, tls_port: int, log: Path) -> None:
        self.port = free_port(avoid=[tls_port])
        self.url = f"http://127.0.0.1:{self.port}"
        self.root = hospital.data_dir.root
        (self.root / "gateway.toml").write_text(
            f"[broker]\nport = {tls_port}\n\n"
            f'[console]\nhost = "127.0.0.1"\nport = {self.port}\ntls = false\n'
        )
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs = [log, log.with_name("console.log")]
        self._start("run", self.logs[0], "gateway ready")
        self._start("console", self.logs[1], "console serving at")
        with urllib.request.urlopen(self.url + "/login", timeout=5) as answer:  # noqa: S310
            assert answer.status == 200

    def _start(self, command: str, log: Path, ready: str) -> None:
        environment = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        with log.open("ab") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "--data", str(self.root), command],
                cwd=REPO,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(process)
        deadline = time.monotonic() + 30
        while ready not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"gateway {command} did not start:\n{log.read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            "Chromium is missing: run scripts/ensure-system-deps (apt-get install chromium)"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def wait_until_true(page: Page, expression: str, timeout_s: float = WAIT_MS / 1000) -> None:
    """Poll ``expression`` (the page's CSP forbids the eval ``wait_for_function`` uses)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"{expression} stayed false"
        time.sleep(0.1)


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def log_in(browser: Browser, url: str, username: str, secret: str | None = None) -> Page:
    page = browser.new_context(accept_downloads=True).new_page()
    page.goto(url + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    if secret is not None:
        page.fill("input[name=code]", one_time_code(secret))
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return page


def test_press_to_playback_to_export_in_a_real_browser(browser: Browser, tmp_path: Path) -> None:
    hospital = make_hospital(tmp_path)
    secrets = add_users(hospital)
    tls_port, plain_port = write_config(hospital.data_dir.root)
    badge = BadgeMessages.of(hospital.bundles["badge-a"])
    segments = seal_recording(badge, recorded_segments())
    with GeneratedBroker(hospital.data_dir.root / "broker", tls_port, plain_port) as broker:
        gateway = RunningGateway(hospital, tls_port, tmp_path / "gateway.log")
        session = None
        try:
            officer = log_in(browser, gateway.url, "olga")
            expect(officer).to_have_url(gateway.url + "/alerts")
            expect(officer.locator("#live-state")).to_have_text("live", timeout=WAIT_MS)
            shot(officer, "01-alerts-empty")

            # The press: a signed alert over TLS through mosquitto, as the badge sends it.
            session = badge_tls_session(broker, tmp_path / "bundles" / "badge-a")
            session.publish(badge.topic("alert"), badge.alert("inc-9", 0))
            row = officer.locator('tr[data-incident="inc-9"]')
            expect(row).to_be_visible(timeout=WAIT_MS)
            expect(row).to_contain_text("Nurse badge-a")
            expect(row).to_contain_text("badge-a")
            expect(row).to_contain_text("Ward 3")
            assert officer.evaluate("Number(document.body.dataset.beeps)") >= 1
            shot(officer, "02-alerts-live")

            # The upload: the incident record, then every segment in chunks.
            session.publish(badge.topic("incident"), badge.incident("inc-9", 0, len(segments) - 1))
            for segment in segments:
                for chunk in badge.chunks(segment, "inc-9", chunk_bytes=64 * 1024):
                    session.publish(badge.topic("segment"), chunk)

            row.get_by_role("button", name="Acknowledge").click()
            expect(officer.locator('tr[data-incident="inc-9"] .status')).to_have_text(
                "acknowledged"
            )
            incident_url = f"{gateway.url}/incidents/badge-a/inc-9"
            officer.goto(incident_url)
            deadline = time.monotonic() + 30
            while "(complete)" not in officer.content():
                assert time.monotonic() < deadline, "the incident never completed"
                time.sleep(0.2)
                officer.reload()
            expect(officer.locator("#verification h2")).to_have_text("Verification: verified")
            assert officer.locator("#export-form").count() == 0
            shot(officer, "03-incident-officer")

            officer.fill("input[name=justification]", "complaint 2026-114 from the ward")
            officer.click("#view-form button")
            video = officer.locator("#video")
            expect(video).to_be_visible()
            wait_until_true(officer, "document.getElementById('video').currentTime > 1")
            assert officer.evaluate("document.getElementById('video').videoWidth") == 320
            shot(officer, "04-incident-playing")
            forbidden = officer.request.post(
                incident_url + "/export",
                form={
                    "csrf": officer.get_attribute("meta[name=csrf-token]", "content") or "",
                    "justification": "just curious",
                },
            )
            assert forbidden.status == 403 and "evidence custodian" in forbidden.text()

            custodian = log_in(browser, gateway.url, "carl", secrets["carl"])
            custodian.goto(incident_url)
            custodian.fill("#export-form input[name=justification]", "court order 7/2026")
            custodian.click("#export-form button")
            expect(custodian.locator("#package")).to_be_visible(timeout=WAIT_MS)
            shot(custodian, "05-incident-exported")
            with custodian.expect_download() as download:
                custodian.click("#package")
            saved = tmp_path / "package.zip"
            download.value.save_as(saved)
            assert saved.read_bytes().startswith(b"PK")
            custodian.goto(gateway.url + "/users")
            expect(custodian.locator("h1")).to_have_text("Not allowed")
            expect(custodian.locator("main")).to_contain_text("administrator")
            shot(custodian, "06-custodian-denied-users")

            auditor = log_in(browser, gateway.url, "aida")
            auditor.goto(gateway.url + "/custody?subject=inc-9")
            table = auditor.locator("#custody")
            expect(table.locator("tr.action-view")).to_contain_text("olga")
            expect(table.locator("tr.action-view")).to_contain_text("complaint 2026-114")
            expect(table.locator("tr.action-export")).to_contain_text("carl")
            expect(table.locator("tr.action-acknowledge")).to_contain_text("olga")
            shot(auditor, "07-custody-log")
            auditor.goto(gateway.url + "/ledger")
            expect(auditor.locator("#checkpoint")).to_contain_text("Signed at")
            shot(auditor, "08-ledger")
            auditor.goto(gateway.url + "/incidents")
            shot(auditor, "09-incidents")

            admin = log_in(browser, gateway.url, "adam", secrets["adam"])
            expect(admin.locator("#badges")).to_contain_text("badge-a")
            shot(admin, "10-badges")
            admin.goto(gateway.url + "/users")
            shot(admin, "11-users")
        finally:
            if session is not None:
                session.close()
            gateway.stop()
    for log in gateway.logs:
        assert "Traceback" not in log.read_text()
