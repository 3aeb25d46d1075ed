"""The free-space reserve: the larger of bytes and percent, read from the real file system."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.config import ReserveSettings
from gateway.errors import StorageError
from gateway.storage.reserve import DiskReserve


def test_the_reserve_is_the_larger_of_bytes_and_percent(tmp_path: Path) -> None:
    stats = os.statvfs(tmp_path)
    total = stats.f_blocks * stats.f_frsize
    by_percent = DiskReserve(tmp_path, ReserveSettings(bytes=1, percent=10.0)).state()
    assert by_percent.total_bytes == total and by_percent.reserve_bytes == total // 10
    by_bytes = DiskReserve(tmp_path, ReserveSettings(bytes=total, percent=1.0)).state()
    assert by_bytes.reserve_bytes == total and by_bytes.low
    roomy = DiskReserve(tmp_path, ReserveSettings(bytes=0, percent=0.0))
    assert not roomy.state().low and roomy.room_for(1)
    assert not roomy.room_for(roomy.state().free_bytes + 1)


def test_an_unreadable_file_system_is_an_error_or_none(tmp_path: Path) -> None:
    missing = DiskReserve(tmp_path / "gone")
    with pytest.raises(StorageError, match="cannot read free space"):
        missing.state()
    assert missing.state_or_none() is None
