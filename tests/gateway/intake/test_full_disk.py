"""The intake on a full disk: a chunk it cannot write is reported and not receipted, so the
badge keeps it; once there is room the resent chunks complete the segment, nothing lost.

The disk fills by :class:`~tests.small_filesystem.CappedWrites` on the intake's own writes,
so this runs without root (``tests/test_faults.py`` meets a real full tmpfs as root).
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from evidence.hashing import sha256
from gateway.intake import reassembly
from gateway.storage import vault
from tests.gateway.intake.test_intake import Gateway
from tests.small_filesystem import CappedWrites
from tests.storage_backends import TestDatabase


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    gateway = Gateway(tmp_path, TestDatabase("sqlite", tmp_path / "gateway" / "gateway.db"))
    yield gateway
    gateway.intake.close()


@pytest.fixture
def disk(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> CappedWrites:
    """The gateway's data directory on a disk that has room until a test fills it."""
    return CappedWrites(gateway.hospital.data_dir.root).install(monkeypatch, reassembly, vault)


def stored_bytes(gateway: Gateway, digest: bytes) -> bytes:
    storage = gateway.hospital.data_dir.storage()
    try:
        with storage.vault.open(digest) as stream:
            return stream.read()
    finally:
        storage.close()


@pytest.mark.parametrize("room", [0, 1500], ids=["full-before", "full-mid-segment"])
def test_a_chunk_the_full_disk_refuses_is_reported_and_the_resend_stores_it(
    gateway: Gateway, disk: CappedWrites, caplog: pytest.LogCaptureFixture, room: int
) -> None:
    a = gateway.a
    (segment,) = a.seal(1, size=6000)
    chunks = a.chunks(segment, "inc-1")
    gateway.send(a.topic("incident"), a.incident("inc-1", 0, 0))
    assert [r.key for r in gateway.receipts()] == []  # its segment is not stored yet

    disk.fill(leaving=room)  # room for one chunk and part of the next, or for none
    with caplog.at_level(logging.ERROR):
        for chunk in chunks:
            gateway.send(a.topic("segment"), chunk)
    assert disk.refused > 0
    failed = gateway.intake.counts().get("internal-error", 0)
    assert failed == len(chunks) - (1 if room else 0), "each chunk not written is reported"
    assert os.strerror(errno.ENOSPC) in caplog.text
    assert gateway.receipts() == [] and gateway.rejections() == []
    assert gateway.rows("SELECT COUNT(*) FROM segments") == [(0,)]

    disk.free()  # an operator made room: the badge, holding no receipt, sends it all again
    for chunk in chunks:
        gateway.send(a.topic("segment"), chunk)
    assert [r.key for r in gateway.receipts()] == ["0", "inc-1"]
    assert stored_bytes(gateway, sha256(segment.to_bytes())) == segment.to_bytes()
    assert gateway.rows("SELECT COUNT(*) FROM segments") == [(1,)]
