"""Power-loss safety of the real badge daemon: SIGKILL at random moments, then restart.

After every kill, each segment file on flash must parse and verify, each pinned segment
seen before must still be there unchanged, neighbouring segments must link, and the
incident pressed during the run must end pinned and complete.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from badge.control import send_command
from badge.errors import ControlError
from evidence.chain import check_chain
from evidence.incident import SignedIncident
from evidence.keys import SigningPublicKey
from evidence.segment import SealedSegment
from tests.badge.conftest import EnrolledBadge

KILLS = 20


def start_badge(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "badge.cli", "--config", str(config), "run"],
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def wait_ready(socket_path: Path, process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the badge exited during start-up"
        try:
            send_command(socket_path, "status", timeout=1)
            return
        except ControlError:
            time.sleep(0.05)
    raise AssertionError("the badge did not start in time")


def check_flash(segments_dir: Path, key: SigningPublicKey) -> dict[int, bytes]:
    """Every finished segment parses and verifies, and neighbours link; return seq -> digest."""
    found: dict[int, SealedSegment] = {}
    for path in sorted(segments_dir.glob("*.mbseal")):
        segment = SealedSegment.read(path)
        segment.verify(key)
        found[segment.header.seq] = segment
    for seq, segment in found.items():
        if seq - 1 in found:
            assert segment.header.previous_header_sha256 == found[seq - 1].header.digest()
    return {seq: segment.header.digest() for seq, segment in found.items()}


def pin_ranges(ring_dir: Path) -> list[tuple[int, int | None]]:
    """The ring's pins as (first, last) seq ranges; last is None while the incident is open."""
    ranges = []
    for pin_file in (ring_dir / "pins").glob("*.json"):
        pin = json.loads(pin_file.read_text())
        ranges.append((pin["first_seq"], pin["last_seq"]))
    return ranges


def is_pinned(seq: int, ranges: list[tuple[int, int | None]]) -> bool:
    return any(first <= seq and (last is None or seq <= last) for first, last in ranges)


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing(
    enrolled_badge: EnrolledBadge, tmp_path: Path
) -> None:
    rng = random.Random(20261124)
    data = tmp_path / "data"
    config = tmp_path / "badge.toml"
    config.write_text(
        enrolled_badge.config_text(data, incident={"pre_roll_seconds": 2, "post_roll_seconds": 6})
    )
    socket_path, log = data / "control.sock", tmp_path / "badge.log"
    key = SigningPublicKey.load(enrolled_badge.bundle / "badge.pub")
    seen_pinned: dict[int, bytes] = {}
    incidents: set[str] = set()
    for kill in range(KILLS):
        process = start_badge(config, log)
        wait_ready(socket_path, process)
        if kill in (4, 6, 11, 12):  # presses open and extend incidents across several kills
            incidents.add(send_command(socket_path, "press")["incident"])
        time.sleep(rng.uniform(0.2, 2.5))
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        on_flash = check_flash(data / "ring" / "segments", key)
        for seq, digest in seen_pinned.items():
            assert on_flash.get(seq) == digest, (
                f"pinned segment {seq} lost or changed (kill {kill})"
            )
        ranges = pin_ranges(data / "ring")
        seen_pinned.update({seq: d for seq, d in on_flash.items() if is_pinned(seq, ranges)})

    # a last, clean run lets the open incident finish its post-roll
    process = start_badge(config, log)
    wait_ready(socket_path, process)
    records = [data / "incidents" / f"{incident}.incident" for incident in incidents]
    deadline = time.monotonic() + 30
    while not all(path.exists() for path in records) and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert not list((data / "ring" / "segments").glob("*.tmp"))

    on_flash = check_flash(data / "ring" / "segments", key)
    headers = {
        seq: SealedSegment.read(path).header
        for seq, path in ((int(p.stem), p) for p in (data / "ring" / "segments").glob("*.mbseal"))
    }
    ranges = pin_ranges(data / "ring")
    presses = 0
    for path in records:
        signed = SignedIncident.from_bytes(path.read_bytes())
        signed.verify(key)
        span = range(signed.record.first_seq, signed.record.last_seq + 1)
        assert all(seq in on_flash for seq in span), f"{path.name} is not complete on flash"
        assert all(is_pinned(seq, ranges) for seq in span), f"{path.name} is no longer pinned"
        report = check_chain([headers[seq] for seq in span])
        assert report.intact, report.breaks
        presses += len(signed.record.presses)
    assert presses == 4
