"""Verifying a court package against ``sha256sum`` over the same bytes, in the same run.

A real gateway (temporary data directory, enrolled badge, real Intake with the gateway's own
TSA) receives one incident of ``SEGMENTS`` sealed segments of ``SEGMENT_BYTES`` random bytes
each, chunk by chunk as a badge sends them, and exports it with ``gateway.export.export``. The
package (the segments plus ``clip.ts``, their concatenation: about 1 GiB) is then verified
with ``evidence.verify.verify_package`` and hashed with ``sha256sum``, alternately, and the
median times compared.

Honest choices. The plaintext is random bytes, not video, so the derived MP4 is left out
(``--no-mp4``): a remux of random bytes would fail, and an MP4 made from some other clip
would claim a lineage it does not have. ``sha256sum`` hashes the zip itself: those are
exactly the bytes ``evidence verify`` reads (it reads members at their offsets inside the
zip), and one file is the fairest case for ``sha256sum``. The figure also notes what
OpenSSL's SHA-256 alone achieves on the same bytes, since ``sha256sum`` may not use the
CPU's SHA extensions. Everything is removed afterwards.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.report import Figure
from demo.enrolment import enroll_badge
from evidence.bundle import EnrolmentBundle
from evidence.hashing import ZERO_DIGEST, sha256
from evidence.incident import IncidentRecord, Press, SignedIncident
from evidence.keys import HpkeSuite
from evidence.messages import SegmentChunk
from evidence.segment import SealedSegment, SegmentFacts, seal_segment
from evidence.topics import badge_topic
from evidence.verify import verify_package
from gateway.datadir import GatewayDataDir
from gateway.export.export import ExportRequest, export_incident
from gateway.intake.intake import Intake

SEGMENTS = 512
SEGMENT_BYTES = 1 << 20
"""About 2 s of 1080p30 H.264 at 4 Mbit/s, as in the seal benchmark."""
ROUNDS = 3
CHUNK_BYTES = 256 * 1024
BADGE = "bench-badge"
INCIDENT = "bench-incident"
_SEGMENT_NS = 2_000_000_000
_BLOCK = 1 << 20


def run(
    segments: int = SEGMENTS, segment_bytes: int = SEGMENT_BYTES, rounds: int = ROUNDS
) -> list[Figure]:
    """Build the package, then time verification and ``sha256sum`` alternately."""
    temp = Path(tempfile.mkdtemp(prefix="bench-verify-"))
    try:
        package = build_package(temp, segments, segment_bytes)
        return [measure(package, segments, segment_bytes, rounds)]
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def build_package(root: Path, segments: int, segment_bytes: int) -> Path:
    """A gateway in ``root`` receives one incident of random segments and exports it."""
    data_dir = fill_gateway(root, segments, segment_bytes)
    package = root / "package.zip"
    export_incident(
        data_dir,
        ExportRequest(INCIDENT, package, "bench", "throughput benchmark", derived_mp4=False),
    )
    shutil.rmtree(data_dir.root / "vault")  # the package is all that is measured
    return package


def fill_gateway(root: Path, segments: int, segment_bytes: int) -> GatewayDataDir:
    """A gateway in ``root / "gateway"`` that has received one incident of ``segments``
    random segments of ``segment_bytes``, chunk by chunk as a badge sends them."""
    data_dir = GatewayDataDir(root / "gateway")
    data_dir.initialise("Bench Hospital", HpkeSuite.X25519, None)
    enroll_badge(data_dir, BADGE, root / "bundle", wearer="Bench Nurse")
    bundle = EnrolmentBundle.load(root / "bundle")
    intake = Intake(
        data_dir,
        lambda topic, payload: None,
        lambda event: None,
        timestamper=data_dir.timestamper(),
    )
    try:
        intake.handle(badge_topic(BADGE, "incident"), _record(bundle, segments))
        previous = ZERO_DIGEST
        for seq in range(segments):
            sealed = _seal(bundle, seq, previous, segment_bytes)
            previous = sealed.header.digest()
            for chunk in _chunks(sealed):
                intake.handle(badge_topic(BADGE, "segment"), chunk)
    finally:
        intake.close()
    return data_dir


def _record(bundle: EnrolmentBundle, segments: int) -> bytes:
    record = IncidentRecord(
        badge_id=BADGE,
        incident_id=INCIDENT,
        presses=(Press(1, _SEGMENT_NS, _SEGMENT_NS),),
        pre_roll_ns=0,
        post_roll_ns=0,
        first_seq=0,
        last_seq=segments - 1,
        location="bench",
        battery_percent=None,
        storage_free_bytes=0,
        closed_wall_ns=segments * _SEGMENT_NS,
    )
    return SignedIncident.sign(record, bundle.identity).to_bytes()


def _seal(bundle: EnrolmentBundle, seq: int, previous: bytes, size: int) -> SealedSegment:
    start = seq * _SEGMENT_NS
    facts = SegmentFacts(
        seq=seq,
        boot=1,
        mono_start_ns=start,
        mono_end_ns=start + _SEGMENT_NS,
        wall_start_ns=start,
        wall_end_ns=start + _SEGMENT_NS,
        codec={"container": "mpegts", "video_codec": "h264", "width": 1920, "height": 1080},
        previous_header_sha256=previous,
    )
    return seal_segment(os.urandom(size), facts, bundle.identity, bundle.custodian_key)


def _chunks(sealed: SealedSegment) -> list[bytes]:
    data = sealed.to_bytes()
    count = -(-len(data) // CHUNK_BYTES)
    return [
        SegmentChunk(
            badge=BADGE,
            incident=INCIDENT,
            seq=sealed.header.seq,
            index=index,
            count=count,
            offset=index * CHUNK_BYTES,
            total_size=len(data),
            sealed_sha256=sha256(data),
            data=data[index * CHUNK_BYTES : (index + 1) * CHUNK_BYTES],
        ).to_bytes()
        for index in range(count)
    ]


def measure(package: Path, segments: int, segment_bytes: int, rounds: int) -> Figure:
    """Median times of ``evidence verify`` and ``sha256sum`` over ``package``, alternated."""
    size = package.stat().st_size
    _sha256sum(package)  # both read from the page cache from here on
    verify_times, sha256sum_times, openssl_times = [], [], []
    for _ in range(rounds):
        start = time.perf_counter()
        report = verify_package(package)
        verify_times.append(time.perf_counter() - start)
        if not report.verified:
            raise RuntimeError(f"the benchmark package does not verify: {report.findings[:3]}")
        start = time.perf_counter()
        _sha256sum(package)
        sha256sum_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        _openssl_sha256(package)
        openssl_times.append(time.perf_counter() - start)
    verify_s = statistics.median(verify_times)
    sha256sum_s = statistics.median(sha256sum_times)
    openssl_s = statistics.median(openssl_times)
    megabytes = size / 1e6
    return Figure(
        name="verify",
        value=megabytes / verify_s,
        unit="MB/s",
        limit_value=megabytes / sha256sum_s,
        ratio=sha256sum_s / verify_s,
        goal=">= 0.9 (sha256sum time / verify time)",
        note=(
            f"package {size / 2**20:.0f} MiB: {segments} segments of {segment_bytes} random "
            "bytes and clip.ts, no derived MP4; sha256sum over the zip itself; SHA-256 alone "
            f"(OpenSSL, one pass) {megabytes / openssl_s:.0f} MB/s"
        ),
    )


def _sha256sum(path: Path) -> None:
    subprocess.run(["sha256sum", str(path)], check=True, capture_output=True, timeout=600)


def _openssl_sha256(path: Path) -> None:
    digest = hashlib.sha256()
    with path.open("rb", buffering=0) as stream:
        while block := stream.read(_BLOCK):
            digest.update(block)
