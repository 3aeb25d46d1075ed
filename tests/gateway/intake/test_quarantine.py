"""The quarantine: raw bytes kept with their reason, and counts that survive a restart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evidence.hashing import sha256
from gateway.errors import QuarantineError
from gateway.intake.quarantine import Quarantine

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
    assert kept.read_bytes() == raw
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
    assert not source.exists() and kept.read_bytes() == b"partial segment"
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
    paths = {
        quarantine.keep(bytes([n]), badge=None, topic="t", reason="malformed", detail="d")
        for n in range(50)
    }
    assert len(paths) == 50 and {p.read_bytes() for p in paths} == {bytes([n]) for n in range(50)}


def test_a_reason_must_be_a_reason_code(tmp_path: Path) -> None:
    with pytest.raises(QuarantineError, match="not a reason code"):
        Quarantine(tmp_path / "q").keep(b"", badge=None, topic="t", reason="../x", detail="d")
