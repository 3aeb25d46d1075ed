"""Watching an incident in a real browser (Debian's Chromium through Playwright) while the
badge still records: the pre-roll plays as soon as it is stored, the player follows new
segments and says how far behind it is, the timeline starts at 0 and seeking works.

The console runs in process over real HTTP, fed by a real intake with real sealed H.264 +
AAC segments. Screenshots go to ``test-artifacts/watch/``.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from evidence.incident import SignedIncident
from evidence.segment import SealedSegment
from tests.gateway.badge_messages import BadgeMessages
from tests.gateway.console.test_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    REPO,
    WAIT_MS,
    log_in,
    wait_until_true,
)
from tests.gateway.console_support import (
    ConsoleHarness,
    WebClient,
    recorded_segments,
    running_console,
    seal_recording,
)

ARTIFACTS = REPO / "test-artifacts" / "watch"
VIDEO = "document.getElementById('video')"


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: run scripts/ensure-system-deps")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def console(tmp_path: Path) -> Iterator[ConsoleHarness]:
    with running_console(tmp_path) as harness:
        yield harness


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def upload(
    console: ConsoleHarness, badge: BadgeMessages, incident: str, *segments: SealedSegment
) -> None:
    for segment in segments:
        console.send(
            [
                (badge.topic("segment"), c)
                for c in badge.chunks(segment, incident, chunk_bytes=65536)
            ]
        )


def watch(browser: Browser, console: ConsoleHarness, incident: str) -> Page:
    """Log in as the officer, state why, and open the player of ``incident``."""
    officer = log_in(browser, console.url, "olga")
    officer.goto(f"{console.url}/incidents/badge-a/{incident}")
    officer.fill("input[name=justification]", "answering the alert")
    officer.click("#view-form button")
    expect(officer.locator("#video")).to_be_visible()
    return officer


def playing_time(page: Page) -> float:
    return float(page.evaluate(f"{VIDEO}.currentTime"))


def test_the_pre_roll_plays_while_the_incident_still_records(
    browser: Browser, console: ConsoleHarness
) -> None:
    badge = BadgeMessages.of(console.hospital.bundles["badge-a"])
    segments = seal_recording(badge, recorded_segments(10.0))
    assert len(segments) == 5
    # The press, during segment 2: the alert names the pre-roll from 0; no record yet.
    console.send([(badge.topic("alert"), badge.alert("inc-live", 2, first_seq=0))])
    upload(console, badge, "inc-live", *segments[:3])

    officer = watch(browser, console, "inc-live")
    wait_until_true(officer, f"{VIDEO}.currentTime > 0.5")
    first = playing_time(officer)
    time.sleep(0.6)
    assert playing_time(officer) > first, "the pre-roll does not advance"
    assert officer.evaluate(f"{VIDEO}.error") is None
    assert officer.evaluate(f"{VIDEO}.seekable.start(0)") == 0
    assert officer.evaluate(f"{VIDEO}.seekable.end(0)") == pytest.approx(6.0, abs=0.1)
    expect(officer.locator("#segments")).to_have_text(
        "3 stored so far; the badge is still recording"
    )
    state = officer.locator("#player-state")
    expect(state).to_have_text(re.compile(r"^live — \d+ s behind"), timeout=WAIT_MS)
    assert officer.locator("#bar .press").count() == 1
    assert officer.locator("#bar .pre").count() == 1
    expect(officer.locator("#bar-legend")).to_contain_text("pre-roll 0:00\u20130:04")
    expect(officer.locator("#bar-legend")).to_contain_text("press at 0:04")
    shot(officer, "01-pre-roll-playing-while-recording")

    # The post-roll goes on: the player follows the new segment without a reload.
    upload(console, badge, "inc-live", segments[3])
    wait_until_true(officer, f"{VIDEO}.seekable.end(0) > 7.9")
    wait_until_true(officer, f"{VIDEO}.currentTime > 6.2")
    expect(state).to_contain_text("live")
    shot(officer, "02-following-the-post-roll")

    # The record and the last segment: the player says the incident is recorded.
    console.send([(badge.topic("incident"), badge.incident("inc-live", 0, 4))])
    upload(console, badge, "inc-live", segments[4])
    expect(state).to_have_text("recorded: 0:10 in 5 segments", timeout=WAIT_MS)
    assert officer.evaluate(f"{VIDEO}.seekable.end(0)") == pytest.approx(10.0, abs=0.1)
    assert officer.evaluate(f"{VIDEO}.error") is None


def test_the_timeline_starts_at_zero_and_seeking_works(
    browser: Browser, console: ConsoleHarness
) -> None:
    badge = BadgeMessages.of(console.hospital.bundles["badge-a"])
    segments = seal_recording(badge, recorded_segments(10.0))
    # The incident starts 4 s into the badge's recording: its own timeline starts at 0.
    console.send([(badge.topic("alert"), badge.alert("inc-seek", 3, first_seq=2))])
    record = replace(badge.record("inc-seek", 2, 4), presses=(badge.press(3),))
    signed = SignedIncident.sign(record, badge.identity).to_bytes()
    console.send([(badge.topic("incident"), signed)])
    upload(console, badge, "inc-seek", *segments[2:])

    officer = watch(browser, console, "inc-seek")
    state = officer.locator("#player-state")
    expect(state).to_have_text("recorded: 0:06 in 3 segments", timeout=WAIT_MS)
    wait_until_true(officer, f"{VIDEO}.currentTime > 0.2")
    assert playing_time(officer) < 3.0, "the timeline does not start at 0"
    assert officer.evaluate(f"{VIDEO}.duration") == pytest.approx(6.0, abs=0.1)
    assert officer.evaluate(f"{VIDEO}.seekable.length") == 1
    assert officer.evaluate(f"{VIDEO}.seekable.start(0)") == 0
    assert officer.evaluate(f"{VIDEO}.seekable.end(0)") == pytest.approx(6.0, abs=0.1)
    expect(officer.locator("#player-clock")).to_contain_text("/ 0:06")
    expect(officer.locator("#bar-legend")).to_contain_text("press at 0:02")

    officer.evaluate(f"{VIDEO}.currentTime = 4.5")
    wait_until_true(officer, f"{VIDEO}.currentTime > 4.7 && !{VIDEO}.seeking")
    # and back into the pre-roll, by the bar under the video
    box = officer.locator("#bar").bounding_box()
    assert box is not None
    officer.locator("#bar").click(position={"x": box["width"] * 0.1, "y": box["height"] / 2})
    wait_until_true(officer, f"{VIDEO}.currentTime < 2 && {VIDEO}.currentTime > 0.6")
    assert officer.evaluate(f"{VIDEO}.error") is None
    shot(officer, "03-seeking-in-a-recorded-incident")


def test_the_plan_and_segments_need_the_grant_and_sit_on_the_timeline(
    console: ConsoleHarness, tmp_path: Path
) -> None:
    badge = BadgeMessages.of(console.hospital.bundles["badge-a"])
    segments = seal_recording(badge, recorded_segments(10.0))
    console.send([(badge.topic("alert"), badge.alert("inc-api", 3, first_seq=2))])
    upload(console, badge, "inc-api", *segments[2:4])
    officer = WebClient(console.url)
    officer.login("olga")
    base = "/incidents/badge-a/inc-api/video"
    refused = officer.request(f"{base}/guessed/plan")
    assert refused.status == 400 and "state why" in json.loads(refused.body)["error"]
    token = officer.csrf("/incidents/badge-a/inc-api")
    granted = officer.request(
        "/incidents/badge-a/inc-api/view", {"csrf": token, "justification": "answering alert 7"}
    )
    grant = granted.headers["location"].split("grant=")[1].split("#")[0]
    plan = json.loads(officer.request(f"{base}/{grant}/plan").body)
    assert plan["origin"] == 2 and plan["recording"] is True
    assert [(s["seq"], s["start"]) for s in plan["segments"]] == [(2, 0.0), (3, 2.0)]
    assert plan["pre_roll_end"] == pytest.approx(2.0) and plan["presses"] == [plan["pre_roll_end"]]
    # the second segment, 6 s into the badge's recording, plays at 2 s of the incident's
    answer = officer.request(f"{base}/{grant}/2/3")
    assert answer.status == 200 and answer.headers["x-codecs"].startswith("avc1.")
    clip = tmp_path / "segment.mp4"
    clip.write_bytes(answer.body)
    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "packet=pts_time",
            "-select_streams",
            "v",
            "-of",
            "csv=p=0",
            str(clip),
        ],
        capture_output=True,
        check=True,
        text=True,
    ).stdout.split()
    assert float(probe[0]) == pytest.approx(2.0, abs=0.001)
    moved = officer.request(f"{base}/{grant}/1/3")
    assert moved.status == 400 and "reload the player" in json.loads(moved.body)["error"]
    absent = officer.request(f"{base}/{grant}/2/4")
    assert absent.status == 400 and "not reached the gateway" in json.loads(absent.body)["error"]


def test_a_player_opened_before_any_footage_says_so_and_plays_when_it_comes(
    browser: Browser, console: ConsoleHarness
) -> None:
    badge = BadgeMessages.of(console.hospital.bundles["badge-a"])
    segments = seal_recording(badge, recorded_segments(10.0))
    console.send([(badge.topic("alert"), badge.alert("inc-early", 1, first_seq=0))])
    officer = watch(browser, console, "inc-early")
    state = officer.locator("#player-state")
    expect(state).to_contain_text("No footage has reached the gateway yet", timeout=WAIT_MS)
    expect(officer.locator("#segments")).to_have_text(
        "none stored so far; the badge is still recording"
    )
    expect(officer.locator("#bar-legend")).to_have_text("nothing stored yet")
    assert officer.evaluate(f"{VIDEO}.error") is None
    shot(officer, "04-waiting-for-the-pre-roll")
    upload(console, badge, "inc-early", *segments[:2])
    wait_until_true(officer, f"{VIDEO}.currentTime > 0.3")
    expect(state).to_contain_text("live")
    assert officer.evaluate(f"{VIDEO}.error") is None
