"""The quarantine: raw bytes kept with their reason, and counts that survive a restart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evidence.hashing import sha256
from gateway.config import QuarantineSettings, ReserveSettings
from gateway.errors import QuarantineError
from gateway.intake.quarantine import LOG_FILE, Quarantine
from gateway.storage.reserve import DiskReserve

NOW_NS = 1_790_000_000_123_456_789


def test_keep_writes_the_bytes_and_a_sidecar(tmp_path: Path) -> None:
    quarantine = Quarantine(tmp_path / "q", clock=lambda: NOW_NS)
    raw = b"\x00\xffgarbage"
    kept = quarantine.keep(
        raw,
        badge="badge-a",
        topic="medbadge/v1/badge/badge-a/alert",
        reason="malformed",
        detail="alert is not canonical CBOR",
    )
    assert kept is not None and kept.read_bytes() == raw
    assert kept.parent.name == "2026-09-21"
    sidecar = json.loads(kept.with_suffix(".json").read_text())
    assert sidecar == {
        "reason": "malformed",
        "detail": "alert is not canonical CBOR",
        "topic": "medbadge/v1/badge/badge-a/alert",
        "badge": "badge-a",
        "received_wall_ns": NOW_NS,
        "received_utc": "2026-09-21T14:13:20.123457+00:00",
        "size": len(raw),
        "sha256": sha256(raw).hex(),
        "file": kept.name,
    }


def test_keep_file_moves_it_in(tmp_path: Path) -> None:
    quarantine = Quarantine(tmp_path / "q")
    source = tmp_path / "7.part"
    source.write_bytes(b"partial segment")
    kept = quarantine.keep_file(
        source, badge="badge-a", topic="t", reason="partial-timeout", detail="timed out"
    )
    assert kept is not None and not source.exists()
    assert kept.read_bytes() == b"partial segment"
    assert json.loads(kept.with_suffix(".json").read_text())["size"] == 15


def test_counts_survive_a_restart_and_are_shared(tmp_path: Path) -> None:
    first = Quarantine(tmp_path / "q")
    second = Quarantine(tmp_path / "q")  # another intake process on the same machine
    for _ in range(3):
        first.keep(b"x", badge=None, topic="?", reason="malformed", detail="d")
    second.keep(b"y", badge="badge-a", topic="t", reason="bad-signature", detail="d")
    assert first.counts() == second.counts() == {"bad-signature": 1, "malformed": 3}
    assert Quarantine(tmp_path / "q").counts() == {"bad-signature": 1, "malformed": 3}


def test_entries_never_overwrite_each_other(tmp_path: Path) -> None:
    quarantine = Quarantine(tmp_path / "q", clock=lambda: NOW_NS)
    kept = [
        quarantine.keep(bytes([n]), badge=None, topic="t", reason="malformed", detail="d")
        for n in range(50)
    ]
    paths = {path for path in kept if path is not None}
    assert len(paths) == 50 and {p.read_bytes() for p in paths} == {bytes([n]) for n in range(50)}


def test_a_reason_must_be_a_reason_code(tmp_path: Path) -> None:
    with pytest.raises(QuarantineError, match="not a reason code"):
        Quarantine(tmp_path / "q").keep(b"", badge=None, topic="t", reason="../x", detail="d")


def _flood(
    quarantine: Quarantine, count: int, size: int, badge: str = "badge-a"
) -> list[Path | None]:
    return [
        quarantine.keep(
            bytes([n % 256]) * size,
            badge=badge,
            topic=f"medbadge/v1/badge/{badge}/alert",
            reason="malformed",
            detail="garbage",
        )
        for n in range(count)
    ]


def _stored_bytes(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.glob("*/*.bin"))


def test_past_a_badges_count_quota_only_metadata_is_kept(tmp_path: Path) -> None:
    quotas = QuarantineSettings(badge_entries=3, total_entries=100)
    quarantine = Quarantine(tmp_path / "q", quotas=quotas)
    kept = _flood(quarantine, 5, 10)
    assert [path is not None for path in kept] == [True, True, True, False, False]
    other = _flood(quarantine, 1, 10, badge="badge-b")
    assert other[0] is not None  # another badge has its own quota
    assert quarantine.counts() == {"malformed": 6}
    assert quarantine.not_kept() == {"malformed": 2}
    lines = [json.loads(line) for line in (tmp_path / "q" / LOG_FILE).read_text().splitlines()]
    assert len(lines) == 6
    dropped = lines[3]
    assert dropped["kept"] is None and dropped["not_kept"] == "badge quota"
    assert dropped["sha256"] == sha256(bytes([3]) * 10).hex() and dropped["size"] == 10
    assert dropped["badge"] == "badge-a" and dropped["reason"] == "malformed"


def test_byte_quotas_bound_the_disk_use_per_badge_and_in_all(tmp_path: Path) -> None:
    quotas = QuarantineSettings(badge_bytes=20_000, total_bytes=30_000)
    quarantine = Quarantine(tmp_path / "q", quotas=quotas)
    _flood(quarantine, 50, 4000, badge="badge-a")
    assert _stored_bytes(tmp_path / "q") <= 20_000
    _flood(quarantine, 50, 4000, badge="badge-b")
    total = sum(path.stat().st_size for path in (tmp_path / "q").glob("*/*"))
    assert total <= 30_000
    assert _stored_bytes(tmp_path / "q") > 20_000  # badge-b had some room left in the total
    assert quarantine.not_kept()["malformed"] == 100 - len(list((tmp_path / "q").glob("*/*.bin")))


def test_the_totals_are_read_back_at_start(tmp_path: Path) -> None:
    quotas = QuarantineSettings(badge_entries=4, total_entries=100)
    _flood(Quarantine(tmp_path / "q", quotas=quotas), 3, 10)
    again = Quarantine(tmp_path / "q", quotas=quotas)
    assert again.badge_usage("badge-a")[1] == 3
    assert [path is not None for path in _flood(again, 2, 10)] == [True, False]


def test_the_metadata_log_is_rotated_at_its_size(tmp_path: Path) -> None:
    quotas = QuarantineSettings(badge_entries=0, total_entries=0, log_bytes=4096)
    quarantine = Quarantine(tmp_path / "q", quotas=quotas)
    _flood(quarantine, 200, 1)
    logs = [tmp_path / "q" / LOG_FILE, tmp_path / "q" / (LOG_FILE + ".1")]
    assert all(path.stat().st_size <= 4096 for path in logs)
    assert quarantine.counts() == quarantine.not_kept() == {"malformed": 200}


def test_bytes_not_wanted_are_not_kept_and_a_moved_file_is_removed(tmp_path: Path) -> None:
    quarantine = Quarantine(tmp_path / "q")
    assert (
        quarantine.keep(
            b"x", badge="b", topic="t", reason="unknown-badge", detail="d", bytes_wanted=False
        )
        is None
    )
    source = tmp_path / "7.part"
    source.write_bytes(b"partial")
    kept = quarantine.keep_file(
        source, badge="b", topic="t", reason="partial-timeout", detail="d", bytes_wanted=False
    )
    assert kept is None and not source.exists()
    assert not list((tmp_path / "q").glob("*/*.bin"))
    assert quarantine.not_kept() == {"partial-timeout": 1, "unknown-badge": 1}


def test_below_the_disk_reserve_no_bytes_are_kept(tmp_path: Path) -> None:
    free = DiskReserve(tmp_path).state().free_bytes
    everything = DiskReserve(tmp_path, ReserveSettings(bytes=free + 2**30, percent=0))
    quarantine = Quarantine(tmp_path / "q", reserve=everything)
    assert _flood(quarantine, 1, 10) == [None]
    line = json.loads((tmp_path / "q" / LOG_FILE).read_text())
    assert line["not_kept"] == "disk reserve"
    roomy = Quarantine(tmp_path / "q2", reserve=DiskReserve(tmp_path, ReserveSettings(0, 0)))
    assert _flood(roomy, 1, 10)[0] is not None


def test_counts_from_before_counts_were_numbers_carry_on(tmp_path: Path) -> None:
    quarantine = Quarantine(tmp_path / "q")
    (tmp_path / "q" / "counts" / "malformed").write_bytes(b"." * 70)
    assert quarantine.counts() == {"malformed": 70}
    _flood(quarantine, 1, 1)
    assert quarantine.counts() == {"malformed": 71}
    assert (tmp_path / "q" / "counts" / "malformed").read_bytes() == b"71"


def test_an_entry_without_its_sidecar_still_counts_at_start(tmp_path: Path) -> None:
    quotas = QuarantineSettings(total_bytes=2000, badge_bytes=2000)
    kept = _flood(Quarantine(tmp_path / "q", quotas=quotas), 1, 1000)[0]
    assert kept is not None
    kept.with_suffix(".json").unlink()  # a crash between the two files
    again = Quarantine(tmp_path / "q", quotas=quotas)
    assert again.usage.total.size == 1000 and again.badge_usage(None) == (1000, 1)
    assert _flood(again, 1, 1000, badge="badge-b") == [None]  # the total is full
