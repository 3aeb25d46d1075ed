"""The least any evidence intake must do with the bytes it receives: the uplink benchmarks' floor.

Whatever else an intake does (parsing, signatures, a database, a ledger, receipts), before it
may acknowledge a segment it has to hash every byte twice (the sealed file's SHA-256, its
content address, and the ciphertext's SHA-256, which the badge's signature covers), write
every byte to a file and fsync that file. :class:`DurableFloor` does exactly that and
nothing more, cutting a file every ``segment_bytes`` as the gateway's segments are cut. It
spreads the work as well as Python allows: the receiving thread only queues each payload;
a writer thread hashes (hashlib lets go of the GIL) and writes; a third thread fsyncs,
drops the pages from the cache (as the vault does) and removes the file. ``finish``
returns once every byte taken is on disk.

The raw MQTT receiver (``bench.loopback``) does this work when a batch asks for it, so
``bench ingest`` and ``bench seal-latency`` measure, in the same run, how fast the machine
moves the same bytes through the same broker with nothing done to them and with only the
irreducible work done to them (decision 1504).
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from pathlib import Path

FLOOR_WORK = "hashes each byte twice, writes it and fsyncs it a segment at a time, and nothing else"
"""What the floor does with the bytes, as the benchmarks' notes say it."""
SEGMENT_BYTES = 1_000_000
"""About one sealed segment of the benchmarks (2 s of 1080p)."""


class DurableFloor:
    """Hash twice, write and fsync every byte taken, a file per ``segment_bytes``.

    ``take`` only queues: a writer thread hashes and writes, a third thread fsyncs, so the
    caller's thread (paho's) goes back to reading at once.
    """

    def __init__(self, directory: Path, segment_bytes: int = SEGMENT_BYTES) -> None:
        """Write files under ``directory`` (created); start the writer and fsync threads."""
        self._directory = Path(directory)
        self._directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._segment_bytes = segment_bytes
        self._descriptor: int | None = None
        self._path: Path | None = None
        self._written = 0
        self._files = 0
        self._content = hashlib.sha256()
        self._ciphertext = hashlib.sha256()
        """Stands for the ciphertext's hash: the same cost, over (nearly) the same bytes."""
        self.digests: list[bytes] = []
        """Each file's SHA-256, in the order the files were cut."""
        self.synced_bytes = 0
        """Bytes fsynced so far (counted by the fsync thread)."""
        self._to_write: queue.Queue[bytes | None] = queue.Queue()
        self._to_sync: queue.Queue[tuple[int, Path] | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._write_each, name="floor-write", daemon=True),
            threading.Thread(target=self._sync_each, name="floor-fsync", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def take(self, payload: bytes | bytearray) -> None:
        """Queue ``payload`` to be hashed twice and written."""
        self._to_write.put(bytes(payload))

    def finish(self) -> None:
        """Return once every byte taken so far is hashed, written and fsynced."""
        self._to_write.put(b"")  # the writer cuts the file it holds
        self._to_write.join()
        self._to_sync.join()

    def close(self) -> None:
        """Finish, then stop both threads."""
        self.finish()
        self._to_write.put(None)
        self._threads[0].join()
        self._to_sync.put(None)
        self._threads[1].join()

    def _write_each(self) -> None:
        """The writer thread: hash and write each payload; an empty one cuts the file."""
        while (payload := self._to_write.get()) is not None:
            try:
                if payload:
                    self._write(payload)
                if not payload or self._written >= self._segment_bytes:
                    self._cut()
            finally:
                self._to_write.task_done()

    def _write(self, payload: bytes) -> None:
        self._content.update(payload)
        self._ciphertext.update(payload)
        if self._descriptor is None:
            self._path = self._directory / f"{self._files}.segment"
            self._files += 1
            self._descriptor = os.open(
                self._path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600
            )
        view = memoryview(payload)
        while view:
            view = view[os.write(self._descriptor, view) :]
        self._written += len(payload)

    def _cut(self) -> None:
        """Hand the current file to the fsync thread and start afresh."""
        if self._descriptor is None or self._path is None:
            return
        self.digests.append(self._content.digest())
        self._ciphertext.digest()
        self._to_sync.put((self._descriptor, self._path))
        self._descriptor = self._path = None
        self._written = 0
        self._content = hashlib.sha256()
        self._ciphertext = hashlib.sha256()

    def _sync_each(self) -> None:
        """The fsync thread: each handed file fsynced, dropped from the page cache, removed."""
        while (item := self._to_sync.get()) is not None:
            descriptor, path = item
            try:
                os.fsync(descriptor)
                self.synced_bytes += os.fstat(descriptor).st_size
                os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(descriptor)
                path.unlink(missing_ok=True)
                self._to_sync.task_done()
