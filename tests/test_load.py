"""Load: 200 badges connected and heartbeating while 20 of them upload an incident at once.

A real ``gateway run`` process and a real mosquitto (the demo's configuration, TLS), 200
badges enrolled through the enrolment API, each on its own broker connection with its own
login (:mod:`bench.fleet`: a few threads drive them all). Every badge sends signed
heartbeats throughout; 20 of them at the same moment send a whole incident: alert, signed
record and six sealed 1 MB segments in 256 KiB chunks. Nothing may be lost (every upload
receipted, each receipt verifying under the gateway's key and naming the SHA-256 sent; every
heartbeat's clock sample stored), and the gateway's resident memory, sampled from /proc
throughout, must stay bounded and must not grow with the bytes uploaded: it streams to disk.
"""

from __future__ import annotations

import contextlib
import resource
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.fleet import Fleet, FleetUpload, incident_upload
from bench.loopback import BenchHospital
from evidence.hashing import sha256
from gateway.storage.vault import DirectoryVault

BADGES = 200
UPLOADERS = 20
SEGMENTS = 6
PLAINTEXT_BYTES = 1_000_000
HEARTBEAT_S = 1.0
"""Ten times the default rate, so the intake handles heartbeats between every few chunks."""
RSS_LIMIT_BYTES = 300 * 1024 * 1024
GROWTH_SHARE = 0.5
"""Holding the uploads in memory would grow the gateway by at least what was uploaded."""
FILES_NEEDED = 4 * BADGES
"""Descriptors for the test's connections and, inherited, mosquitto's."""


class RssSampler:
    """Samples a process's resident memory every 50 ms in a thread."""

    def __init__(self, read: Callable[[], int]) -> None:
        """``read`` returns the current resident bytes."""
        self._read = read
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)

    def start(self) -> None:
        """Start sampling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while True:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                self.samples.append(self._read())
            if self._stop.wait(0.05):
                return


def raise_file_limit() -> None:
    """Make sure this process (and the broker it starts) may open enough files."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= FILES_NEEDED:
        return
    if hard != resource.RLIM_INFINITY and hard < FILES_NEEDED:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below the {FILES_NEEDED} needed")
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILES_NEEDED, hard))


def wait_until(ready: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(0.1)


def stored_samples(database: Path) -> dict[str, set[int]]:
    """The gateway's clock samples: one per heartbeat it processed, by badge."""
    with contextlib.closing(sqlite3.connect(database)) as db:
        rows = db.execute("SELECT badge_id, mono_ns FROM clock_samples").fetchall()
    found: dict[str, set[int]] = {}
    for badge_id, mono_ns in rows:
        found.setdefault(badge_id, set()).add(mono_ns)
    return found


def test_200_badges_heartbeat_while_20_upload_and_nothing_is_lost(tmp_path: Path) -> None:
    raise_file_limit()
    hospital = BenchHospital(tmp_path, BADGES, prefix="load-badge")
    fleet: Fleet | None = None
    sampler = RssSampler(hospital.gateway_rss_bytes)
    try:
        hospital.start()
        bundles = hospital.bundles()
        uploads: dict[str, FleetUpload] = {
            bundle.identity.badge_id: incident_upload(
                bundle,
                f"20260101t000000-{number:06x}",
                segments=SEGMENTS,
                plaintext_bytes=PLAINTEXT_BYTES,
            )
            for number, bundle in enumerate(bundles[:UPLOADERS])
        }
        fleet = Fleet(bundles, heartbeat_seconds=HEARTBEAT_S)
        sampler.start()
        fleet.start()
        fleet.wait_connected(60)
        time.sleep(HEARTBEAT_S)  # every badge has heartbeated before the uploads begin
        baseline = hospital.gateway_rss_bytes()
        uploaders = [fleet.badge(badge_id) for badge_id in uploads]
        for badge in uploaders:
            badge.request_upload(uploads[badge.badge_id])
        fleet.wait_uploaded(uploaders, 60)
        time.sleep(HEARTBEAT_S)  # and heartbeats go on being handled afterwards
        fleet.stop_heartbeats()
        sent = {badge.badge_id: set(badge.heartbeats) for badge in fleet.badges}
        total = sum(len(monos) for monos in sent.values())
        database = hospital.gateway_data / "gateway.db"
        wait_until(
            lambda: sum(map(len, stored_samples(database).values())) >= total,
            30,
            f"all {total} heartbeats stored",
        )
        sampler.stop()
    finally:
        sampler.stop()
        if fleet is not None:
            fleet.stop()
        hospital.stop()

    # nothing lost, nothing refused, every answer genuine
    for badge in fleet.badges:
        assert not badge.lost, badge.badge_id
        assert badge.rejections == [], (badge.badge_id, badge.rejections)
        assert badge.invalid == [], (badge.badge_id, badge.invalid)
    for badge in uploaders:
        assert badge.uploaded, badge.badge_id  # every receipt, each naming the SHA-256 sent
    # heartbeats kept coming while the uploads were in flight, and every one of them was
    # processed: one clock sample each, none invented
    started = min(badge.upload_started_ns or 0 for badge in uploaders)
    finished = max(badge.upload_done_ns or 0 for badge in uploaders)
    during = sum(started <= mono <= finished for monos in sent.values() for mono in monos)
    assert during >= BADGES, f"only {during} heartbeats were sent during the uploads"
    assert stored_samples(database) == sent
    # the gateway holds exactly the uploads, each segment once, each file what was receipted
    uploaded_bytes = sum(upload.segment_bytes for upload in uploads.values())
    with contextlib.closing(sqlite3.connect(database)) as db:
        incidents = db.execute(
            "SELECT badge_id FROM incidents WHERE complete_wall_ns IS NOT NULL"
        ).fetchall()
        segments = db.execute("SELECT badge_id, seq, sealed_sha256 FROM segments").fetchall()
        online = db.execute("SELECT COUNT(*) FROM badge_state WHERE online = 1").fetchone()[0]
    assert sorted(row[0] for row in incidents) == sorted(uploads)
    assert len(segments) == UPLOADERS * SEGMENTS
    assert online == BADGES
    vault = DirectoryVault(hospital.gateway_data / "vault")
    for badge_id, seq, digest in segments:
        assert uploads[badge_id].expected["segment", str(seq)] == bytes(digest)
        with vault.open(bytes(digest)) as stream:
            assert sha256(stream.read()) == bytes(digest)
    assert sum(path.stat().st_size for path in vault.root.rglob("*.mbseal")) == uploaded_bytes
    # memory: bounded, and not growing with what was uploaded (the intake streams to disk)
    peak = max(sampler.samples)
    assert peak < RSS_LIMIT_BYTES, f"gateway peak RSS {peak / 2**20:.0f} MiB"
    growth = peak - baseline
    assert growth < GROWTH_SHARE * uploaded_bytes, (
        f"gateway RSS grew {growth / 2**20:.1f} MiB while {uploaded_bytes / 2**20:.1f} MiB "
        "were uploaded"
    )
