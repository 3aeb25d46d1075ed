"""Press to the first pre-roll frame playing in the browser, beside the alert in the same run.

The whole path an officer answering an alert takes, with real processes: the demo's
mosquitto (TLS on loopback), ``gateway run`` and ``gateway console``, a fleet process holding the
other badges' connections (``bench.fleet``, heartbeating every 10 s), and a pressing badge
in its own process (``python -m bench.watch badge ...``) with the badge's ring, incident
recorder, outbox and uplink. Its ring holds two segments of real H.264 + AAC video (4 s,
recorded once by the badge's capture pipeline from the synthetic camera) when the button is
pressed; the press sends the alert and the pinned pre-roll, and the incident stays open (in
post-roll) while the officer watches.

The officer is Debian's Chromium driven by Playwright, logged in on the alert screen. For
each press the run notes when the alert's row appears there (the limit: the alert latency
of the same run, read the same way) and then does what the officer does: open the incident,
state why, and view; the figure is the moment the player's ``currentTime`` passes 0 (the
first pre-roll frame playing). Press and both moments are read from one CLOCK_MONOTONIC in
two processes; the browser is polled every millisecond or so, through Playwright.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright

from badge.capture import CaptureLoop, CaptureSettings
from badge.media import EncodedSegment
from badge.sources.audio import SyntheticMicrophone
from badge.sources.synthetic import SyntheticCamera
from bench.alert import BadgeProcess, PressingBadge, _receipted, start_fleet
from bench.loopback import BenchHospital
from bench.report import Figure
from demo.run import DEMO_OFFICER, DEMO_PASSWORD, add_demo_officer
from evidence.segment import SegmentFacts, seal_segment

BADGES = 200
PRESSES = 20
WAIT_S = 30.0
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update"]
WIDTH, HEIGHT = 640, 360
PRE_ROLL_SEGMENTS = 2
SEGMENT_NS = 2_000_000_000
POST_ROLL_NS = 100_000_000
"""The incident stays in post-roll until the badge is told to close it (no segment comes
before then), so the gateway sees it recording while the officer watches."""


def _percentiles(samples: Sequence[float]) -> tuple[float, float]:
    if len(samples) == 1:
        return samples[0], samples[0]
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49], cuts[98]


def run(presses: int = PRESSES, badges: int = BADGES) -> list[Figure]:
    """Press ``presses`` times with ``badges`` connected; time the alert and the first frame."""
    alert_ms: list[float] = []
    watch_ms: list[float] = []
    with (
        tempfile.TemporaryDirectory(prefix="medbadge-bench-watch-") as temporary,
        contextlib.ExitStack() as running,
    ):
        root = Path(temporary)
        hospital = BenchHospital(root, badges)
        running.callback(hospital.stop)
        hospital.set_up_hospital()
        add_demo_officer(hospital.gateway_data)
        hospital.configure_broker()
        hospital.start_broker()
        hospital.start_gateway()
        hospital.start_console()
        if badges > 1:
            start_fleet(hospital, running)
        pressing = hospital.badge_ids[0]
        badge = BadgeProcess(hospital.bundle_dir(pressing), root / "pressing-badge", "bench.watch")
        running.callback(badge.stop)
        officer = running.enter_context(_officer(f"http://127.0.0.1:{hospital.console_port}"))
        for number in range(presses + 1):
            _ready_for_alerts(officer)
            incident, pressed = badge.press()
            row = f"!!document.querySelector('tr[data-incident=\"{incident}\"]')"
            alerted = _when(officer, row)
            _view(officer, pressed_badge=pressing, incident=incident)
            playing = _when(officer, "(document.getElementById('video') || {}).currentTime > 0")
            badge.close_incident()
            if number == 0:
                continue  # warm-up
            alert_ms.append((alerted - pressed) / 1e6)
            watch_ms.append((playing - pressed) / 1e6)
    note = (
        f"{presses} presses, {badges} badges connected; {PRE_ROLL_SEGMENTS} pre-roll segments "
        f"of {WIDTH}x{HEIGHT} H.264+AAC; officer in Chromium: alert row, open, justify, view"
    )
    goal = "p99 < 2000 ms (ratio: press to first frame playing / press to alert on screen)"
    return [
        Figure(name, watch, "ms", alert, watch / alert, goal, note)
        for name, watch, alert in zip(
            ("watch-p50", "watch-p99"), _percentiles(watch_ms), _percentiles(alert_ms), strict=True
        )
    ]


@contextlib.contextmanager
def _officer(url: str) -> Iterator[Page]:
    """The security officer's browser, logged in on the alert screen."""
    if not CHROMIUM.exists():
        raise RuntimeError("Chromium is missing: run scripts/ensure-system-deps")
    with sync_playwright() as playwright:
        browser: Browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page()
            page.goto(url + "/login")
            page.fill("input[name=username]", DEMO_OFFICER)
            page.fill("input[name=password]", DEMO_PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(url + "/alerts")
            page.set_default_timeout(WAIT_S * 1000)
            yield page
        finally:
            browser.close()


def _ready_for_alerts(page: Page) -> None:
    """The alert screen, its live stream connected."""
    if not page.url.endswith("/alerts"):
        page.goto(page.url.split("/incidents")[0] + "/alerts")
    _when(page, "document.getElementById('live-state').textContent === 'live'")


def _view(page: Page, *, pressed_badge: str, incident: str) -> None:
    """Open the incident from its alert row, state why, and view the footage."""
    page.click(f'tr[data-incident="{incident}"] a')
    page.fill("input[name=justification]", f"answering the alert of {pressed_badge}")
    page.click("#view-form button")


def _when(page: Page, expression: str) -> int:
    """The monotonic ns at which ``expression`` was first seen true in the page."""
    deadline = time.monotonic() + WAIT_S
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{expression} stayed false for {WAIT_S} s")
    return time.monotonic_ns()


# ------------------------------------------------------------------ the badge process


def _recording() -> tuple[EncodedSegment, ...]:
    """Real segments from the badge's capture pipeline (synthetic camera, not real time)."""
    frames = round(PRE_ROLL_SEGMENTS * SEGMENT_NS / 1e9 * 30) + 1
    camera = SyntheticCamera(WIDTH, HEIGHT, 30, "bench", realtime=False, max_frames=frames)
    found: list[EncodedSegment] = []
    loop = CaptureLoop(camera, SyntheticMicrophone(realtime=False), CaptureSettings(), found.append)
    loop.start()
    if not loop.wait(120):
        raise RuntimeError("the capture pipeline did not finish recording")
    return tuple(found[:PRE_ROLL_SEGMENTS])


def _wait_for(ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {WAIT_S} s")
        time.sleep(0.01)


def _badge(bundle_dir: Path, data_dir: Path) -> int:
    """The pressing badge: answer ``press`` and ``close`` on stdin until it closes.

    Its footage keeps one monotonic clock of its own (2 s a segment), so segments and
    presses stay in order however quickly the presses follow each other.
    """
    recording = _recording()
    badge = PressingBadge.start(
        bundle_dir,
        data_dir,
        ring_pre_roll_ns=10 * SEGMENT_NS,
        pre_roll_ns=PRE_ROLL_SEGMENTS * SEGMENT_NS,
        post_roll_ns=POST_ROLL_NS,
    )
    bundle, ring, receipts, recorder = badge.bundle, badge.ring, badge.receipts, badge.recorder
    footage_ns = time.monotonic_ns()

    def store(encoded: EncodedSegment) -> None:
        nonlocal footage_ns
        wall = time.time_ns()
        facts = SegmentFacts(
            seq=ring.next_seq,
            boot=ring.boot,
            mono_start_ns=footage_ns,
            mono_end_ns=footage_ns + SEGMENT_NS,
            wall_start_ns=wall - SEGMENT_NS,
            wall_end_ns=wall,
            codec=encoded.codec.as_header_fields(),
            previous_header_sha256=ring.last_header_digest,
        )
        sealed = seal_segment(encoded.data, facts, bundle.identity, bundle.custodian_key)
        footage_ns += SEGMENT_NS
        recorder.segment_stored(ring.store(sealed))

    incident = ""
    for line in sys.stdin:
        if line.strip() == "press":
            for encoded in recording:  # the ring's pre-roll, recorded before the press
                store(encoded)
            pressed = time.monotonic_ns()
            incident = recorder.press(mono_ns=footage_ns - 1).incident_id
            badge.uplink.wake()
            print(incident, pressed, flush=True)
        elif line.strip() == "close":
            store(recording[0])  # the post-roll's segment: it closes the incident
            _wait_for(_receipted(receipts, incident), "the incident receipt")
            print("closed", flush=True)
    badge.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``badge BUNDLE DATA``: the pressing badge of the watch benchmark."""
    parser = argparse.ArgumentParser(prog="python -m bench.watch", description=__doc__)
    parser.add_argument("role", choices=["badge"])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("data", type=Path)
    args = parser.parse_args(argv)
    return _badge(args.bundle, args.data)


if __name__ == "__main__":
    sys.exit(main())
