"""gateway export: a real incident, exported, checked with the verifier and with standard tools."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from demo.enrolment import enroll_badge
from evidence.bundle import EnrolmentBundle
from evidence.hashing import sha256
from evidence.keys import HpkeSuite
from evidence.package.instructions import commands
from evidence.package.layout import CLIP, DERIVED_MP4, INSTRUCTIONS, MANIFEST
from evidence.timestamp import verify_timestamp
from evidence.verify import verify_package
from gateway.cli import main as gateway_main
from gateway.datadir import GatewayDataDir
from gateway.errors import ExportError, LedgerIntegrityError
from gateway.export.export import ExportRequest, ExportResult, export_incident
from gateway.intake.intake import Intake
from gateway.ledger.custody import CustodyLog
from gateway.ledger.ledger import open_ledger
from gateway.timestamping import TsaClient, TsaHttpServer
from tests.badge.tsprobe import require_ffmpeg
from tests.gateway.badge_messages import Hospital, make_hospital
from tests.gateway.court_package import (
    ACTOR,
    JUSTIFICATION,
    DeliveredIncident,
    deliver_incident,
    export,
    record_footage,
)
from tests.postgres import PostgresServer
from tests.seaweedfs import SeaweedServer
from tests.storage_backends import TestDatabase


@dataclass(frozen=True)
class Exported:
    """A hospital with one delivered incident, and its package, unpacked too."""

    hospital: Hospital
    incident: DeliveredIncident
    result: ExportResult
    unpacked: Path


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    root = tmp_path_factory.mktemp("export")
    hospital = make_hospital(root)
    incident = deliver_incident(hospital, record_footage(4.0))
    result = export(hospital, incident.incident_id, root / "inc-0417.zip")
    unpacked = root / "unpacked"
    with zipfile.ZipFile(result.path) as archive:
        archive.extractall(unpacked)
    return Exported(hospital, incident, result, unpacked)


def _probe(path: Path, *entries: str) -> dict[str, object]:
    require_ffmpeg()
    completed = subprocess.run(
        ["ffprobe", "-v", "error", *entries, "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    result: dict[str, object] = json.loads(completed.stdout)
    return result


def _streams(path: Path) -> dict[str, dict[str, str]]:
    found = _probe(
        path,
        "-count_frames",
        "-count_packets",
        "-show_entries",
        "stream=codec_type,codec_name,nb_read_frames,nb_read_packets",
    )["streams"]
    assert isinstance(found, list)
    return {stream["codec_type"]: stream for stream in found}


def test_the_package_verifies_and_holds_the_clip_as_recorded(exported: Exported) -> None:
    result, incident = exported.result, exported.incident
    assert result.report.verified
    assert (result.first_seq, result.last_seq) == (40, 43)
    assert verify_package(result.path).verified
    plaintexts = incident.plaintexts
    for seq, plaintext in enumerate(plaintexts, start=40):
        assert (exported.unpacked / f"segments/{seq:010d}.ts").read_bytes() == plaintext
    assert (exported.unpacked / CLIP).read_bytes() == b"".join(plaintexts)
    sealed = incident.sealed[0]
    assert (exported.unpacked / "segments/0000000040.header").read_bytes() == sealed.header_bytes
    assert (exported.unpacked / "segments/0000000040.sig").read_bytes() == sealed.signature


def test_every_member_is_stored_uncompressed_with_the_instructions_first(
    exported: Exported,
) -> None:
    with zipfile.ZipFile(exported.result.path) as archive:
        infos = archive.infolist()
    assert {info.compress_type for info in infos} == {zipfile.ZIP_STORED}
    assert [info.filename for info in infos[:3]] == [INSTRUCTIONS, MANIFEST, "SHA256SUMS"]


def test_the_export_is_a_custody_entry_in_the_checkpoint_it_ships_with(
    exported: Exported,
) -> None:
    data_dir = exported.hospital.data_dir
    storage = data_dir.storage()
    try:
        entries = CustodyLog(open_ledger(data_dir, storage)).entries(
            subject="inc-0417", action="export"
        )
    finally:
        storage.close()
    (entry,) = [item for item in entries if item.ledger_index == exported.result.custody_index]
    assert (entry.actor, entry.justification) == (ACTOR, JUSTIFICATION)
    assert entry.ledger_index == exported.result.custody_index
    assert entry.ledger_index < exported.result.checkpoint.size
    assert entry.detail["clip_sha256"] == sha256(b"".join(exported.incident.plaintexts))
    assert entry.detail["derived_mp4_sha256"] == sha256(
        (exported.unpacked / DERIVED_MP4).read_bytes()
    )
    assert entry.detail["wearer"] == "Nurse badge-a"
    custody = json.loads((exported.unpacked / "custody.json").read_text())
    assert [item["action"] for item in custody["entries"]] == ["enrol", "export"]
    assert custody["entries"][-1]["entry_file"] == f"ledger/entries/{entry.ledger_index}.entry"


def test_the_derived_mp4_is_the_same_frames_remuxed_and_marked_as_derived(
    exported: Exported,
) -> None:
    clip = _streams(exported.unpacked / CLIP)
    mp4_path = exported.unpacked / DERIVED_MP4
    mp4 = _streams(mp4_path)
    assert _probe(mp4_path, "-show_entries", "format=format_name")["format"] == {
        "format_name": "mov,mp4,m4a,3gp,3g2,mj2"
    }
    assert (mp4["video"]["codec_name"], mp4["audio"]["codec_name"]) == ("h264", "aac")
    assert mp4["video"]["nb_read_frames"] == clip["video"]["nb_read_frames"] == "120"
    # Every audio packet is copied; MP4 then drops the encoder's priming frame on decoding.
    assert mp4["audio"]["nb_read_packets"] == clip["audio"]["nb_read_packets"]
    manifest = json.loads((exported.unpacked / MANIFEST).read_text())
    (derived,) = manifest["derived"]
    assert derived["path"] == DERIVED_MP4
    assert derived["sha256"] == sha256(mp4_path.read_bytes()).hex()
    assert derived["derived_from"] == [f"segments/{seq:010d}.ts" for seq in range(40, 44)]
    roles = {item["path"]: item["role"] for item in manifest["files"]}
    assert roles[DERIVED_MP4] == "derived" and roles[CLIP] == "clip"


def test_the_commands_in_verify_txt_succeed_as_written(exported: Exported) -> None:
    text = (exported.unpacked / INSTRUCTIONS).read_text()
    lines = commands(text)
    # sums, clip, 4 signatures, 4 video hashes, one key, checkpoint, time-stamp, trust
    assert len(lines) == 1 + 3 + 4 + 4 + 1 + 1 + 2 + 2
    outputs = []
    for line in lines:
        completed = subprocess.run(
            ["bash", "-c", line],
            cwd=exported.unpacked,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert completed.returncode == 0, (line, completed.stdout, completed.stderr)
        outputs.append(completed.stdout)
    files = [path for path in exported.unpacked.rglob("*") if path.is_file()]
    assert outputs[0].count(": OK") == len(files) - 1  # every file but SHA256SUMS itself
    assert outputs[1] == outputs[2]
    assert outputs[3] == "clip.ts is the segments joined\n"
    assert outputs[4:8] == ["Signature Verified Successfully\n"] * 4
    assert all(output.endswith("matches its signed header\n") for output in outputs[8:12])
    assert outputs[12].endswith("are one key\n")
    assert outputs[13] == "Signature Verified Successfully\n"
    assert outputs[14].strip().endswith("Verification: OK")
    assert "-attime" in lines[14]


def test_a_changed_file_makes_the_standard_commands_fail(
    exported: Exported, tmp_path: Path
) -> None:
    changed = tmp_path / "changed"
    with zipfile.ZipFile(exported.result.path) as archive:
        archive.extractall(changed)
    header = changed / "segments/0000000041.header"
    data = bytearray(header.read_bytes())
    data[-1] ^= 1
    header.write_bytes(data)
    lines = commands((changed / INSTRUCTIONS).read_text())
    failing = [
        line
        for line in lines
        if subprocess.run(
            ["bash", "-c", line], cwd=changed, capture_output=True, check=False
        ).returncode
    ]
    assert len(failing) == 2
    assert failing[0].startswith("sha256sum -c")
    assert "0000000041.header" in failing[1]


def test_the_cli_exports_and_refuses_without_a_justification(
    exported: Exported, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(exported.hospital.data_dir.root)
    output = tmp_path / "cli.zip"
    base = ["--data", data, "export", "inc-0417", "-o", str(output), "--actor", "Clerk Aru"]
    with pytest.raises(SystemExit) as exited:
        gateway_main(base)
    assert exited.value.code == 2 and not output.exists()
    assert gateway_main([*base, "--justification", "   "]) == 1
    assert "why (--justification)" in capsys.readouterr().err and not output.exists()
    assert gateway_main([*base, "--justification", "Court order 9", "--no-mp4"]) == 0
    out = capsys.readouterr().out
    assert "exported incident inc-0417 of badge badge-a (segments 40..43)" in out
    assert f"evidence verify {output}" in out
    report = verify_package(output)
    assert report.verified and report.summary.justification == "Court order 9"
    with zipfile.ZipFile(output) as archive:
        assert DERIVED_MP4 not in archive.namelist()
    assert gateway_main([*base, "--justification", "again, for the appeal"]) == 1
    assert "already exists" in capsys.readouterr().err


def test_an_unknown_or_incomplete_incident_is_refused(exported: Exported, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="holds no incident inc-9999"):
        export(exported.hospital, "inc-9999", tmp_path / "none.zip")
    badge = exported.incident.badge
    intake = Intake(exported.hospital.data_dir, lambda topic, payload: None, lambda event: None)
    try:
        intake.handle(badge.topic("incident"), badge.incident("inc-0500", 60, 61))
    finally:
        intake.close()
    with pytest.raises(ExportError, match="inc-0500 is not complete yet"):
        export(exported.hospital, "inc-0500", tmp_path / "partial.zip")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def small_hospital(tmp_path: Path) -> tuple[Hospital, DeliveredIncident]:
    hospital = make_hospital(tmp_path / "hospital", ("badge-a",))
    return hospital, deliver_incident(hospital, record_footage(2.0), heartbeats=False)


def test_an_altered_vault_file_stops_the_export(
    small_hospital: tuple[Hospital, DeliveredIncident], tmp_path: Path
) -> None:
    hospital, incident = small_hospital
    stored = next((hospital.data_dir.root / "vault").rglob("*.mbseal"))
    stored.chmod(0o600)
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x40
    stored.write_bytes(data)
    with pytest.raises(ExportError, match="the vault was altered; the export is refused"):
        export(hospital, incident.incident_id, tmp_path / "out.zip")
    assert not (tmp_path / "out.zip").exists()


def test_an_altered_ledger_stops_the_export_before_anything_is_recorded(
    small_hospital: tuple[Hospital, DeliveredIncident], tmp_path: Path
) -> None:
    hospital, incident = small_hospital
    connection = sqlite3.connect(hospital.data_dir.database_path)
    with connection:
        (leaves,) = connection.execute("SELECT COUNT(*) FROM ledger_leaves").fetchone()
        connection.execute(
            "UPDATE ledger_leaves SET leaf = CAST(? AS BLOB) WHERE leaf_index = 1", (b"forged",)
        )
    connection.close()
    with pytest.raises(LedgerIntegrityError):
        export(hospital, incident.incident_id, tmp_path / "out.zip")
    connection = sqlite3.connect(hospital.data_dir.database_path)
    assert connection.execute("SELECT COUNT(*) FROM ledger_leaves").fetchone() == (leaves,)
    connection.close()


def test_an_incident_whose_alert_is_not_in_the_ledger_is_not_exported(
    small_hospital: tuple[Hospital, DeliveredIncident], tmp_path: Path
) -> None:
    hospital, incident = small_hospital
    connection = sqlite3.connect(hospital.data_dir.database_path)
    with connection:
        connection.execute("DELETE FROM alerts")
    connection.close()
    with pytest.raises(ExportError, match="has no alert in the ledger; a package must hold"):
        export(hospital, incident.incident_id, tmp_path / "out.zip")
    assert not (tmp_path / "out.zip").exists()


def test_a_passphrase_protected_custodian_key_needs_its_passphrase(tmp_path: Path) -> None:
    data_dir = GatewayDataDir(tmp_path / "gateway")
    data_dir.initialise("Test Hospital", HpkeSuite.X25519, b"correct horse battery")
    enroll_badge(data_dir, "badge-a", tmp_path / "bundle", wearer="Nurse A")
    hospital = Hospital(data_dir, {"badge-a": EnrolmentBundle.load(tmp_path / "bundle")})
    incident = deliver_incident(hospital, record_footage(2.0))
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("correct horse battery\n")
    base = ["--data", str(data_dir.root), "export", incident.incident_id, "--actor", "A"]
    base += ["--justification", "court order"]
    assert gateway_main([*base, "-o", str(tmp_path / "no.zip")]) == 1
    assert not (tmp_path / "no.zip").exists()
    args = [*base, "-o", str(tmp_path / "yes.zip"), "--custodian-passphrase-file", str(passphrase)]
    assert gateway_main(args) == 0
    assert verify_package(tmp_path / "yes.zip").verified


def test_the_export_takes_any_timestamper_whose_certificates_it_can_carry(
    small_hospital: tuple[Hospital, DeliveredIncident], tmp_path: Path
) -> None:
    hospital, incident = small_hospital
    own = hospital.data_dir.timestamper()
    request = ExportRequest(incident.incident_id, tmp_path / "out.zip", ACTOR, JUSTIFICATION)
    storage = hospital.data_dir.storage()
    leaves = storage.leaves.size()
    with TsaHttpServer(own, "127.0.0.1", 0) as server:
        bare = TsaClient(server.url, own.ca_certificate)  # its certificate only in tokens
        with pytest.raises(ExportError, match="one CA and the TSA's certificate"):
            export_incident(hospital.data_dir, request, timestamper=bare)
        assert storage.leaves.size() == leaves and not request.output.exists()
        client = TsaClient(server.url, own.ca_certificate, certificates=[own.certificate])
        result = export_incident(hospital.data_dir, request, timestamper=client)
    storage.close()
    assert result.report.verified
    token = result.checkpoint.timestamp_token
    assert token is not None
    verify_timestamp(token, result.checkpoint.note_sha256, own.ca_certificate)


def test_a_hospital_on_postgresql_and_s3_exports_a_package_that_verifies(
    tmp_path: Path, postgres_server: PostgresServer, seaweed_server: SeaweedServer
) -> None:
    root = tmp_path / "gateway"
    database = TestDatabase("postgresql", postgres_server.create_database())
    bucket = seaweed_server.create_bucket("export-vault")
    config = database.gateway_toml(root) + seaweed_server.vault_toml(bucket, tmp_path)
    hospital = make_hospital(tmp_path, ("badge-a",), config=config)
    incident = deliver_incident(hospital, record_footage(2.0))
    assert not hospital.data_dir.database_path.exists() and not hospital.data_dir.vault_dir.exists()
    result = export(hospital, incident.incident_id, tmp_path / "package.zip")
    assert result.report.verified and verify_package(result.path).verified
    with zipfile.ZipFile(result.path) as archive:
        assert archive.read(CLIP) == b"".join(incident.plaintexts)
