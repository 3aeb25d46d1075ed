"""``gateway backup`` against ``cp -a`` and ``sync`` of the same data directory, in one run.

A real gateway (``bench.verify.fill_gateway``: an enrolled badge, a real Intake with the
gateway's own TSA) receives one incident of ``SEGMENTS`` random segments of
``SEGMENT_BYTES``. ``take_backup`` then copies it (the database through SQLite's backup
API, every vault file hashed and fsynced, the ledger checked against its checkpoint, the
manifest written), alternately with ``cp -a`` of the same directory followed by ``sync``:
what the disk does for a copy with no check at all. The figure is the backup's throughput
as a ratio to the copy's; it tells an operator how long the nightly backup takes.

Honest choices. Both copies go to the same file system as the source, so both read from
and write to one disk; the page cache is not dropped between rounds (that needs root and
would make the first copy pay for the second), so both read warm data. Everything is
removed afterwards.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.report import Figure
from bench.verify import fill_gateway
from gateway.maintenance import take_backup

SEGMENTS = 256
SEGMENT_BYTES = 1 << 20
ROUNDS = 3
_MB = 1e6


def run(
    segments: int = SEGMENTS, segment_bytes: int = SEGMENT_BYTES, rounds: int = ROUNDS
) -> list[Figure]:
    """Fill a gateway, then time ``take_backup`` and ``cp -a`` + ``sync`` alternately."""
    temp = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    try:
        data_dir = fill_gateway(temp, segments, segment_bytes)
        size = sum(p.stat().st_size for p in data_dir.root.rglob("*") if p.is_file())
        backups, copies = [], []
        for number in range(rounds):
            target = temp / f"backup-{number}"
            start = time.perf_counter()
            result = take_backup(data_dir, target)
            backups.append(time.perf_counter() - start)
            copied = result.bytes
            shutil.rmtree(target)
            target = temp / f"copy-{number}"
            start = time.perf_counter()
            subprocess.run(["cp", "-a", str(data_dir.root), str(target)], check=True)
            subprocess.run(["sync", "-f", str(temp)], check=True)
            copies.append(time.perf_counter() - start)
            shutil.rmtree(target)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    backup_rate = copied / statistics.median(backups) / _MB
    copy_rate = size / statistics.median(copies) / _MB
    return [
        Figure(
            name="backup throughput",
            value=backup_rate,
            unit="MB/s",
            limit_value=copy_rate,
            ratio=backup_rate / copy_rate,
            goal=">= 0.5 of cp -a + sync",
            note=(
                f"{segments} segments of {segment_bytes} bytes ({copied / _MB:.0f} MB backed "
                f"up); median of {rounds} rounds; the backup hashes every byte, fsyncs every "
                "file and checks the ledger, cp checks nothing"
            ),
        )
    ]
