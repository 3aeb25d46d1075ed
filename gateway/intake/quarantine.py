"""The quarantine: every refused message's raw bytes, with why, kept for people to examine.

Layout under the quarantine directory::

    <YYYY-MM-DD>/<received ns>-<reason>-<random>.bin    the bytes exactly as they arrived
    <YYYY-MM-DD>/<received ns>-<reason>-<random>.json   reason, detail, topic, badge, time, SHA-256
    counts/<reason>                                     one byte per event: the size is the count

Entries are written to a fresh name and renamed into place, but not fsynced (decision 0703):
a badge keeps whatever the gateway refused, so the quarantine is for diagnosis, and a flood
of garbage must not turn into a flood of disk flushes. The tally files are appended with
``O_APPEND``, so several intake processes on one machine count into the same files and the
counts survive a restart.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from gateway.errors import QuarantineError

COUNTS_DIR = "counts"
_REASON = re.compile(r"[a-z][a-z-]{0,39}")


class Quarantine:
    """Keeps refused bytes and counts refusals per reason."""

    def __init__(self, directory: Path, *, clock: Callable[[], int] = time.time_ns) -> None:
        """Use (creating if needed, mode 0700) ``directory``; ``clock`` gives wall time in ns."""
        self.directory = Path(directory)
        self._clock = clock
        try:
            (self.directory / COUNTS_DIR).mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as error:
            raise QuarantineError(
                f"cannot create quarantine directory {self.directory}: {error}"
            ) from None

    def keep(self, raw: bytes, *, badge: str | None, topic: str, reason: str, detail: str) -> Path:
        """Keep ``raw`` with a sidecar saying why; count it; return the path of the kept bytes."""
        now = self._clock()
        target = self._new_entry(now, reason)
        try:
            _write_new(target, raw)
        except OSError as error:
            raise QuarantineError(f"cannot keep {len(raw)} bytes in {target}: {error}") from None
        sha = hashlib.sha256(raw).hexdigest()
        self._finish(
            target=target,
            now=now,
            badge=badge,
            topic=topic,
            reason=reason,
            detail=detail,
            size=len(raw),
            sha=sha,
        )
        return target

    def keep_file(
        self, source: Path, *, badge: str | None, topic: str, reason: str, detail: str
    ) -> Path:
        """Move the file ``source`` into quarantine, as ``keep`` does for bytes; return its path."""
        now = self._clock()
        target = self._new_entry(now, reason)
        try:
            shutil.move(source, target)
            size, sha = _size_and_sha256(target)
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
        )
        return target

    def counts(self) -> dict[str, int]:
        """Refusals so far, per reason (every process, every run), e.g. ``{"malformed": 3}``."""
        counts_dir = self.directory / COUNTS_DIR
        try:
            return {
                entry.name: entry.stat().st_size
                for entry in sorted(counts_dir.iterdir())
                if _REASON.fullmatch(entry.name)
            }
        except OSError as error:
            raise QuarantineError(
                f"cannot read quarantine counts in {counts_dir}: {error}"
            ) from None

    def _new_entry(self, now: int, reason: str) -> Path:
        """A fresh file name for an entry, in the directory of the day."""
        if not isinstance(reason, str) or not _REASON.fullmatch(reason):
            raise QuarantineError(f"quarantine reason {reason!r} is not a reason code")
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
        target: Path,
        now: int,
        badge: str | None,
        topic: str,
        reason: str,
        detail: str,
        size: int,
        sha: str,
    ) -> None:
        """Write the sidecar next to ``target`` and count the event."""
        sidecar = {
            "reason": reason,
            "detail": detail,
            "topic": topic,
            "badge": badge,
            "received_wall_ns": now,
            "received_utc": datetime.fromtimestamp(now / 1e9, UTC).isoformat(),
            "size": size,
            "sha256": sha,
            "file": target.name,
        }
        text = json.dumps(sidecar, indent=2, sort_keys=True) + "\n"
        tally = self.directory / COUNTS_DIR / reason
        try:
            _write_new(target.with_suffix(".json"), text.encode("utf-8"))
            descriptor = os.open(
                tally, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
            try:
                os.write(descriptor, b".")
            finally:
                os.close(descriptor)
        except OSError as error:
            raise QuarantineError(f"cannot record quarantine entry {target}: {error}") from None


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
