"""The pre-event ring: sealed segments on flash, bounded by time and bytes, held by incident pins.

Layout of the ring directory::

    boot                     boot counter (decimal), incremented at every open
    chain-head               JSON: seq, boot and header SHA-256 of the newest segment ever stored
    segments/<seq:012d>.mbseal
    pins/<incident>.json     JSON: first_seq, last_seq (null while the incident is open)
    quarantine/              files that failed to parse, kept for inspection, never silently lost

Every file is written to a ``.tmp`` file in its own directory, fsync'd, renamed into place,
and the directory fsync'd, so a power cut leaves either the old file or the new one.

This module is long because the ring's files, pins, recovery and pruning share one lock and
one invariant (nothing unpinned outlives the pre-roll, nothing pinned is lost); apart, each
part would have to re-check the others' state.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self, TypeVar

from badge.errors import RingError, StorageFullError
from evidence.durable import TEMP_SUFFIX, fsync_directory, unlink_durably, write_durably
from evidence.errors import EvidenceError, SegmentFormatError
from evidence.hashing import DIGEST_SIZE, ZERO_DIGEST, sha256
from evidence.identifiers import validate_incident_id
from evidence.segment import (
    MAGIC,
    MAX_HEADER_SIZE,
    SIGNATURE_SIZE,
    SealedSegment,
    SegmentHeader,
)

SEGMENT_SUFFIX = ".mbseal"
_SEGMENT_NAME = re.compile(r"(\d{12})\.mbseal")
_PREFIX = struct.Struct(">8sI")  # magic, header length: the fixed start of a sealed segment
_CHAIN_HEAD_FORMAT = "medbadge.ring.chain-head.v1"
_PIN_FORMAT = "medbadge.ring.pin.v1"
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})

log = logging.getLogger(__name__)
_R = TypeVar("_R", bound="Ring")


@dataclass(frozen=True)
class StoredSegment:
    """A sealed segment as it lies in the ring: its sequence number, file, size and header."""

    seq: int
    path: Path
    size: int
    header: SegmentHeader
    sealed_sha256: bytes | None = None
    """SHA-256 of the file, when this ring wrote it; None for one found at start (hash it)."""


@dataclass(frozen=True)
class Pin:
    """An incident's hold on a run of segments; ``last_seq`` None while the incident is open."""

    incident_id: str
    first_seq: int
    last_seq: int | None

    def covers(self, seq: int) -> bool:
        """True when segment ``seq`` belongs to this incident."""
        return self.first_seq <= seq and (self.last_seq is None or seq <= self.last_seq)


@dataclass(frozen=True)
class RingStatus:
    """A snapshot of the ring for heartbeats and alerts."""

    segments: int
    bytes_used: int
    pinned_segments: int
    oldest_seq: int | None
    newest_seq: int | None
    full: bool
    free_bytes: int


@dataclass(frozen=True)
class _ChainHead:
    """The newest segment ever stored: where the next one's seq and ``prev`` come from."""

    seq: int
    boot: int
    header_sha256: bytes


class Ring:
    """Sealed segments on flash: keeps the pre-roll window and every pinned segment, nothing else.

    Open it with :meth:`open`. One lock guards everything, so the sealer thread may store
    while other threads pin, list and release.
    """

    def __init__(
        self,
        directory: Path,
        *,
        pre_roll_ns: int,
        max_bytes: int,
        boot: int,
        head: _ChainHead | None,
        index: dict[int, StoredSegment],
        pins: dict[str, Pin],
        quarantined: Sequence[Path],
    ) -> None:
        """Use :meth:`open`; this only assembles what it recovered."""
        self._directory = directory
        self._pre_roll_ns = pre_roll_ns
        self._max_bytes = max_bytes
        self._boot = boot
        self._head = head
        self._index = dict(sorted(index.items()))
        self._pins = pins
        self._quarantined = tuple(quarantined)
        self._full = False
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- opening

    @classmethod
    def open(cls, directory: Path, *, pre_roll_ns: int, max_bytes: int) -> Self:
        """Open (or create) the ring in ``directory`` and recover it after any crash.

        Removes partial ``.tmp`` files, moves files that do not parse to ``quarantine/``,
        rebuilds the index from the segment headers, reloads pins, and increments the
        boot counter. Raises RingError when the directory cannot be used.
        """
        if pre_roll_ns < 0 or max_bytes <= 0:
            raise RingError(
                f"ring {directory}: pre-roll ({pre_roll_ns} ns) must be >= 0 "
                f"and max bytes ({max_bytes}) > 0"
            )
        try:
            return _Recovery(directory).ring(cls, pre_roll_ns, max_bytes)
        except OSError as error:
            raise RingError(
                f"ring {directory} cannot be opened: {error.strerror} ({error.filename})"
            ) from None

    @property
    def directory(self) -> Path:
        """The ring's directory."""
        return self._directory

    @property
    def boot(self) -> int:
        """This run's boot counter: one more than any boot recorded before."""
        return self._boot

    @property
    def next_seq(self) -> int:
        """The sequence number the next stored segment must carry."""
        with self._lock:
            return 0 if self._head is None else self._head.seq + 1

    @property
    def last_header_digest(self) -> bytes:
        """The header SHA-256 the next segment must link to (zeros before the first)."""
        with self._lock:
            return ZERO_DIGEST if self._head is None else self._head.header_sha256

    @property
    def quarantined(self) -> tuple[Path, ...]:
        """Files moved to ``quarantine/`` when this ring was opened."""
        return self._quarantined

    # ----------------------------------------------------------------- storing

    def store(self, segment: SealedSegment) -> StoredSegment:
        """Write ``segment`` durably as the next in the chain, then prune what is not needed.

        Raises StorageFullError (nothing written, seq not consumed) when pinned footage
        leaves no room within ``max_bytes`` or on the file system, and RingError when the
        segment does not continue the chain or the write fails otherwise.
        """
        header = segment.header
        digest = hashlib.sha256()
        for part in segment.parts():  # hashed here, on the sealer's time, not at upload
            digest.update(part)
        with self._lock:
            self._check_continues(header)
            size = sum(len(part) for part in segment.parts())
            self._make_room(size, header.seq)
            path = self._segment_path(header.seq)
            try:
                self._write_with_retry(path, segment, size)
            except StorageFullError:
                self._full = True
                raise
            stored = StoredSegment(header.seq, path, size, header, digest.digest())
            self._index[header.seq] = stored
            self._full = False
            self._prune()
            return stored

    def _check_continues(self, header: SegmentHeader) -> None:
        expected_seq = 0 if self._head is None else self._head.seq + 1
        expected_prev = ZERO_DIGEST if self._head is None else self._head.header_sha256
        if header.seq != expected_seq or header.previous_header_sha256 != expected_prev:
            raise RingError(
                f"ring {self._directory}: segment {header.seq} does not continue the chain "
                f"(expected seq {expected_seq} linking to the last stored header)"
            )
        if header.boot != self._boot:
            raise RingError(
                f"ring {self._directory}: segment {header.seq} is of boot {header.boot}, "
                f"but this run is boot {self._boot}"
            )

    def _make_room(self, size: int, seq: int) -> None:
        """Evict the oldest unpinned segments until ``size`` more bytes fit in ``max_bytes``."""
        pinned = self._pinned_stored()
        pinned_bytes = sum(stored.size for stored in pinned)
        if pinned_bytes + size > self._max_bytes:
            self._full = True
            raise StorageFullError(
                f"ring {self._directory} is full: {len(pinned)} pinned segments use "
                f"{pinned_bytes} of {self._max_bytes} bytes, so segment {seq} "
                f"({size} bytes) cannot be stored; upload and release incidents to free space"
            )
        used = self._bytes_used()
        for stored in self._unpinned_oldest_first():
            if used + size <= self._max_bytes:
                break
            self._delete(stored)
            used -= stored.size

    def _write_with_retry(self, path: Path, segment: SealedSegment, size: int) -> None:
        """Write a segment; when the file system is full, evict unpinned footage and retry once."""
        try:
            self._write_segment(path, segment)
            return
        except OSError as error:
            if error.errno not in _NO_SPACE:
                raise self._write_failed(path, error) from None
        freed = 0
        for stored in self._unpinned_oldest_first():
            if freed >= size:
                break
            self._delete(stored)
            freed += stored.size
        if freed:
            try:
                self._write_segment(path, segment)
                return
            except OSError as error:
                if error.errno not in _NO_SPACE:
                    raise self._write_failed(path, error) from None
        raise StorageFullError(
            f"ring {self._directory}: the file system is full, segment {path.name} "
            f"({size} bytes) cannot be stored and no unpinned footage is left to evict"
        )

    def _write_failed(self, path: Path, error: OSError) -> RingError:
        return RingError(f"ring {self._directory}: cannot write {path.name}: {error.strerror}")

    def _write_segment(self, path: Path, segment: SealedSegment) -> None:
        """Write the segment file, then the chain head; on failure leave neither changed."""
        write_durably(path, segment.parts())
        head = _ChainHead(segment.header.seq, segment.header.boot, sha256(segment.header_bytes))
        try:
            write_durably(self._directory / "chain-head", [_chain_head_bytes(head)])
        except OSError:
            # The seq is not consumed unless the chain head says so: take the segment back.
            unlink_durably(path)
            raise
        self._head = head

    # ----------------------------------------------------------------- pruning

    def _prune(self) -> None:
        """Delete unpinned segments outside the pre-roll window ending at the newest segment.

        Only the current boot has a window: unpinned segments of earlier boots always go.
        """
        current = [s for s in self._index.values() if s.header.boot == self._boot]
        window_start = None
        if current:
            window_start = max(s.header.mono_end_ns for s in current) - self._pre_roll_ns
        newest = max(self._index, default=None)
        for stored in self._unpinned_oldest_first():
            outside = (
                stored.header.boot != self._boot
                or window_start is None
                or stored.header.mono_end_ns <= window_start
            )
            # Even with no pre-roll at all, the segment just stored stays until the next one.
            if outside and (stored.seq != newest or stored.header.boot != self._boot):
                try:
                    self._delete(stored)
                except RingError as error:
                    # The segment asked for is stored; a file that will not go is retried
                    # at the next prune, and said loudly, not turned into a failed store.
                    log.error("%s", error)

    def _delete(self, stored: StoredSegment) -> None:
        try:
            stored.path.unlink(missing_ok=True)
        except OSError as error:
            raise RingError(
                f"ring {self._directory}: cannot delete {stored.path.name}: {error.strerror}"
            ) from None
        del self._index[stored.seq]

    def _unpinned_oldest_first(self) -> list[StoredSegment]:
        return [s for s in self._index.values() if not self._is_pinned(s.seq)]

    def _pinned_stored(self) -> list[StoredSegment]:
        return [s for s in self._index.values() if self._is_pinned(s.seq)]

    def _is_pinned(self, seq: int) -> bool:
        return any(pin.covers(seq) for pin in self._pins.values())

    def _bytes_used(self) -> int:
        return sum(stored.size for stored in self._index.values())

    def _segment_path(self, seq: int) -> Path:
        return self._directory / "segments" / f"{seq:012d}{SEGMENT_SUFFIX}"

    # -------------------------------------------------------------------- pins

    def pin(self, incident_id: str, first_seq: int, last_seq: int | None = None) -> Pin:
        """Keep segments ``first_seq``..``last_seq`` (None: and every later one) for an incident.

        Pinning an incident again replaces its range. The pin is on flash before this returns;
        if that fails, RingError is raised and the pin holds in memory until restart.
        """
        pin = _make_pin(incident_id, first_seq, last_seq, self._directory)
        with self._lock:
            self._pins[pin.incident_id] = pin
            self._persist_pin(pin)
        return pin

    def pin_since(self, incident_id: str, from_mono_ns: int) -> Pin:
        """Open a pin from the first segment of this boot ending after ``from_mono_ns``.

        Finding the first segment and pinning happen under one lock, so a store in between
        cannot prune the oldest pre-roll segment: prefer this to ``first_seq_after`` + ``pin``.
        """
        with self._lock:
            first_seq = self._first_seq_after(from_mono_ns, self._boot)
            pin = _make_pin(incident_id, first_seq, None, self._directory)
            self._pins[pin.incident_id] = pin
            self._persist_pin(pin)
        return pin

    def close_pin(self, incident_id: str, last_seq: int) -> Pin:
        """End an open incident's pin at ``last_seq``; RingError if the incident is not pinned."""
        with self._lock:
            known = self._pins.get(incident_id)
            if known is None:
                raise RingError(f"ring {self._directory}: incident {incident_id!r} is not pinned")
            pin = _make_pin(incident_id, known.first_seq, last_seq, self._directory)
            self._pins[incident_id] = pin
            self._persist_pin(pin)
        return pin

    def unpin(self, incident_id: str) -> None:
        """Drop an incident's pin (after the gateway's receipt) and prune what it held.

        Unpinning an incident that is not pinned does nothing, so a repeated receipt is harmless.
        """
        with self._lock:
            if self._pins.pop(incident_id, None) is None:
                return
            path = self._pin_path(incident_id)
            try:
                unlink_durably(path)
            except OSError as error:
                raise RingError(
                    f"ring {self._directory}: cannot remove pin file {path.name}: {error.strerror}"
                ) from None
            self._prune()

    def pins(self) -> tuple[Pin, ...]:
        """Every pin, in incident-id order."""
        with self._lock:
            return tuple(self._pins[key] for key in sorted(self._pins))

    def pinned_seqs(self) -> frozenset[int]:
        """Sequence numbers of the stored segments some pin holds."""
        with self._lock:
            return frozenset(stored.seq for stored in self._pinned_stored())

    def _pin_path(self, incident_id: str) -> Path:
        return self._directory / "pins" / f"{incident_id}.json"

    def _persist_pin(self, pin: Pin) -> None:
        try:
            write_durably(self._pin_path(pin.incident_id), [_pin_bytes(pin)])
        except OSError as error:
            raise RingError(
                f"ring {self._directory}: cannot persist the pin of incident "
                f"{pin.incident_id!r} ({error.strerror}); it holds only until restart"
            ) from None

    # ---------------------------------------------------------------- reading

    def segments(self, first_seq: int, last_seq: int | None = None) -> list[StoredSegment]:
        """The stored segments with seq in ``first_seq``..``last_seq`` (None: to the newest)."""
        with self._lock:
            return [
                stored
                for seq, stored in self._index.items()
                if seq >= first_seq and (last_seq is None or seq <= last_seq)
            ]

    def seqs_covering(self, from_mono_ns: int, boot: int) -> int:
        """The first seq whose segment (of ``boot``) ends after ``from_mono_ns``.

        When no stored segment of that boot ends after it, the answer is ``next_seq``:
        the next segment sealed is the first to cover it.
        """
        with self._lock:
            return self._first_seq_after(from_mono_ns, boot)

    def first_seq_after(self, from_mono_ns: int) -> int:
        """``seqs_covering`` for the current boot."""
        with self._lock:
            return self._first_seq_after(from_mono_ns, self._boot)

    def _first_seq_after(self, from_mono_ns: int, boot: int) -> int:
        for stored in self._index.values():
            if stored.header.boot == boot and stored.header.mono_end_ns > from_mono_ns:
                return stored.seq
        return 0 if self._head is None else self._head.seq + 1

    def release(self, seq: int) -> bool:
        """Delete segment ``seq`` (the gateway receipted it); False if it is not stored.

        Pins are not consulted: unpin the incident first. The chain continues regardless.
        """
        with self._lock:
            stored = self._index.get(seq)
            if stored is None:
                return False
            self._delete(stored)
            return True

    def status(self) -> RingStatus:
        """Counts, bytes, pinned segments, and whether the last store failed for space."""
        with self._lock:
            seqs = list(self._index)
            try:
                stats = os.statvfs(self._directory)
                free = stats.f_bavail * stats.f_frsize
            except OSError:
                free = 0
            return RingStatus(
                segments=len(seqs),
                bytes_used=self._bytes_used(),
                pinned_segments=len(self._pinned_stored()),
                oldest_seq=seqs[0] if seqs else None,
                newest_seq=seqs[-1] if seqs else None,
                full=self._full,
                free_bytes=free,
            )


class _Recovery:
    """Reads a ring directory back after a clean stop or a crash."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.quarantined: list[Path] = []

    def ring(self, kind: type[_R], pre_roll_ns: int, max_bytes: int) -> _R:
        for sub in ("segments", "pins", "quarantine"):
            (self.directory / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        for folder in (self.directory, self.directory / "segments", self.directory / "pins"):
            self.remove_partial_files(folder)
        boot_before = self.read_boot()
        head = self.read_chain_head()
        index = self.read_segments()
        pins = self.read_pins()
        boots = [boot_before, *(stored.header.boot for stored in index.values())]
        if head is not None:
            boots.append(head.boot)
        boot = max(boots) + 1
        write_durably(self.directory / "boot", [f"{boot}\n".encode()])
        newest = index[max(index)] if index else None
        if newest is not None and (head is None or newest.seq >= head.seq):
            # Killed between the segment's rename and the chain head's: the file is newer.
            head = _ChainHead(newest.seq, newest.header.boot, newest.header.digest())
        return kind(
            self.directory,
            pre_roll_ns=pre_roll_ns,
            max_bytes=max_bytes,
            boot=boot,
            head=head,
            index=index,
            pins=pins,
            quarantined=self.quarantined,
        )

    def remove_partial_files(self, folder: Path) -> None:
        for path in folder.glob(f"*{TEMP_SUFFIX}"):
            log.warning("ring %s: removing partial file %s left by a crash", self.directory, path)
            path.unlink(missing_ok=True)

    def quarantine(self, path: Path, reason: str) -> None:
        """Move an unreadable file aside (never delete it silently) and say so."""
        target = self.directory / "quarantine" / path.name
        number = 0
        while target.exists():
            number += 1
            target = self.directory / "quarantine" / f"{path.name}.{number}"
        os.replace(path, target)
        fsync_directory(path.parent)
        fsync_directory(target.parent)
        self.quarantined.append(target)
        log.error("ring %s: moved %s to quarantine: %s", self.directory, path.name, reason)

    def read_boot(self) -> int:
        path = self.directory / "boot"
        try:
            text = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return 0
        except (OSError, UnicodeDecodeError) as error:
            self.quarantine(path, f"boot counter unreadable: {error}")
            return 0
        if not text.isdigit():
            self.quarantine(path, f"boot counter {text[:20]!r} is not a number")
            return 0
        return int(text)

    def read_chain_head(self) -> _ChainHead | None:
        path = self.directory / "chain-head"
        try:
            fields = json.loads(path.read_bytes())
            if fields.get("format") != _CHAIN_HEAD_FORMAT:
                raise ValueError("unknown format")
            head = _ChainHead(
                _natural(fields["seq"]),
                _natural(fields["boot"]),
                bytes.fromhex(fields["header_sha256"]),
            )
            if len(head.header_sha256) != DIGEST_SIZE:
                raise ValueError("digest has the wrong length")
            return head
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            self.quarantine(path, f"chain head unreadable ({error}); continuing from the files")
            return None

    def read_segments(self) -> dict[int, StoredSegment]:
        index: dict[int, StoredSegment] = {}
        for path in sorted((self.directory / "segments").iterdir()):
            match = _SEGMENT_NAME.fullmatch(path.name)
            if match is None or not path.is_file():
                self.quarantine(path, "not a segment file name")
                continue
            try:
                stored = _read_stored(path)
            except (EvidenceError, OSError) as error:
                self.quarantine(path, str(error))
                continue
            if stored.seq != int(match.group(1)):
                self.quarantine(path, f"its header says seq {stored.seq}")
                continue
            index[stored.seq] = stored
        return index

    def read_pins(self) -> dict[str, Pin]:
        pins: dict[str, Pin] = {}
        for path in sorted((self.directory / "pins").glob("*.json")):
            incident_id = path.name.removesuffix(".json")
            try:
                fields = json.loads(path.read_bytes())
                if fields.get("format") != _PIN_FORMAT or fields.get("incident") != incident_id:
                    raise ValueError("unknown format or incident")
                last = fields["last_seq"]
                pin = _make_pin(
                    incident_id,
                    _natural(fields["first_seq"]),
                    None if last is None else _natural(last),
                    self.directory,
                )
            except (OSError, ValueError, KeyError, TypeError, AttributeError, RingError) as error:
                self.quarantine(path, f"pin unreadable ({error}); holding every segment instead")
                # Losing a pin could lose an incident: hold everything until it is unpinned.
                pin = Pin(incident_id, 0, None)
                write_durably(path, [_pin_bytes(pin)])
            pins[incident_id] = pin
        return pins


def _natural(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{value!r} is not a non-negative integer")
    return value


def _make_pin(incident_id: str, first_seq: int, last_seq: int | None, where: Path) -> Pin:
    try:
        validate_incident_id(incident_id)
    except EvidenceError as error:
        raise RingError(f"ring {where}: cannot pin: {error}") from None
    if first_seq < 0 or (last_seq is not None and last_seq < first_seq):
        raise RingError(
            f"ring {where}: pin of incident {incident_id!r} has an empty range "
            f"{first_seq}..{last_seq}"
        )
    return Pin(incident_id, first_seq, last_seq)


def _pin_bytes(pin: Pin) -> bytes:
    fields = {
        "format": _PIN_FORMAT,
        "incident": pin.incident_id,
        "first_seq": pin.first_seq,
        "last_seq": pin.last_seq,
    }
    return json.dumps(fields, sort_keys=True).encode() + b"\n"


def _chain_head_bytes(head: _ChainHead) -> bytes:
    fields = {
        "format": _CHAIN_HEAD_FORMAT,
        "seq": head.seq,
        "boot": head.boot,
        "header_sha256": head.header_sha256.hex(),
    }
    return json.dumps(fields, sort_keys=True).encode() + b"\n"


def _read_stored(path: Path) -> StoredSegment:
    """Read only a sealed segment's header, and check the file's size against it."""
    with path.open("rb") as stream:
        prefix = stream.read(_PREFIX.size)
        if len(prefix) < _PREFIX.size or prefix[: len(MAGIC)] != MAGIC:
            raise SegmentFormatError(f"{path}: is not a medbadge sealed segment (bad magic)")
        _, header_size = _PREFIX.unpack(prefix)
        if header_size > MAX_HEADER_SIZE:
            raise SegmentFormatError(f"{path}: header length {header_size} is implausible")
        header_bytes = stream.read(header_size)
        size = os.fstat(stream.fileno()).st_size
    header = SegmentHeader.decode(header_bytes, str(path))
    expected = _PREFIX.size + header_size + SIGNATURE_SIZE + header.ciphertext_size
    if size != expected:
        raise SegmentFormatError(
            f"{path}: holds {size} bytes but its header implies {expected} (truncated or extended)"
        )
    return StoredSegment(header.seq, path, size, header)
