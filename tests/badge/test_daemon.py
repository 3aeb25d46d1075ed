"""The badge daemon end to end on the synthetic camera: presses, incidents, coverage, audio."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory

from badge.daemon import BadgeDaemon
from evidence.chain import check_chain
from evidence.incident import SignedIncident
from evidence.keys import CustodianPrivateKey
from evidence.segment import SealedSegment
from tests.badge.conftest import EnrolledBadge

SECOND = 1_000_000_000


def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.05)


@pytest.fixture
def pins() -> MockFactory:
    return MockFactory()


@pytest.fixture
def daemon(
    enrolled_badge: EnrolledBadge, tmp_path: Path, pins: MockFactory
) -> Iterator[BadgeDaemon]:
    running = BadgeDaemon(enrolled_badge.config(tmp_path / "data"), pin_factory=pins)
    running.start()
    yield running
    running.stop()


def press_button(pins: MockFactory, bounces: int = 0) -> int:
    """Press pin 17 (pulled up: pressed = low), with contact bounce; return the press time."""
    pin = pins.pin(17)
    pressed_at = time.monotonic_ns()
    pin.drive_low()
    for _ in range(bounces):
        time.sleep(0.003)
        pin.drive_high()
        time.sleep(0.003)
        pin.drive_low()
    time.sleep(0.02)
    pin.drive_high()
    return pressed_at


def ffprobe(path: Path) -> dict[str, object]:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-count_frames", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_presses_make_one_incident_that_covers_pre_and_post_roll(
    daemon: BadgeDaemon, pins: MockFactory, enrolled_badge: EnrolledBadge, tmp_path: Path
) -> None:
    time.sleep(4.5)  # more than the 3 s pre-roll
    first = press_button(pins, bounces=3)
    time.sleep(1.0)
    last = press_button(pins, bounces=3)
    wait_until(lambda: daemon.recorder.closed_count == 1, timeout=20)

    (record_path,) = (tmp_path / "data" / "incidents").glob("*.incident")
    incident = SignedIncident.from_bytes(record_path.read_bytes())
    incident.verify(daemon.bundle.identity.signing_key.public_key)
    record = incident.record
    assert len(record.presses) == 2, "a bounce must not count as a press"
    assert abs(record.presses[0].mono_ns - first) < 0.1 * SECOND
    assert record.location == "ER 3"

    stored = daemon.ring.segments(record.first_seq, record.last_seq)
    assert [s.seq for s in stored] == list(range(record.first_seq, record.last_seq + 1))
    headers = [s.header for s in stored]
    assert check_chain(headers).intact
    segment = SECOND  # segment_seconds = 1.0
    assert headers[0].mono_start_ns <= first - 3 * SECOND + segment
    assert headers[-1].mono_end_ns >= last + 2 * SECOND
    assert headers[-1].mono_end_ns <= last + 2 * SECOND + segment + SECOND // 2

    # the custodian opens the clip; it plays as one, with sound (pre-roll audio is on)
    clip = tmp_path / "clip.ts"
    clip.write_bytes(
        b"".join(SealedSegment.read(s.path).open(enrolled_badge.custodian) for s in stored)
    )
    streams = ffprobe(clip)["streams"]
    assert isinstance(streams, list)
    assert {stream["codec_type"] for stream in streams} == {"video", "audio"}
    video = next(stream for stream in streams if stream["codec_type"] == "video")
    assert (
        int(video["nb_read_frames"])
        == round(sum(h.mono_end_ns - h.mono_start_ns for h in headers) * 30 / SECOND)
    )


def loudest_sample(sealed: Path, custodian: CustodianPrivateKey) -> float:
    """The largest absolute sample (full scale 1.0) of a sealed segment's sound, opened with
    the custodian key and decoded whole; fails if the segment has no audio stream."""
    clip = SealedSegment.read(sealed).open(custodian)
    with av.open(io.BytesIO(clip), mode="r", format="mpegts") as container:
        (stream,) = container.streams.audio
        peaks = [float(np.abs(frame.to_ndarray()).max()) for frame in container.decode(stream)]
    assert peaks, f"{sealed.name} has an audio stream but no decoded sound"
    return max(peaks)


@pytest.mark.parametrize("pre_roll_audio", [False, True])
def test_pre_roll_audio_off_silences_the_footage_before_the_press(
    enrolled_badge: EnrolledBadge, tmp_path: Path, pre_roll_audio: bool
) -> None:
    config = enrolled_badge.config(
        tmp_path / "data", capture={"pre_roll_audio": pre_roll_audio}
    )
    daemon = BadgeDaemon(config)
    daemon.start()
    try:
        wait_until(lambda: len(daemon.ring.segments(0)) >= 3, timeout=10)
        pressed_at = time.monotonic_ns()
        first, last = daemon.press()["pre_roll"]  # what was stored before the press
        answered_at = time.monotonic_ns()
        wait_until(lambda: daemon.recorder.closed_count == 1, timeout=20)
    finally:
        daemon.stop()

    before = daemon.ring.segments(first, last)
    after = [
        stored
        for stored in daemon.ring.segments(last + 1)
        if stored.header.mono_start_ns > pressed_at + SECOND // 2
    ]
    assert len(before) >= 2 and after, "footage from both sides of the press"
    assert all(stored.header.mono_end_ns <= answered_at for stored in before)
    custodian = enrolled_badge.custodian
    loudest_before = [loudest_sample(stored.path, custodian) for stored in before]
    loudest_after = [loudest_sample(stored.path, custodian) for stored in after]
    # the synthetic microphone's quiet tone alone peaks at 0.05, its beep at 0.45
    assert all(peak > 0.03 for peak in loudest_after), loudest_after
    if pre_roll_audio:
        assert all(peak > 0.03 for peak in loudest_before), loudest_before
    else:
        # the stream is there, so the clip plays as one, but it holds only silence
        assert all(peak < 1e-4 for peak in loudest_before), loudest_before


def test_unpinned_footage_does_not_outlive_the_pre_roll(daemon: BadgeDaemon) -> None:
    time.sleep(7)
    status = daemon.status()
    assert status["ring"]["pinned_segments"] == 0
    newest = daemon.ring.segments(0)[-1].header.mono_end_ns
    for stored in daemon.ring.segments(0)[:-1]:
        # every kept segment is needed to cover the 3 s window ending at the newest
        assert stored.header.mono_end_ns > newest - 3 * SECOND - SECOND


def test_status_and_press_through_the_control_socket(daemon: BadgeDaemon, tmp_path: Path) -> None:
    from badge.control import send_command

    socket_path = tmp_path / "data" / "control.sock"
    wait_until(lambda: len(daemon.ring.segments(0)) >= 2, 10)
    answer = send_command(socket_path, "press")
    assert answer["opened"] is True
    first, last = answer["pre_roll"]  # what was stored before the press, pinned from its first
    (pin,) = daemon.ring.pins()
    assert (pin.incident_id, pin.first_seq) == (answer["incident"], first)
    assert last >= first and daemon.ring.segments(first, last)[-1].seq == last
    again = send_command(socket_path, "press")
    assert (again["opened"], again["incident"], again["pre_roll"]) == (
        False,
        answer["incident"],
        None,
    ), "a second press extends the incident and pins nothing new"
    status = send_command(socket_path, "status")
    assert status["recording_incident"] == answer["incident"]
    assert status["outbox_pending"] == 1  # the alert is queued before anything else
    assert daemon.outbox.pending()[0].kind == "alert"


@pytest.fixture
def vanished_supervisor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """NOTIFY_SOCKET names a socket nobody listens on any more; the signal handlers that
    ``run`` installs are put back afterwards."""
    path = Path(tempfile.mkdtemp(prefix="mb-", dir="/tmp")) / "notify"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.close()
    path.unlink()
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    handlers = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    yield
    for number, previous in handlers.items():
        signal.signal(number, previous)
    path.parent.rmdir()


def test_run_stops_cleanly_and_warns_once_when_systemd_has_gone(
    enrolled_badge: EnrolledBadge,
    tmp_path: Path,
    vanished_supervisor: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    daemon = BadgeDaemon(enrolled_badge.config(tmp_path / "data"))
    socket_path = tmp_path / "data" / "control.sock"
    threading.Timer(3.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
    with caplog.at_level(logging.INFO):
        assert daemon.run() == 0
    warnings = [r for r in caplog.records if "could not notify systemd" in r.getMessage()]
    assert len(warnings) == 1, "READY, three WATCHDOGs and STOPPING all failed: one warning"
    assert "badge stopped cleanly" in caplog.text
    assert not socket_path.exists()


def test_run_stops_everything_even_when_supervising_fails(
    enrolled_badge: EnrolledBadge,
    tmp_path: Path,
    vanished_supervisor: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    daemon = BadgeDaemon(enrolled_badge.config(tmp_path / "data"))

    def broken() -> bool:
        raise RuntimeError("the watchdog loop failed")

    monkeypatch.setattr(daemon, "_supervise", broken)
    with caplog.at_level(logging.INFO), pytest.raises(RuntimeError, match="watchdog loop"):
        daemon.run()
    assert "badge stopped cleanly" in caplog.text
    assert not (tmp_path / "data" / "control.sock").exists()


def test_heartbeats_and_incidents_carry_the_fuel_gauges_reading(
    enrolled_badge: EnrolledBadge, tmp_path: Path, pins: MockFactory
) -> None:
    from badge.fuel_gauge import ADDRESS
    from tests.fakes.fake_smbus2 import FakeMax17048, FakeSMBus

    chip = FakeMax17048()
    chip.set_battery(millivolts=3_650, percent=18.2, rate_percent_per_hour=-6.24)
    FakeSMBus.adapters = {1: {ADDRESS: chip}}
    config = enrolled_badge.config(
        tmp_path / "data", incident={"post_roll_seconds": 0}, battery={"poll_seconds": 1}
    )
    running = BadgeDaemon(config, pin_factory=pins, smbus=FakeSMBus)
    running.start()
    try:
        wait_until(lambda: running.battery.reads >= 1, timeout=5)
        beat = running.heartbeat()
        assert beat.battery_percent == 18
        assert beat.battery_millivolts == 3_650
        assert beat.battery_rate_millipercent_per_hour == -30 * 208
        assert beat.clock_synchronised in (True, False)  # the kernel answers on Linux
        assert running.status()["battery"] == {
            "gauge": "max17048",
            "percent": 18,
            "millivolts": 3_650,
            "rate_millipercent_per_hour": -6_240,
        }
        running.press()
        wait_until(lambda: running.recorder.closed_count == 1, timeout=20)
    finally:
        running.stop()
        FakeSMBus.adapters = {}
    (record_path,) = (tmp_path / "data" / "incidents").glob("*.incident")
    assert SignedIncident.from_bytes(record_path.read_bytes()).record.battery_percent == 18


def test_a_badge_without_a_gauge_reports_the_battery_as_unknown(
    enrolled_badge: EnrolledBadge, tmp_path: Path, pins: MockFactory
) -> None:
    config = enrolled_badge.config(tmp_path / "data", battery={"gauge": "none"})
    running = BadgeDaemon(config, pin_factory=pins)
    assert not running.battery.fitted
    beat = running.heartbeat()
    assert (beat.battery_percent, beat.battery_millivolts) == (None, None)
    assert beat.battery_rate_millipercent_per_hour is None
    running.outbox.close()
    running.receipts.close()
