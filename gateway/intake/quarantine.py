"""The quarantine: refused messages' raw bytes, with why, kept for people to examine, within quotas.

Layout under the quarantine directory::

    <YYYY-MM-DD>/<received ns>-<reason>-<random>.bin    the bytes exactly as they arrived
    <YYYY-MM-DD>/<received ns>-<reason>-<random>.json   reason, detail, topic, badge, time, SHA-256
    refusals.jsonl, refusals.jsonl.1                    one metadata line per refusal, rotated
    counts/<reason>                                     refusals counted, per reason
    not-kept/<reason>                                   of those, how many bytes were not kept

Entries are written to a fresh name and renamed into place, but not fsynced (decision 0703):
a badge keeps whatever the gateway refused, so the quarantine is for diagnosis, and a flood
of garbage must not turn into a flood of disk flushes. Every refusal is bounded (decision
1700): its bytes are kept only within the per-badge and total quotas, above the disk's free
space reserve and for a badge that is enrolled and not revoked or cut off; otherwise only its
line in the metadata log (itself rotated at a size) and its counts remain. The quotas are
kept as running totals, read from the directory once when the quarantine opens (so another
process's entries are counted from the next start). The counts are decimal numbers updated
under a file lock, so several intake processes on one machine count into the same files and
the counts survive a restart.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from gateway.config import QuarantineSettings
from gateway.errors import QuarantineError, StorageError
from gateway.storage.reserve import DiskReserve

COUNTS_DIR = "counts"
NOT_KEPT_DIR = "not-kept"
LOG_FILE = "refusals.jsonl"
_REASON = re.compile(r"[a-z][a-z-]{0,39}")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_MAX_TOPIC = 200
_MAX_DETAIL = 300


@dataclass
class _Usage:
    """Bytes and entries kept, for one badge or for all."""

    size: int = 0
    entries: int = 0


@dataclass
class QuarantineUsage:
    """What the quarantine holds now: in all, and per badge (``None``: no known badge)."""

    total: _Usage = field(default_factory=_Usage)
    badges: dict[str | None, _Usage] = field(default_factory=dict)

    def add(self, badge: str | None, size: int) -> None:
        """Count one more entry of ``size`` bytes for ``badge``."""
        for usage in (self.total, self.badges.setdefault(badge, _Usage())):
            usage.size += size
            usage.entries += 1

    def badge(self, badge: str | None) -> tuple[int, int]:
        """(bytes, entries) kept for ``badge``."""
        usage = self.badges.get(badge, _Usage())
        return usage.size, usage.entries


class Quarantine:
    """Keeps refused bytes within quotas, a metadata line for each, and counts per reason."""

    def __init__(
        self,
        directory: Path,
        *,
        quotas: QuarantineSettings | None = None,
        reserve: DiskReserve | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        """Use (creating if needed, mode 0700) ``directory``; ``clock`` gives wall time in ns.

        Bytes are kept within ``quotas`` and only while ``reserve`` (if given) has room.
        """
        self.directory = Path(directory)
        self.quotas = quotas or QuarantineSettings()
        self._reserve = reserve
        self._clock = clock
        try:
            for name in (COUNTS_DIR, NOT_KEPT_DIR):
                (self.directory / name).mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as error:
            raise QuarantineError(
                f"cannot create quarantine directory {self.directory}: {error}"
            ) from None
        self.usage = _scan(self.directory)

    def keep(
        self,
        raw: bytes,
        *,
        badge: str | None,
        topic: str,
        reason: str,
        detail: str,
        bytes_wanted: bool = True,
    ) -> Path | None:
        """Keep ``raw`` with a sidecar saying why, if the quotas allow; log and count it.

        Return the path of the kept bytes, or None when only the metadata was kept (past a
        quota, below the reserve, or ``bytes_wanted`` False: a revoked or cut-off badge's).
        """
        now = self._clock()
        _check_reason(reason)
        sha = hashlib.sha256(raw).hexdigest()
        why_not = "not wanted" if not bytes_wanted else self._no_room(badge, len(raw))
        target = None
        if why_not is None:
            target = self._new_entry(now, reason)
            try:
                _write_new(target, raw)
            except OSError as error:
                raise QuarantineError(
                    f"cannot keep {len(raw)} bytes in {target}: {error}"
                ) from None
        self._finish(
            target=target,
            now=now,
            badge=badge,
            topic=topic,
            reason=reason,
            detail=detail,
            size=len(raw),
            sha=sha,
            why_not=why_not,
        )
        return target

    def keep_file(
        self,
        source: Path,
        *,
        badge: str | None,
        topic: str,
        reason: str,
        detail: str,
        bytes_wanted: bool = True,
    ) -> Path | None:
        """Move the file ``source`` into quarantine, as ``keep`` does for bytes; return its
        path, or None when only its metadata was kept (``source`` is then removed)."""
        now = self._clock()
        _check_reason(reason)
        try:
            size, sha = _size_and_sha256(source)
        except OSError as error:
            raise QuarantineError(f"cannot read {source} for quarantine: {error}") from None
        why_not = "not wanted" if not bytes_wanted else self._no_room(badge, size)
        target = None
        try:
            if why_not is None:
                target = self._new_entry(now, reason)
                shutil.move(source, target)
            else:
                source.unlink(missing_ok=True)
        except OSError as error:
            raise QuarantineError(f"cannot move {source} into quarantine: {error}") from None
        self._finish(
            target=target,
            now=now,
            badge=badge,
            topic=topic,
            reason=reason,
            detail=detail,
            size=size,
            sha=sha,
            why_not=why_not,
        )
        return target

    def counts(self) -> dict[str, int]:
        """Refusals so far, per reason (every process, every run), e.g. ``{"malformed": 3}``."""
        return _read_tallies(self.directory / COUNTS_DIR)

    def not_kept(self) -> dict[str, int]:
        """Of the refusals so far, per reason, how many had their bytes not kept."""
        return _read_tallies(self.directory / NOT_KEPT_DIR)

    def _no_room(self, badge: str | None, size: int) -> str | None:
        """Why ``size`` more bytes of ``badge`` may not be kept, or None if they may."""
        quotas = self.quotas
        badge_bytes, badge_entries = self.badge_usage(badge)
        cost = size + _SIDECAR_ALLOWANCE
        if badge_entries + 1 > quotas.badge_entries or badge_bytes + cost > quotas.badge_bytes:
            return "badge quota"
        total = self.usage.total
        if total.entries + 1 > quotas.total_entries or total.size + cost > quotas.total_bytes:
            return "total quota"
        try:
            if self._reserve is not None and not self._reserve.room_for(cost):
                return "disk reserve"
        except StorageError:
            return "disk reserve unknown"
        return None

    def badge_usage(self, badge: str | None) -> tuple[int, int]:
        """(bytes, entries) kept for ``badge`` (this process's running totals)."""
        return self.usage.badge(badge)

    def _new_entry(self, now: int, reason: str) -> Path:
        """A fresh file name for an entry, in the directory of the day."""
        day = datetime.fromtimestamp(now / 1e9, UTC).strftime("%Y-%m-%d")
        directory = self.directory / day
        try:
            directory.mkdir(mode=0o700, exist_ok=True)
        except OSError as error:
            raise QuarantineError(
                f"cannot create quarantine directory {directory}: {error}"
            ) from None
        return directory / f"{now}-{reason}-{secrets.token_hex(4)}.bin"

    def _finish(
        self,
        *,
        target: Path | None,
        now: int,
        badge: str | None,
        topic: str,
        reason: str,
        detail: str,
        size: int,
        sha: str,
        why_not: str | None,
    ) -> None:
        """Write the sidecar next to a kept ``target``, log the refusal and count it."""
        record: dict[str, object] = {
            "reason": reason,
            "detail": detail[:_MAX_DETAIL],
            "topic": topic[:_MAX_TOPIC],
            "badge": badge,
            "received_wall_ns": now,
            "received_utc": datetime.fromtimestamp(now / 1e9, UTC).isoformat(),
            "size": size,
            "sha256": sha,
        }
        try:
            if target is not None:
                sidecar = {**record, "file": target.name}
                text = json.dumps(sidecar, indent=2, sort_keys=True) + "\n"
                _write_new(target.with_suffix(".json"), text.encode("utf-8"))
                self.usage.add(badge, size + len(text))
            line = {**record, "kept": None if target is None else target.name}
            if why_not is not None:
                line["not_kept"] = why_not
            self._log(json.dumps(line, sort_keys=True).encode("utf-8") + b"\n")
            _add_to_tally(self.directory / COUNTS_DIR / reason)
            if why_not is not None:
                _add_to_tally(self.directory / NOT_KEPT_DIR / reason)
        except OSError as error:
            raise QuarantineError(f"cannot record quarantine entry {target}: {error}") from None

    def _log(self, line: bytes) -> None:
        """Append ``line`` to the metadata log, rotating it first when it is full."""
        path = self.directory / LOG_FILE
        try:
            if path.stat().st_size + len(line) > self.quotas.log_bytes:
                path.replace(path.with_name(LOG_FILE + ".1"))
        except FileNotFoundError:
            pass
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        descriptor = os.open(path, flags, 0o600)
        try:
            os.write(descriptor, line)
        finally:
            os.close(descriptor)


_SIDECAR_ALLOWANCE = 512
"""What a sidecar costs at most, counted before it is written."""


def _check_reason(reason: str) -> None:
    if not isinstance(reason, str) or not _REASON.fullmatch(reason):
        raise QuarantineError(f"quarantine reason {reason!r} is not a reason code")


def _scan(directory: Path) -> QuarantineUsage:
    """The running totals, read once: every kept entry's bytes and sidecar, by the badge
    its sidecar names (an entry whose sidecar is missing or unreadable counts as no badge's)."""
    usage = QuarantineUsage()
    try:
        days = [entry for entry in directory.iterdir() if _DAY.fullmatch(entry.name)]
        for day in days:
            for kept in day.glob("*.bin"):
                badge, size = _entry_usage(kept)
                usage.add(badge, size)
    except OSError as error:
        raise QuarantineError(f"cannot read quarantine directory {directory}: {error}") from None
    return usage


def _entry_usage(kept: Path) -> tuple[str | None, int]:
    """The badge an entry belongs to and the bytes it takes, bytes and sidecar together."""
    try:
        size = kept.stat().st_size
    except FileNotFoundError:
        return None, 0  # removed by an operator while we looked
    try:
        text = kept.with_suffix(".json").read_bytes()
        badge = json.loads(text).get("badge")
    except (OSError, ValueError, AttributeError):
        return None, size
    return (badge if isinstance(badge, str) else None), size + len(text)


def _add_to_tally(path: Path) -> None:
    """Add one to the count in ``path``, under a lock other processes respect."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        count = _parse_tally(os.pread(descriptor, os.fstat(descriptor).st_size, 0)) + 1
        data = str(count).encode("ascii")
        os.pwrite(descriptor, data, 0)
        os.ftruncate(descriptor, len(data))
    finally:
        os.close(descriptor)


def _parse_tally(data: bytes) -> int:
    """A count as written by ``_add_to_tally``; an older tally of one dot per event (or a
    damaged one) counts its bytes."""
    return int(data) if data.isdigit() else len(data)


def _read_tallies(directory: Path) -> dict[str, int]:
    """Every tally in ``directory`` by reason."""
    try:
        counts = {}
        for entry in sorted(directory.iterdir()):
            if not _REASON.fullmatch(entry.name) or not entry.is_file():
                continue
            counts[entry.name] = _parse_tally(entry.read_bytes())
        return counts
    except OSError as error:
        raise QuarantineError(f"cannot read quarantine counts in {directory}: {error}") from None


def _write_new(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary name, then rename it to ``path`` (no fsync: see above)."""
    temporary = path.with_name(f".{path.name}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    descriptor = os.open(temporary, flags, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view) :]
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _size_and_sha256(path: Path) -> tuple[int, str]:
    """Size and hex SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()
