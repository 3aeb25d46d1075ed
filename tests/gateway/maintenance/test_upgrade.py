"""Upgrades: a data directory made by an earlier release opens and migrates forward, and
``gateway upgrade --check`` says what will change without changing anything.

``tests/data/gateway-0.1.0`` is a data directory made by release 0.1.0 (its keys are for
tests only; see the README beside it). Remake it only when cutting a release, with
``python -m tests.gateway.maintenance.test_upgrade tests/data/gateway-NEW``, and keep the
old ones: each is a release a hospital may still be running.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.datadir import GatewayDataDir
from gateway.intake.intake import Intake
from gateway.ledger.ledger import open_ledger
from gateway.storage.database import schema_version, seal_copy
from gateway.storage.migrations import SCHEMA_VERSION
from gateway.storage.schema import MIGRATIONS
from tests.gateway.badge_messages import BadgeMessages, make_hospital

REPO = Path(__file__).resolve().parents[3]
FIXTURE = REPO / "tests" / "data" / "gateway-0.1.0"
FIXTURE_SCHEMA = 6
"""The schema version release 0.1.0 wrote."""
INCIDENT = "inc-0001"


def working_copy(fixture: Path, target: Path) -> GatewayDataDir:
    """A copy of ``fixture`` with the modes git does not keep: secrets 0600, folders 0700."""
    shutil.copytree(fixture, target, ignore=shutil.ignore_patterns("README.md"))
    for folder, _subfolders, names in os.walk(target):
        os.chmod(folder, 0o700)
        for name in names:
            path = Path(folder) / name
            path.chmod(0o600 if path.suffix == ".key" else 0o644)
    return GatewayDataDir(target)


def digests(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_the_previous_release_opens_and_migrates_forward(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = working_copy(FIXTURE, tmp_path / "gateway")
    assert schema_version(data_dir.database_path) == FIXTURE_SCHEMA
    before = digests(data_dir.root)
    assert main(["--data", str(data_dir.root), "upgrade", "--check"]) == 0
    said = capsys.readouterr().out
    assert f"database schema version {FIXTURE_SCHEMA}" in said
    assert f"this software writes version {SCHEMA_VERSION}" in said
    for number in range(FIXTURE_SCHEMA + 1, SCHEMA_VERSION + 1):
        assert f"migration {number}: " in said
    assert digests(data_dir.root) == before  # --check changed nothing

    assert main(["--data", str(data_dir.root), "upgrade"]) == 0
    assert schema_version(data_dir.database_path) == SCHEMA_VERSION
    storage = data_dir.storage()
    try:
        ledger = open_ledger(data_dir, storage)  # the old ledger checks against its checkpoint
        last = ledger.latest_checkpoint()
        assert last is not None and last.size == ledger.size > 0
        incident = storage.catalogue.incident("badge-a", INCIDENT)
        assert incident is not None and (incident.first_seq, incident.last_seq) == (0, 1)
    finally:
        storage.close()
    assert main(["--data", str(data_dir.root), "upgrade", "--check"]) == 0
    assert "nothing to change" in capsys.readouterr().out


def test_check_names_every_pending_migration_and_the_tsa_still_to_issue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An older schema, made with the first migrations alone, and no TSA key yet."""
    data_dir = working_copy(FIXTURE, tmp_path / "gateway")
    data_dir.database_path.unlink()
    with closing(sqlite3.connect(data_dir.database_path, isolation_level=None)) as old:
        for number, script in enumerate(MIGRATIONS[:3], start=1):
            old.executescript(script)
            old.execute(f"PRAGMA user_version={number}")
    data_dir.tsa_certificate_path.unlink()
    data_dir.tsa_key_path.unlink()
    before = digests(data_dir.root)
    assert main(["--data", str(data_dir.root), "upgrade", "--check"]) == 0
    said = capsys.readouterr().out
    assert "migration 4: CREATE TABLE console_users; CREATE TABLE console_sessions" in said
    assert "migration 6: ALTER TABLE alerts ADD COLUMN arrival" in said
    assert "TSA key and certificate are issued" in said
    assert digests(data_dir.root) == before
    assert main(["--data", str(data_dir.root), "upgrade"]) == 0
    assert schema_version(data_dir.database_path) == SCHEMA_VERSION
    assert data_dir.tsa_certificate_path.is_file()


def test_a_newer_database_or_a_broken_configuration_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = working_copy(FIXTURE, tmp_path / "gateway")
    (data_dir.root / "gateway.toml").write_text("[brokers]\n")
    assert main(["--data", str(data_dir.root), "upgrade", "--check"]) == 1
    assert "gateway.toml must be fixed first" in capsys.readouterr().out
    assert main(["--data", str(data_dir.root), "upgrade"]) == 1
    assert "unknown section" in capsys.readouterr().err
    (data_dir.root / "gateway.toml").unlink()
    with closing(sqlite3.connect(data_dir.database_path, isolation_level=None)) as database:
        database.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    assert main(["--data", str(data_dir.root), "upgrade", "--check"]) == 1
    assert "newer than this software" in capsys.readouterr().err


def make_fixture(target: Path) -> None:
    """Make the data directory this release leaves: a badge, an incident of two segments
    with its alert and heartbeat, and a checkpoint over all of it."""
    work = target.parent / f".{target.name}.work"
    hospital = make_hospital(work, ("badge-a",))
    badge = BadgeMessages.of(hospital.bundles["badge-a"])
    intake = Intake(
        hospital.data_dir,
        lambda _t, _p: None,
        lambda _e: None,
        timestamper=hospital.data_dir.timestamper(),
    )
    try:
        intake.handle(badge.topic("heartbeat"), badge.heartbeat(10**9, 1_790_000_000 * 10**9))
        intake.handle(badge.topic("alert"), badge.alert(INCIDENT))
        intake.handle(badge.topic("incident"), badge.incident(INCIDENT, 0, 1))
        for segment in badge.seal(2, size=2000):
            for chunk in badge.chunks(segment, INCIDENT):
                intake.handle(badge.topic("segment"), chunk)
        intake.ledger.checkpoint()
    finally:
        intake.close()
    seal_copy(hospital.data_dir.database_path)
    for leftover in ("gateway.db-wal", "gateway.db-shm", "keys/.tsa.lock"):
        (hospital.data_dir.root / leftover).unlink(missing_ok=True)
    for empty in ("partial", "quarantine"):
        shutil.rmtree(hospital.data_dir.root / empty, ignore_errors=True)
    shutil.move(hospital.data_dir.root, target)
    shutil.rmtree(work)


if __name__ == "__main__":
    make_fixture(Path(sys.argv[1]))
