"""The pre-event ring keeps the pre-roll window and every pinned segment, and survives crashes."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from badge.errors import RingError, StorageFullError
from badge.ring import Ring, StoredSegment
from evidence import durable
from evidence.chain import FindingKind, check_chain
from evidence.hashing import ZERO_DIGEST, sha256
from evidence.keys import BadgeIdentity, CustodianPrivateKey, SigningKey
from evidence.segment import SealedSegment
from tests.badge.recording import SEGMENT_NS, Recorder
from tests.small_filesystem import CappedWrites, small_filesystem

MINUTE_NS = 60_000_000_000


@pytest.fixture(scope="module")
def identity() -> BadgeIdentity:
    return BadgeIdentity.generate("ward-3-badge")


@pytest.fixture(scope="module")
def custodian() -> CustodianPrivateKey:
    return CustodianPrivateKey.generate()


@pytest.fixture
def recorder(identity: BadgeIdentity, custodian: CustodianPrivateKey) -> Recorder:
    return Recorder(identity, custodian)


def open_ring(directory: Path, pre_roll_ns: int = MINUTE_NS, max_bytes: int = 1 << 30) -> Ring:
    return Ring.open(directory, pre_roll_ns=pre_roll_ns, max_bytes=max_bytes)


def files_in(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def seqs(stored: list[StoredSegment]) -> list[int]:
    return [segment.seq for segment in stored]


def temp_files(directory: Path) -> list[Path]:
    return [path for path in directory.rglob("*") if path.name.endswith(".tmp")]


# ------------------------------------------------------------------ round trip


def test_stored_segments_read_back_verify_open_and_chain(
    tmp_path: Path, recorder: Recorder, identity: BadgeIdentity, custodian: CustodianPrivateKey
) -> None:
    ring = open_ring(tmp_path / "ring")
    assert (ring.boot, ring.next_seq, ring.last_header_digest) == (1, 0, ZERO_DIGEST)
    recorder.store(ring, 5)

    stored = ring.segments(0)
    assert seqs(stored) == [0, 1, 2, 3, 4]
    assert files_in(tmp_path / "ring" / "segments") == [f"{seq:012d}.mbseal" for seq in range(5)]
    read_back = [SealedSegment.read(segment.path) for segment in stored]
    for segment, sealed in zip(stored, read_back, strict=True):
        sealed.verify(identity.signing_key.public_key)
        assert sealed.open(custodian) == recorder.plaintexts[segment.seq]
        assert segment.size == segment.path.stat().st_size
        assert sealed.header == segment.header
    report = check_chain([sealed.header for sealed in read_back], expected_previous=ZERO_DIGEST)
    assert report.intact and not report.findings
    assert ring.next_seq == 5
    assert ring.last_header_digest == read_back[-1].header.digest()
    assert seqs(ring.segments(1, 3)) == [1, 2, 3]


def test_a_stored_segment_carries_the_sha256_of_its_file_until_restart(
    tmp_path: Path, recorder: Recorder
) -> None:
    directory = tmp_path / "ring"
    ring = open_ring(directory)
    recorder.store(ring, 2)
    for stored in ring.segments(0):
        assert stored.sealed_sha256 == sha256(stored.path.read_bytes())
    # found at start, the digest is not known: whoever needs it hashes the file
    assert [stored.sealed_sha256 for stored in open_ring(directory).segments(0)] == [None, None]


def test_store_refuses_a_segment_that_does_not_continue_the_chain(
    tmp_path: Path, recorder: Recorder
) -> None:
    ring = open_ring(tmp_path)
    first = recorder.seal(ring, 0)
    ring.store(first)
    with pytest.raises(RingError, match="does not continue the chain"):
        ring.store(first)
    assert seqs(ring.segments(0)) == [0]


# --------------------------------------------------------------------- restart


def test_restart_continues_seq_boot_and_chain(tmp_path: Path, recorder: Recorder) -> None:
    directory = tmp_path / "ring"
    ring = open_ring(directory)
    ring.pin("shift-start", 0)  # keep everything so the whole chain can be read back
    recorder.store(ring, 3)

    ring = open_ring(directory)
    assert ring.boot == 2
    assert (directory / "boot").read_text() == "2\n"
    assert ring.next_seq == 3
    recorder.store(ring, 3)  # the monotonic clock restarts at 0 after a reboot

    headers = [stored.header for stored in ring.segments(0)]
    assert [(h.seq, h.boot) for h in headers] == [(0, 1), (1, 1), (2, 1), (3, 2), (4, 2), (5, 2)]
    report = check_chain(headers, expected_previous=ZERO_DIGEST)
    assert report.intact
    assert [(f.kind, f.seq) for f in report.findings] == [(FindingKind.REBOOT, 3)]


def test_chain_continues_after_the_newest_segments_were_released(
    tmp_path: Path, recorder: Recorder
) -> None:
    directory = tmp_path / "ring"
    ring = open_ring(directory)
    recorder.store(ring, 3)
    newest = ring.segments(0)[-1].header
    for seq in range(3):
        assert ring.release(seq)
    assert not ring.release(2)
    assert files_in(directory / "segments") == []

    ring = open_ring(directory)
    assert ring.next_seq == 3
    assert ring.last_header_digest == newest.digest()
    recorder.store(ring, 1)
    report = check_chain([newest, ring.segments(3)[0].header])
    assert report.intact
    assert [f.kind for f in report.findings] == [FindingKind.REBOOT]


def test_a_segment_renamed_before_the_chain_head_was_updated_is_the_head(
    tmp_path: Path, recorder: Recorder
) -> None:
    # A power cut between the segment's rename and the chain head's leaves the file newer.
    directory = tmp_path / "ring"
    ring = open_ring(directory)
    recorder.store(ring, 2)
    orphan = recorder.seal(ring, 2)
    (directory / "segments" / "000000000002.mbseal").write_bytes(orphan.to_bytes())

    ring = open_ring(directory)
    assert ring.next_seq == 3
    assert ring.last_header_digest == orphan.header.digest()


def test_partial_temp_files_are_removed_at_open(tmp_path: Path, recorder: Recorder) -> None:
    directory = tmp_path / "ring"
    ring = open_ring(directory)
    recorder.store(ring, 1)
    (directory / "segments" / "000000000001.mbseal.tmp").write_bytes(b"MBSEAL\x00\x01 half")
    (directory / "pins" / "incident-9.json.tmp").write_bytes(b'{"form')
    (directory / "chain-head.tmp").write_bytes(b"")

    ring = open_ring(directory)
    assert temp_files(directory) == []
    assert seqs(ring.segments(0)) == [0]
    assert ring.next_seq == 1
    assert ring.pins() == ()


def test_corrupt_files_are_quarantined_not_dropped(tmp_path: Path, recorder: Recorder) -> None:
    directory = tmp_path / "ring"
    ring = open_ring(directory)
    ring.pin("shift-start", 0)
    recorder.store(ring, 4)
    last_digest = ring.last_header_digest
    segments = directory / "segments"
    truncated = (segments / "000000000001.mbseal").read_bytes()[:-10]
    (segments / "000000000001.mbseal").write_bytes(truncated)
    (segments / "000000000003.mbseal").write_bytes(b"not a sealed segment")
    (segments / "notes.txt").write_bytes(b"stray")

    ring = open_ring(directory)
    assert seqs(ring.segments(0)) == [0, 2]
    quarantine = directory / "quarantine"
    assert files_in(quarantine) == ["000000000001.mbseal", "000000000003.mbseal", "notes.txt"]
    assert (quarantine / "000000000001.mbseal").read_bytes() == truncated
    assert sorted(path.name for path in ring.quarantined) == files_in(quarantine)
    # The newest file was lost, but the chain head still continues from it.
    assert ring.next_seq == 4
    assert ring.last_header_digest == last_digest


def test_a_corrupt_pin_file_holds_everything_rather_than_nothing(
    tmp_path: Path, recorder: Recorder
) -> None:
    directory = tmp_path / "ring"
    ring = open_ring(directory, pre_roll_ns=SEGMENT_NS)
    ring.pin("incident-7", 0, 1)
    recorder.store(ring, 3)
    (directory / "pins" / "incident-7.json").write_bytes(b"\x00garbage")

    ring = open_ring(directory, pre_roll_ns=SEGMENT_NS)
    assert files_in(directory / "quarantine") == ["incident-7.json"]
    pins = ring.pins()
    assert [(p.incident_id, p.first_seq, p.last_seq) for p in pins] == [("incident-7", 0, None)]
    recorder.store(ring, 3)
    assert seqs(ring.segments(0)) == [0, 1, 2, 3, 4, 5]
    ring.unpin("incident-7")
    assert seqs(ring.segments(0)) == [5]


# ------------------------------------------------------------ pre-roll window


def test_unpinned_segments_older_than_the_window_are_deleted(
    tmp_path: Path, recorder: Recorder
) -> None:
    pre_roll = 10 * SEGMENT_NS // 2  # ten seconds: five two-second segments
    directory = tmp_path / "ring"
    ring = open_ring(directory, pre_roll_ns=pre_roll)
    for index in range(20):
        ring.store(recorder.seal(ring, index))
        kept = ring.segments(0)
        window_start = (index + 1) * SEGMENT_NS - pre_roll
        # Covered: the oldest kept segment starts at or before the window (once there is one).
        assert kept[0].header.mono_start_ns <= max(window_start, 0)
        # Private: nothing kept ends at or before the window's start.
        assert all(stored.header.mono_end_ns > window_start for stored in kept)
        assert seqs(kept) == list(range(max(0, index - 4), index + 1))
        assert files_in(directory / "segments") == [stored.path.name for stored in kept]
    status = ring.status()
    assert (status.segments, status.oldest_seq, status.newest_seq) == (5, 15, 19)
    assert status.bytes_used == sum(stored.size for stored in ring.segments(0))


def test_unpinned_segments_of_an_earlier_boot_go_at_the_first_store(
    tmp_path: Path, recorder: Recorder
) -> None:
    directory = tmp_path / "ring"
    ring = open_ring(directory)
    recorder.store(ring, 4)
    ring.pin("incident-1", 1, 2)

    ring = open_ring(directory)
    assert seqs(ring.segments(0)) == [0, 1, 2, 3]  # opening alone deletes nothing
    recorder.store(ring, 1)
    assert seqs(ring.segments(0)) == [1, 2, 4]
    assert ring.pinned_seqs() == frozenset({1, 2})


def test_unpinning_prunes_what_the_pin_held(tmp_path: Path, recorder: Recorder) -> None:
    ring = open_ring(tmp_path, pre_roll_ns=2 * SEGMENT_NS)
    ring.pin("incident-1", 0)
    recorder.store(ring, 6)
    assert seqs(ring.segments(0)) == [0, 1, 2, 3, 4, 5]
    ring.close_pin("incident-1", 2)
    recorder.store(ring, 1, first_index=6)
    assert seqs(ring.segments(0)) == [0, 1, 2, 5, 6]
    ring.unpin("incident-1")
    ring.unpin("incident-1")  # a repeated receipt is harmless
    assert seqs(ring.segments(0)) == [5, 6]
    assert files_in(tmp_path / "pins") == []


def test_seqs_covering_finds_the_first_segment_ending_after_a_time(
    tmp_path: Path, recorder: Recorder
) -> None:
    ring = open_ring(tmp_path)
    recorder.store(ring, 5)  # segments end at 2, 4, 6, 8, 10 s
    assert ring.seqs_covering(0, ring.boot) == 0
    assert ring.seqs_covering(1_500_000_000, ring.boot) == 0
    assert ring.seqs_covering(2_000_000_000, ring.boot) == 1
    assert ring.seqs_covering(9_000_000_000, ring.boot) == 4
    assert ring.seqs_covering(10_000_000_000, ring.boot) == 5  # the next one to be sealed
    assert ring.seqs_covering(0, ring.boot - 1) == 5
    assert ring.first_seq_after(9_000_000_000) == 4


def test_pin_since_holds_the_pre_roll_and_everything_after(
    tmp_path: Path, recorder: Recorder
) -> None:
    ring = open_ring(tmp_path, pre_roll_ns=3 * SEGMENT_NS)
    recorder.store(ring, 5)  # kept: segments 2, 3, 4 (ending at 6, 8, 10 s)
    pin = ring.pin_since("incident-1", 7_000_000_000)
    assert (pin.first_seq, pin.last_seq) == (3, None)
    recorder.store(ring, 5, first_index=5)
    assert seqs(ring.segments(0)) == list(range(3, 10))


def test_without_pre_roll_only_the_newest_segment_stays(tmp_path: Path, recorder: Recorder) -> None:
    ring = open_ring(tmp_path, pre_roll_ns=0)
    for index in range(3):
        stored = ring.store(recorder.seal(ring, index))
        assert stored.path.exists()
        assert seqs(ring.segments(0)) == [index]


# ------------------------------------------------------------------------ pins


def test_pins_survive_reopen_and_hold_later_segments(tmp_path: Path, recorder: Recorder) -> None:
    directory = tmp_path / "ring"
    ring = open_ring(directory, pre_roll_ns=SEGMENT_NS)
    recorder.store(ring, 1)
    ring.pin("incident-1", 0, 0)
    ring.pin("incident-2", 1)  # still open: holds every later segment
    recorder.store(ring, 3, first_index=1)
    fields = json.loads((directory / "pins" / "incident-2.json").read_bytes())
    assert (fields["first_seq"], fields["last_seq"]) == (1, None)

    ring = open_ring(directory, pre_roll_ns=SEGMENT_NS)
    assert [(p.incident_id, p.first_seq, p.last_seq) for p in ring.pins()] == [
        ("incident-1", 0, 0),
        ("incident-2", 1, None),
    ]
    recorder.store(ring, 2)
    assert seqs(ring.segments(0)) == [0, 1, 2, 3, 4, 5]
    ring.close_pin("incident-2", 4)
    recorder.store(ring, 1, first_index=2)
    assert seqs(ring.segments(0)) == [0, 1, 2, 3, 4, 6]
    assert ring.pinned_seqs() == frozenset({0, 1, 2, 3, 4})


def test_pins_are_validated(tmp_path: Path) -> None:
    ring = open_ring(tmp_path)
    with pytest.raises(RingError, match="incident id"):
        ring.pin("../escape", 0)
    with pytest.raises(RingError, match="empty range"):
        ring.pin("incident-1", 5, 4)
    with pytest.raises(RingError, match="not pinned"):
        ring.close_pin("incident-2", 3)
    assert files_in(tmp_path / "pins") == []


# ------------------------------------------------------------------ byte bound


def largest_size(tmp_path: Path, recorder: Recorder, plaintext_size: int) -> int:
    """The file size of a sealed segment late in a boot (larger clocks: the longest header)."""
    probe = recorder.seal(open_ring(tmp_path / "probe"), 1000, size=plaintext_size)
    return len(probe.to_bytes())


def test_byte_bound_evicts_the_oldest_unpinned_first(tmp_path: Path, recorder: Recorder) -> None:
    size = largest_size(tmp_path, recorder, 4000)
    ring = open_ring(tmp_path / "ring", max_bytes=5 * size)
    recorder.store(ring, 3, size=4000)
    ring.pin("incident-1", 1, 1)
    recorder.store(ring, 5, first_index=3, size=4000)
    assert seqs(ring.segments(0)) == [1, 4, 5, 6, 7]
    assert ring.status().bytes_used <= 5 * size


def test_pinned_segments_are_never_deleted_even_when_full(
    tmp_path: Path, recorder: Recorder
) -> None:
    size = largest_size(tmp_path, recorder, 4000)
    directory = tmp_path / "ring"
    ring = open_ring(directory, max_bytes=4 * size)
    ring.pin("incident-1", 0)
    recorder.store(ring, 4, size=4000)
    assert not ring.status().full

    with pytest.raises(StorageFullError, match="4 pinned segments"):
        ring.store(recorder.seal(ring, 4, size=4000))
    status = ring.status()
    assert status.full
    assert (status.segments, status.pinned_segments, status.newest_seq) == (4, 4, 3)
    assert ring.next_seq == 4  # the failed segment consumed no seq
    assert files_in(directory / "segments") == [f"{seq:012d}.mbseal" for seq in range(4)]
    assert temp_files(directory) == []

    ring.close_pin("incident-1", 1)
    ring.store(recorder.seal(ring, 4, size=4000))
    assert not ring.status().full
    assert seqs(ring.segments(0)) == [0, 1, 3, 4]
    report = check_chain([stored.header for stored in ring.segments(3)])
    assert report.intact


# ---------------------------------------------------------------- ENOSPC

TINY = 2 * 1024 * 1024


@dataclass(frozen=True)
class TinyDisk:
    """A file system of ``TINY`` bytes for the ring, and how much of it is still free."""

    path: Path
    free_bytes: Callable[[], int]


@pytest.fixture(params=["tmpfs", "capped-writes"])
def tiny_filesystem(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TinyDisk]:
    """A 2 MiB file system, so storing runs out of space: a real tmpfs (mounting needs root),
    and the same capacity imposed on the ring's durable writes, which needs none."""
    if request.param == "tmpfs":
        with small_filesystem(tmp_path / "flash", TINY) as mount_point:

            def statvfs_free() -> int:
                found = os.statvfs(mount_point)
                return found.f_bavail * found.f_frsize

            yield TinyDisk(mount_point, statvfs_free)
    else:
        (tmp_path / "flash").mkdir()
        cap = CappedWrites(tmp_path / "flash", TINY).install(monkeypatch, durable)
        yield TinyDisk(tmp_path / "flash", lambda: TINY - cap.used())


def test_a_full_file_system_raises_storage_full_and_leaves_no_partial_file(
    tiny_filesystem: TinyDisk, recorder: Recorder
) -> None:
    directory = tiny_filesystem.path / "ring"
    ring = open_ring(directory)  # max_bytes far above what the file system holds
    ring.pin("incident-1", 0)
    stored = 0
    with pytest.raises(StorageFullError, match="file system is full"):
        for index in range(100):
            ring.store(recorder.seal(ring, index, size=150_000))
            stored += 1
    assert 5 < stored < 14
    assert ring.status().full
    assert ring.next_seq == stored
    assert temp_files(directory) == []

    reopened = open_ring(directory)
    assert reopened.quarantined == ()
    assert seqs(reopened.segments(0)) == list(range(stored))


def test_a_full_file_system_evicts_unpinned_footage_first(
    tiny_filesystem: TinyDisk, recorder: Recorder
) -> None:
    directory = tiny_filesystem.path / "ring"
    ring = open_ring(directory)
    (tiny_filesystem.path / "other-data").write_bytes(bytes(1_400_000))
    for index in range(10):
        ring.store(recorder.seal(ring, index, size=150_000))
    kept = seqs(ring.segments(0))
    assert kept[-1] == 9
    assert len(kept) < 10
    assert temp_files(directory) == []


def test_a_full_file_system_with_nothing_to_evict_stores_once_there_is_room(
    tiny_filesystem: TinyDisk, recorder: Recorder
) -> None:
    directory = tiny_filesystem.path / "ring"
    ring = open_ring(directory)
    other = tiny_filesystem.path / "other-data"
    other.write_bytes(bytes(tiny_filesystem.free_bytes() - 64 * 1024))
    segment = recorder.seal(ring, 0, size=150_000)
    with pytest.raises(StorageFullError, match="no unpinned footage"):
        ring.store(segment)
    assert ring.status().full
    assert (ring.next_seq, ring.segments(0)) == (0, [])
    assert temp_files(directory) == []

    other.unlink()  # space again: the same segment is stored, as the first of the chain
    stored = ring.store(segment)
    assert (stored.seq, stored.path.read_bytes()) == (0, segment.to_bytes())
    assert not ring.status().full


# -------------------------------------------------------------- SIGKILL safety

_WRITER = textwrap.dedent(
    """
    import os, random, sys
    from pathlib import Path
    from badge.ring import Ring
    from evidence.keys import BadgeIdentity, CustodianPublicKey, SigningKey
    from evidence.segment import SegmentFacts, seal_segment

    directory, key, custodian = (Path(arg) for arg in sys.argv[1:4])
    identity = BadgeIdentity("ward-3-badge", SigningKey.load(key))
    custodian_key = CustodianPublicKey.load(custodian)
    ring = Ring.open(directory, pre_roll_ns=60_000_000_000, max_bytes=1 << 32)
    if not ring.pins():
        ring.pin("crash-test", 0)
    print("ready", flush=True)
    index = 0
    while True:
        seq = ring.next_seq
        facts = SegmentFacts(
            seq=seq, boot=ring.boot,
            mono_start_ns=index * 2_000_000_000, mono_end_ns=(index + 1) * 2_000_000_000,
            wall_start_ns=index, wall_end_ns=index + 1,
            codec={"container": "mpegts", "video_codec": "h264"},
            previous_header_sha256=ring.last_header_digest,
        )
        data = os.urandom(random.randint(1_000, 120_000))
        ring.store(seal_segment(data, facts, identity, custodian_key))
        print(seq, flush=True)
        index += 1
    """
)


def test_sigkill_at_random_moments_loses_no_renamed_segment(
    tmp_path: Path, identity: BadgeIdentity, custodian: CustodianPrivateKey
) -> None:
    key_path, custodian_path = tmp_path / "badge.key", tmp_path / "custodian.pub"
    assert isinstance(identity.signing_key, SigningKey)
    identity.signing_key.save(key_path)
    custodian.public_key.save(custodian_path)
    directory = tmp_path / "ring"
    badge_key = identity.signing_key.public_key
    chance = random.SystemRandom()
    reported: set[int] = set()
    verified = 0
    for kill in range(20):
        writer = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(directory), str(key_path), str(custodian_path)],
            stdout=subprocess.PIPE,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert writer.stdout is not None
        if kill % 4 == 3:
            time.sleep(chance.uniform(0.0, 0.5))  # may land while it opens the ring
        else:
            assert writer.stdout.readline() == b"ready\n"
            time.sleep(chance.uniform(0.0, 0.3))
        writer.kill()
        writer.wait()
        output = writer.stdout.read().decode()
        writer.stdout.close()
        # Only whole lines: each is one store() that returned.
        reported.update(
            int(line)
            for line in output.splitlines(keepends=True)
            if line.endswith("\n") and line.strip().isdigit()
        )

        ring = open_ring(directory, max_bytes=1 << 32)
        assert temp_files(directory) == []
        assert ring.quarantined == ()
        stored = ring.segments(0)
        present = seqs(stored)
        assert reported <= set(present)
        assert present == list(range(ring.next_seq))
        for segment in stored[verified:]:
            SealedSegment.read(segment.path).verify(badge_key)
        verified = len(stored)
        if not stored:  # killed before its first store returned: nothing to chain yet
            continue
        report = check_chain([segment.header for segment in stored], expected_previous=ZERO_DIGEST)
        assert report.intact, report.breaks
    assert reported, "no store completed before any kill: the test exercised nothing"
