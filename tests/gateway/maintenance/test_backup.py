"""The restore drill: a hospital with an incident is backed up, destroyed and restored
elsewhere; its ledger, footage and exports survive, and an older backup is refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from evidence.cli import main as evidence_main
from evidence.package.layout import CLIP
from gateway.cli import main
from gateway.datadir import GatewayDataDir
from gateway.ledger.custody import CustodyLog
from gateway.ledger.ledger import open_ledger
from gateway.maintenance import restore_backup, take_backup
from gateway.maintenance.manifest import CHECKPOINT_FILE, MANIFEST_FILE, SUMS_FILE
from tests.gateway.badge_messages import Hospital, make_hospital
from tests.gateway.court_package import DeliveredIncident, deliver_incident, record_footage


@dataclass(frozen=True)
class Site:
    """A hospital with one delivered incident, backed up once."""

    hospital: Hospital
    incident: DeliveredIncident
    backup: Path
    recorded: Path
    """The checkpoint the operator recorded off the machine at that backup."""
    gateway_key: Path
    """The gateway's public key, as a court holds it from before the loss."""


@pytest.fixture
def site(tmp_path: Path) -> Site:
    hospital = make_hospital(tmp_path / "site")
    incident = deliver_incident(hospital, record_footage(2.0))
    backup, recorded = tmp_path / "backup-1", tmp_path / "offsite" / "checkpoint-1.note"
    recorded.parent.mkdir()
    root = str(hospital.data_dir.root)
    args = ["--include-custodian-key", "--record-checkpoint", str(recorded)]
    assert main(["--data", root, "backup", "--to", str(backup), *args]) == 0
    gateway_key = tmp_path / "offsite" / "gateway-signing.pub"
    shutil.copy(hospital.data_dir.signing_public_key_path, gateway_key)
    return Site(hospital, incident, backup, recorded, gateway_key)


def restore(backup: Path, target: Path, *expect: str) -> int:
    return main(["--data", str(target), "restore", "--from", str(backup), *expect])


def test_the_drill_back_up_destroy_restore_elsewhere_export_verify(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the backup checks with coreutils alone, and its checkpoint is the one recorded
    checked = subprocess.run(
        ["sha256sum", "--quiet", "-c", SUMS_FILE], cwd=site.backup, capture_output=True, check=False
    )
    assert checked.returncode == 0, checked.stdout
    assert (site.backup / CHECKPOINT_FILE).read_bytes() == site.recorded.read_bytes()
    manifest = json.loads((site.backup / MANIFEST_FILE).read_text())
    paths = {entry["path"] for entry in manifest["files"]}
    assert {"gateway.db", "keys/custodian.key", "keys/gateway-signing.key", "ca/ca.key"} <= paths
    assert sum(path.startswith("vault/") for path in paths) == len(site.incident.sealed)

    shutil.rmtree(site.hospital.data_dir.root)  # the machine is lost
    elsewhere = tmp_path / "new-machine" / "gateway"
    assert restore(site.backup, elsewhere, "--expect-checkpoint", str(site.recorded)) == 0
    assert "contains the expected checkpoint" in capsys.readouterr().out

    restored = GatewayDataDir(elsewhere)
    recorded = last_entry(restored)  # the restore itself is on record
    assert (recorded["action"], recorded["actor"]) == ("restore", "gateway restore")
    assert recorded["detail"]["lost_entries"] == 0
    storage = restored.storage()
    try:
        ledger = open_ledger(restored, storage)  # checks the whole log against its checkpoint
        last = ledger.latest_checkpoint()
        assert last is not None and last.note == site.recorded.read_bytes()
    finally:
        storage.close()

    package = tmp_path / "after-restore.zip"
    export = ["export", site.incident.incident_id, "-o", str(package), "--actor", "Clerk Aru"]
    assert (
        main(
            [
                "--data",
                str(elsewhere),
                *export,
                "--justification",
                "restore drill export",
                "--no-mp4",
            ]
        )
        == 0
    )
    with zipfile.ZipFile(package) as archive:  # the footage opened with the restored key
        assert archive.read(CLIP) == b"".join(site.incident.plaintexts)
    assert evidence_main(["verify", str(package), "--gateway-key", str(site.gateway_key)]) == 0


def test_an_older_backup_is_refused_as_a_rollback(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hospital = site.hospital
    deliver_incident(hospital, record_footage(1.0), incident_id="inc-0418", after=site.incident)
    newer, recorded = tmp_path / "backup-2", tmp_path / "offsite" / "checkpoint-2.note"
    root = str(hospital.data_dir.root)
    assert (
        main(["--data", root, "backup", "--to", str(newer), "--record-checkpoint", str(recorded)])
        == 0
    )
    assert not (newer / "keys" / "custodian.key").exists()  # its offline copy lives elsewhere
    capsys.readouterr()

    assert restore(site.backup, tmp_path / "a", "--expect-checkpoint", str(recorded)) == 1
    error = capsys.readouterr().err
    assert "refused: rollback" in error and "older than what was recorded" in error
    assert not (tmp_path / "a").exists()

    accept = ["--expect-checkpoint", str(recorded), "--accept-loss"]
    assert restore(site.backup, tmp_path / "a", *accept) == 1  # says why, or nothing happens
    assert "--justification" in capsys.readouterr().err and not (tmp_path / "a").exists()
    why = "Disk lost 2026-12-04; newest backup restored, loss declared to the witnesses"
    assert restore(site.backup, tmp_path / "a", *accept, "--justification", why) == 0
    assert "LOSS RECORDED" in capsys.readouterr().out
    lost = last_entry(GatewayDataDir(tmp_path / "a"))
    assert (lost["action"], lost["justification"]) == ("restore", why)
    assert (
        lost["detail"]["lost_entries"]
        == lost["detail"]["recorded_entries"] - (lost["detail"]["restored_entries"])
        > 0
    )

    assert restore(newer, tmp_path / "b", "--expect-checkpoint", str(recorded)) == 0
    assert "custodian private key was not in the backup" in capsys.readouterr().out
    # the older checkpoint is a prefix of the newer ledger: that backup passes it too
    assert restore(newer, tmp_path / "c", "--expect-checkpoint", str(site.recorded)) == 0


def test_an_empty_file_system_of_its_own_is_restored_into(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fresh mount point: the directory exists, holds lost+found, and cannot be replaced."""
    mount = tmp_path / "mount"
    (mount / "lost+found").mkdir(parents=True)
    newer = tmp_path / "offsite" / "newer.note"
    note = site.recorded.read_bytes()
    deliver_incident(
        site.hospital, record_footage(1.0), incident_id="inc-0418", after=site.incident
    )
    root = str(site.hospital.data_dir.root)
    assert (
        main(
            [
                "--data",
                root,
                "backup",
                "--to",
                str(tmp_path / "b2"),
                "--record-checkpoint",
                str(newer),
            ]
        )
        == 0
    )
    assert newer.read_bytes() != note
    assert restore(site.backup, mount, "--expect-checkpoint", str(newer)) == 1  # a rollback
    assert sorted(path.name for path in mount.iterdir()) == ["lost+found"]
    assert restore(site.backup, mount, "--expect-checkpoint", str(site.recorded)) == 0
    assert {"gateway.db", "keys", "ca", "vault", "lost+found"} <= {p.name for p in mount.iterdir()}
    assert not [path for path in mount.iterdir() if path.name.startswith(".restoring")]
    assert GatewayDataDir(mount).is_initialised()
    capsys.readouterr()


def test_a_populated_directory_is_never_overwritten(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    root = site.hospital.data_dir.root
    before = (root / "gateway.db").read_bytes()
    assert restore(site.backup, root, "--expect-checkpoint", str(site.recorded)) == 1
    assert "holds files already" in capsys.readouterr().err
    assert (root / "gateway.db").read_bytes() == before


def test_a_damaged_backup_or_a_foreign_checkpoint_is_refused(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    damaged = tmp_path / "damaged"
    shutil.copytree(site.backup, damaged)
    segment = next((damaged / "vault").rglob("*.mbseal"))
    segment.chmod(0o600)
    data = bytearray(segment.read_bytes())
    data[100] ^= 1
    segment.write_bytes(bytes(data))
    assert restore(damaged, tmp_path / "x", "--no-expected-checkpoint") == 1
    error = capsys.readouterr().err
    assert segment.name in error and "damaged or was altered" in error
    assert not (tmp_path / "x").exists()

    linked = tmp_path / "linked"
    shutil.copytree(site.backup, linked)
    (linked / "ca" / "ca.crt").unlink()
    (linked / "ca" / "ca.crt").symlink_to(site.backup / "ca" / "ca.crt")
    assert restore(linked, tmp_path / "w", "--no-expected-checkpoint") == 1
    assert "symbolic link" in capsys.readouterr().err

    other = make_hospital(tmp_path / "other", ("badge-a",))
    deliver_incident(other, record_footage(1.0))
    foreign = tmp_path / "foreign.note"
    backup = ["backup", "--to", str(tmp_path / "o"), "--record-checkpoint", str(foreign)]
    assert main(["--data", str(other.data_dir.root), *backup]) == 0
    capsys.readouterr()
    assert restore(site.backup, tmp_path / "y", "--expect-checkpoint", str(foreign)) == 1
    assert "not a checkpoint signed by this backup's gateway key" in capsys.readouterr().err


def test_restore_needs_a_checkpoint_or_says_it_goes_without(site: Site, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        restore(site.backup, tmp_path / "z")
    assert exited.value.code == 2


def test_a_backup_taken_while_the_ledger_grows_restores_consistent(
    site: Site, tmp_path: Path
) -> None:
    """The database is copied while another connection appends and checkpoints."""
    data_dir = site.hospital.data_dir
    stop = threading.Event()
    written = []

    def write() -> None:
        storage = data_dir.storage()
        try:
            ledger = open_ledger(data_dir, storage)
            custody = CustodyLog(ledger)
            while not stop.is_set():
                written.append(custody.record("Auditor Aru", "view", "inc-0417", "Drill check"))
                if len(written) % 10 == 0:
                    ledger.checkpoint()
        finally:
            storage.close()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        while len(written) < 20:
            time.sleep(0.01)
        result = take_backup(data_dir, tmp_path / "online")
    finally:
        stop.set()
        writer.join()
    assert 0 < result.manifest.ledger_size < site_ledger_size(data_dir)
    restored = restore_backup(tmp_path / "online", tmp_path / "restored")
    assert restored.ledger_size == result.manifest.ledger_size


def last_entry(data_dir: GatewayDataDir) -> dict[str, Any]:
    """The body of the ledger's last entry."""
    storage = data_dir.storage()
    try:
        ledger = open_ledger(data_dir, storage)
        entry = ledger.entry(ledger.size - 1)
        assert entry.kind == "custody"
        assert isinstance(entry.body, dict)
        return dict(entry.body)
    finally:
        storage.close()


def site_ledger_size(data_dir: GatewayDataDir) -> int:
    storage = data_dir.storage()
    try:
        return open_ledger(data_dir, storage).size
    finally:
        storage.close()
