"""The offline verifier against real packages: what it proves, and every way it catches tampering.

The packages are exported by the real gateway from real footage (tests/gateway/court_package);
tampering is done to an unpacked copy, verified in-process, the way a forger with the files
(but without the badge's or the gateway's keys) could alter them.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import zipfile
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding

from evidence.canonical import CanonicalValue
from evidence.cli import main
from evidence.hashing import sha256
from evidence.keys import SigningKey, SigningPublicKey
from evidence.ledger.checkpoint import NoteSigner, format_vkey, sign_note
from evidence.package.layout import (
    CHECKPOINT_NOTE,
    CHECKPOINT_TOKEN,
    CHECKSUMS,
    CLIP,
    GATEWAY_KEY,
    GATEWAY_VKEY,
    MANIFEST,
    Check,
    FileRecord,
    format_checksums,
    render_json,
    role_of,
)
from evidence.segment import SIGNATURE_CONTEXT
from evidence.verify import verify_package
from evidence.verify.report import Summary, VerificationReport, capture_window
from gateway.ledger.custody import CustodyLog
from gateway.ledger.ledger import open_ledger
from gateway.timestamping import TimeStampAuthority, build_request
from tests.gateway.badge_messages import Hospital, make_hospital
from tests.gateway.court_package import deliver_incident, export, record_footage

SEGMENT_42 = "segments/0000000042"
REVIEW = "complaint 2026-114 from ward 3"
PEM = Encoding.PEM


@dataclass(frozen=True)
class Packages:
    """One hospital's packages: the main one, the badge's next incident, another badge's."""

    hospital: Hospital
    main: Path
    later: Path
    other_badge: Path
    unpacked: Path
    """The main package unpacked (copy it before changing anything)."""


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Packages:
    root = tmp_path_factory.mktemp("verify")
    hospital = make_hospital(root)
    main_incident = deliver_incident(hospital, record_footage(4.0))
    deliver_incident(
        hospital,
        record_footage(3.0),
        incident_id="inc-0418",
        first_seq=44,
        after=main_incident,
    )
    deliver_incident(hospital, record_footage(4.0), badge_id="badge-b", incident_id="inc-0419")
    _custody(hospital, "inc-0417", linked=True)
    _custody(hospital, "inc-0419", linked=False)
    made = {name: root / f"{name}.zip" for name in ("inc-0417", "inc-0418", "inc-0419")}
    for name, path in made.items():
        export(hospital, name, path)
    unpacked = root / "unpacked"
    unpack(made["inc-0417"], unpacked)
    return Packages(hospital, made["inc-0417"], made["inc-0418"], made["inc-0419"], unpacked)


def _custody(hospital: Hospital, incident_id: str, *, linked: bool) -> int:
    """A reviewer's view of the incident, recorded as today, or as before entries were linked."""
    data_dir = hospital.data_dir
    storage = data_dir.storage()
    try:
        custody = CustodyLog(open_ledger(data_dir, storage))
        if linked:
            return custody.record("Dr Aliya Sarsen", "view", incident_id, REVIEW).ledger_index
        body: dict[str, CanonicalValue] = {
            "actor": "Dr Aliya Sarsen",
            "action": "view",
            "subject": incident_id,
            "justification": REVIEW,
            "detail": {},
        }
        at_ns = custody.ledger.now()
        with storage.transaction():
            index = custody.ledger.append("custody", body, at_ns=at_ns)
            storage.custody.add(index, "Dr Aliya Sarsen", "view", incident_id, REVIEW, at_ns)
        return index
    finally:
        storage.close()


@pytest.fixture
def folder(packages: Packages, tmp_path: Path) -> Path:
    """A fresh copy of the unpacked main package, to alter."""
    return Path(shutil.copytree(packages.unpacked, tmp_path / "package"))


def unpack(package: Path, target: Path) -> Path:
    with zipfile.ZipFile(package) as archive:
        archive.extractall(target)
    return target


def files_of(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def rehash(root: Path, *, manifest_too: bool = True) -> None:
    """What a forger does after changing files: list their new hashes in both listings."""
    present = set(files_of(root))

    def record(path: str) -> FileRecord:
        data = (root / path).read_bytes()
        return FileRecord(path, len(data), sha256(data))

    try:
        manifest = json.loads((root / MANIFEST).read_bytes()) if manifest_too else None
    except ValueError:
        manifest = None  # the forger broke the manifest itself: only SHA256SUMS can follow
    if isinstance(manifest, dict):
        for section in ("files", "derived"):
            items = [item for item in manifest[section] if item["path"] in present]
            for item in items:
                found = record(item["path"])
                item.update(size=found.size, sha256=found.sha256.hex())
            manifest[section] = items
        (root / MANIFEST).write_bytes(render_json(manifest))
    listed = [record(path) for path in sorted(present) if path != CHECKSUMS]
    (root / CHECKSUMS).write_bytes(format_checksums(listed))


def failed(report: VerificationReport) -> set[str]:
    return {check.value for check in report.failed_checks}


def assert_clean_failure(report: VerificationReport) -> None:
    """Not verified, and for a reason the verifier understood (no internal stop)."""
    assert not report.verified
    assert not any("could not finish" in finding.message for finding in report.findings)


# -- what a good package proves --------------------------------------------------------------


def test_the_exported_package_verifies_and_the_report_says_what_it_proves(
    packages: Packages, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(packages.main)]) == 0
    out = capsys.readouterr().out
    assert "VERIFIED: every check holds." in out
    assert "Clip from badge badge-a (wearer Nurse badge-a), incident inc-0417." in out
    assert "Complete: segments 40..43 (4), no gaps." in out
    assert "Captured between 20" in out
    assert "by the badge's clock as the gateway's model of it corrects it" in out
    assert "Received by the gateway by 20" in out and "(the gateway's clock)" in out
    assert "Sealed no later than 20" in out and "by the clock of the" in out
    assert "time-stamp authority O=Test Hospital,CN=Test Hospital Gateway TSA" in out
    assert "minutes after the export entry" not in out
    assert "Exported by Officer Dana Bekova" in out


def test_the_json_report_holds_the_same_facts(
    packages: Packages, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", "--json", str(packages.main)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["verified"] is True and report["findings"] == []
    summary = report["summary"]
    assert (summary["badge_id"], summary["first_seq"], summary["last_seq"]) == ("badge-a", 40, 43)
    assert summary["capture_clock"] == "gateway" and summary["capture_error_ns"] > 0
    assert summary["capture_start_ns"] < summary["capture_end_ns"]
    examined = {item["check"]: item["examined"] for item in report["checks"]}
    assert {check.value for check in Check} == set(examined)
    assert examined["segment-signature"] == 4 and examined["chain"] == 1
    assert examined["file-hash"] == len(files_of(packages.unpacked))


def test_an_unpacked_folder_verifies_like_its_zip(packages: Packages) -> None:
    from_zip = verify_package(packages.main)
    from_folder = verify_package(packages.unpacked)
    assert from_zip.verified and from_folder.verified
    assert from_zip.summary == from_folder.summary
    assert from_zip.examined == from_folder.examined


def test_a_recompressed_zip_still_verifies(packages: Packages, tmp_path: Path) -> None:
    deflated = tmp_path / "deflated.zip"
    with zipfile.ZipFile(deflated, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in files_of(packages.unpacked):
            archive.write(packages.unpacked / path, path)
    assert verify_package(deflated).verified


def test_pinned_keys_that_match_are_reported_as_the_trust(
    packages: Packages, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = packages.hospital.data_dir
    vkey = tmp_path / "gateway.vkey"
    vkey.write_text((packages.unpacked / GATEWAY_VKEY).read_text())
    args = ["verify", str(packages.main), "--ca", str(data_dir.ca_dir / "ca.crt")]
    assert main([*args, "--gateway-key", str(data_dir.signing_public_key_path)]) == 0
    assert "Trust: the gateway key and evidence CA are the ones given" in capsys.readouterr().out
    assert main([*args, "--gateway-key", str(vkey)]) == 0


def test_pins_that_do_not_match_fail_the_trust_check(packages: Packages, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger.pub"
    SigningKey.generate().public_key.save(stranger)
    other_ca = make_hospital(tmp_path / "other", ()).data_dir.ca_dir / "ca.crt"
    assert main(["verify", str(packages.main), "--gateway-key", str(stranger)]) == 1
    assert main(["verify", str(packages.main), "--ca", str(other_ca)]) == 1
    report = verify_package(packages.main, gateway_key=SigningPublicKey.load(stranger))
    assert failed(report) == {"trust"}


def test_usage_errors_exit_2(
    packages: Packages, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a package\n")
    assert main(["verify", str(tmp_path / "missing.zip")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["verify", str(text)]) == 2
    assert "not a zip file or a folder" in capsys.readouterr().err
    assert main(["verify", str(packages.main), "--gateway-key", str(text)]) == 2
    with pytest.raises(SystemExit) as exited:
        main(["verify"])
    assert exited.value.code == 2


# -- tampering, byte by byte ------------------------------------------------------------------


def _flip(path: Path, rng: random.Random) -> bytes:
    """Flip one byte of ``path`` at random; return the original bytes."""
    original = path.read_bytes()
    changed = bytearray(original)
    changed[rng.randrange(len(changed))] ^= rng.randrange(1, 256)
    path.write_bytes(changed)
    return original


def test_a_thousand_random_byte_flips_each_fail_on_the_flipped_file(folder: Path) -> None:
    rng = random.Random(20260417)
    paths = files_of(folder)
    for _ in range(1000):
        path = rng.choice(paths)
        original = _flip(folder / path, rng)
        report = verify_package(folder)
        (folder / path).write_bytes(original)
        assert_clean_failure(report)
        if path == CHECKSUMS:  # a changed hash names its file; a changed name lists two
            assert failed(report) <= {"file-hash", "file-list"}, report.findings
        else:
            assert any(
                finding.check is Check.FILE_HASH and finding.file == path
                for finding in report.findings
            ), (path, report.findings)
    assert verify_package(folder).verified


CAUGHT_BY: dict[str, set[str]] = {
    "segment": {"segment-plaintext"},
    "segment-header": {"segment-header", "segment-signature"},
    "segment-signature": {"segment-signature"},
    "clip": {"clip"},
    "derived": {"derived"},
    "incident-record": {"incident-record"},
    "alert-record": {"alert"},
    "receipt": {"receipt"},
    "ledger-entry": {"ledger-entry", "inclusion-proof"},
    "inclusion-proof": {"inclusion-proof"},
    "checkpoint": {"checkpoint-signature"},
    "checkpoint-timestamp": {"timestamp"},
    "badge-key": {"badge-key"},
    "gateway-key": {"checkpoint-signature"},
    "gateway-vkey": {"checkpoint-signature"},
    "evidence-ca-certificate": {"certificates"},
    "tsa-certificate": {"certificates"},
    "custody": {"custody"},
    "instructions": {"instructions"},
    "manifest": {"manifest", "file-hash", "file-list"},
}
"""The check that catches a change to each kind of file even when both listings are redone."""


def test_flips_a_forger_lists_anew_are_caught_by_the_check_for_that_file(folder: Path) -> None:
    rng = random.Random(117)
    paths = [path for path in files_of(folder) if path != CHECKSUMS]
    assert {role_of(path) for path in paths} == set(CAUGHT_BY)
    pristine = {path: (folder / path).read_bytes() for path in (MANIFEST, CHECKSUMS)}
    for number in range(400):
        path = paths[number % len(paths)] if number < len(paths) else rng.choice(paths)
        original = _flip(folder / path, rng)
        rehash(folder, manifest_too=path != MANIFEST)  # else the rehash could undo the flip
        report = verify_package(folder)
        (folder / path).write_bytes(original)
        for listing, data in pristine.items():
            (folder / listing).write_bytes(data)
        assert_clean_failure(report)
        assert failed(report) & CAUGHT_BY[role_of(path) or ""], (path, report.findings)
    assert verify_package(folder).verified


@pytest.mark.parametrize("keep", [0.0, 0.5, -1], ids=["emptied", "halved", "last-byte-cut"])
def test_truncated_files_are_caught(folder: Path, keep: float) -> None:
    listings = {path: (folder / path).read_bytes() for path in (MANIFEST, CHECKSUMS)}
    for path in files_of(folder):
        original = (folder / path).read_bytes()
        cut = len(original) - 1 if keep < 0 else int(len(original) * keep)
        (folder / path).write_bytes(original[:cut])
        raw = verify_package(folder)
        check = Check.FILE_LIST if path == CHECKSUMS else Check.FILE_HASH
        assert (check, path) in {(f.check, f.file) for f in raw.findings}, path
        if path != CHECKSUMS:
            rehash(folder, manifest_too=path != MANIFEST)
            forged = verify_package(folder)
            assert_clean_failure(forged)
            assert failed(forged) & CAUGHT_BY[role_of(path) or ""], (path, forged.findings)
        for restored, data in {**listings, path: original}.items():
            (folder / restored).write_bytes(data)
    assert verify_package(folder).verified


def test_a_truncated_zip_is_a_failed_verification_not_a_crash(
    packages: Packages, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = packages.main.read_bytes()
    for cut in (len(data) - 1, len(data) - 30, len(data) // 2, 200, 4):
        broken = tmp_path / f"truncated-{cut}.zip"
        broken.write_bytes(data[:cut])
        assert_clean_failure(verify_package(broken))
        assert main(["verify", str(broken)]) == 1
    capsys.readouterr()


def test_a_damaged_zip_directory_never_crashes_the_verifier(
    packages: Packages, tmp_path: Path
) -> None:
    """Flips in the zip's own directory: a failure, or harmless (a date, an attribute).

    The zip is only the envelope: a member's name, size or offset that changes fails the
    file checks, while its date or Unix mode is not evidence (decision 1201).
    """
    data = packages.main.read_bytes()
    rng = random.Random(5)
    outcomes = set()
    for number in range(60):
        changed = bytearray(data)
        changed[len(data) - rng.randrange(1, 1500)] ^= rng.randrange(1, 256)
        broken = tmp_path / f"directory-{number}.zip"
        broken.write_bytes(changed)
        report = verify_package(broken)
        assert not any("could not finish" in finding.message for finding in report.findings)
        outcomes.add(report.verified)
    assert False in outcomes


def test_odd_entries_in_a_zip_or_folder_are_reported(packages: Packages, tmp_path: Path) -> None:
    odd = tmp_path / "odd.zip"
    shutil.copy(packages.main, odd)
    with zipfile.ZipFile(odd, "a") as archive:
        archive.writestr("../outside.txt", b"x")
        archive.writestr("notes/extra.txt", b"x")
    report = verify_package(odd)
    assert {(f.check, f.file) for f in report.findings} >= {
        (Check.PACKAGE, "../outside.txt"),
        (Check.FILE_LIST, "notes/extra.txt"),
    }
    linked = Path(shutil.copytree(packages.unpacked, tmp_path / "linked"))
    (linked / "segments" / "link.ts").symlink_to(linked / CLIP)
    assert (Check.PACKAGE, "segments/link.ts") in {
        (f.check, f.file) for f in verify_package(linked).findings
    }


def _zip_with(packages: Packages, target: Path, info: zipfile.ZipInfo, data: bytes) -> Path:
    shutil.copy(packages.main, target)
    with zipfile.ZipFile(target, "a") as archive:
        archive.writestr(info, data)
    return target


def _problems(report: VerificationReport) -> dict[str | None, str]:
    return {f.file: f.message for f in report.findings if f.check is Check.PACKAGE}


def test_a_symbolic_link_in_the_zip_is_refused_as_a_link(
    packages: Packages, tmp_path: Path
) -> None:
    link = zipfile.ZipInfo("segments/0000000044.ts")
    link.create_system = 3
    link.external_attr = 0o120777 << 16
    report = verify_package(_zip_with(packages, tmp_path / "link.zip", link, b"../clip.ts"))
    assert "is a symbolic link" in _problems(report)["segments/0000000044.ts"]
    assert "segments/0000000044.ts" not in {f.file for f in report.findings if f.seq == 44}


def test_a_folder_entry_in_the_zip_is_refused(packages: Packages, tmp_path: Path) -> None:
    folder_entry = zipfile.ZipInfo("notes/")
    folder_entry.external_attr = 0o40755 << 16 | 0x10
    report = verify_package(_zip_with(packages, tmp_path / "dir.zip", folder_entry, b""))
    assert "is a folder entry" in _problems(report)["notes/"]
    assert not report.verified


def test_a_zip_bomb_member_is_refused_before_it_is_inflated(
    packages: Packages, tmp_path: Path
) -> None:
    bomb = zipfile.ZipInfo(f"{SEGMENT_42}.ts")  # a streamed file: no small file's limit
    bomb.compress_type = zipfile.ZIP_BZIP2
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w") as archive:
        archive.writestr(bomb, bytes(256 << 20))
        assert archive.getinfo(bomb.filename).compress_size < 1000
        for path in files_of(packages.unpacked):
            if path != bomb.filename:
                archive.write(packages.unpacked / path, path)
    report = verify_package(tmp_path / "bomb.zip")
    assert "a zip bomb, not inflated" in _problems(report)[bomb.filename]


def test_a_small_file_that_declares_more_than_its_limit_is_not_read(
    packages: Packages, tmp_path: Path
) -> None:
    big = zipfile.ZipInfo("receipts/segment-0000000099.receipt")
    big.compress_type = zipfile.ZIP_DEFLATED
    data = random.Random(3).randbytes(17 << 20)  # incompressible, so no bomb: just too large
    report = verify_package(_zip_with(packages, tmp_path / "big.zip", big, data))
    assert "it was not read" in _problems(report)[big.filename]


def test_a_missing_or_unlisted_file_fails_the_file_list(folder: Path) -> None:
    (folder / "segments" / "0000000041.sig").unlink()
    (folder / "receipts" / "extra.receipt").write_bytes(b"")
    report = verify_package(folder)
    found = {(f.check, f.file) for f in report.findings}
    assert (Check.FILE_LIST, "segments/0000000041.sig") in found
    assert (Check.FILE_LIST, "receipts/extra.receipt") in found


# -- tampering with whole files --------------------------------------------------------------


def _swap(first: Path, second: Path) -> None:
    data = first.read_bytes()
    first.write_bytes(second.read_bytes())
    second.write_bytes(data)


def test_two_segments_swapped(folder: Path) -> None:
    first, second = folder / "segments/0000000041.ts", folder / "segments/0000000042.ts"
    _swap(first, second)
    assert {f.file for f in verify_package(folder).findings if f.check is Check.FILE_HASH} >= {
        "segments/0000000041.ts",
        "segments/0000000042.ts",
    }
    rehash(folder)
    report = verify_package(folder)
    assert {(f.check, f.seq) for f in report.findings} >= {
        (Check.SEGMENT_PLAINTEXT, 41),
        (Check.SEGMENT_PLAINTEXT, 42),
    }
    assert "clip" in failed(report)


def test_two_segments_swapped_with_their_headers_and_signatures(folder: Path) -> None:
    for suffix in (".ts", ".header", ".sig"):
        _swap(folder / f"segments/0000000041{suffix}", folder / f"{SEGMENT_42}{suffix}")
    rehash(folder)
    report = verify_package(folder)
    assert {(f.check, f.seq) for f in report.findings} >= {
        (Check.SEGMENT_HEADER, 41),
        (Check.SEGMENT_HEADER, 42),
    }
    chain = [(f.seq, f.message) for f in report.findings if f.check is Check.CHAIN]
    assert chain == [(41, "reorder: segment 41 comes after segment 42 in the package's order")]


def test_a_segment_copied_over_its_neighbour_is_reported_as_a_duplicate(folder: Path) -> None:
    for suffix in (".ts", ".header", ".sig"):
        shutil.copy(folder / f"segments/0000000041{suffix}", folder / f"{SEGMENT_42}{suffix}")
    rehash(folder)
    report = verify_package(folder)
    chain = [(f.seq, f.message) for f in report.findings if f.check is Check.CHAIN]
    assert chain == [
        (41, "duplicate: segment 41 appears more than once"),
        (42, "gap: seq 41 to 43 (1 segments missing)"),
    ]
    header = [f.message for f in report.findings if f.check is Check.SEGMENT_HEADER]
    assert header == ["the files of segment 42 hold the header of segment 41"]


def test_a_changed_byte_of_a_segment_is_named_where_it_is(folder: Path) -> None:
    path = folder / f"{SEGMENT_42}.ts"
    data = bytearray(path.read_bytes())
    data[1234] ^= 0x40
    path.write_bytes(data)
    rehash(folder)
    report = verify_package(folder)
    plaintext = [f.message for f in report.findings if f.check is Check.SEGMENT_PLAINTEXT]
    assert len(plaintext) == 1
    assert plaintext[0].endswith("it first differs from its copy in clip.ts at byte 1234")
    before = sum((folder / f"segments/00000000{seq}.ts").stat().st_size for seq in (40, 41))
    clip = [f.message for f in report.findings if f.check is Check.CLIP]
    assert clip == [
        f"it differs from the segments joined in order from byte {before + 1234} "
        f"(byte 1234 of {SEGMENT_42}.ts)"
    ]


def test_a_segment_of_another_badge_in_place_of_one(packages: Packages, folder: Path) -> None:
    other = unpack(packages.other_badge, folder.parent / "other")
    for suffix in (".ts", ".header", ".sig"):
        shutil.copy(other / f"{SEGMENT_42}{suffix}", folder / f"{SEGMENT_42}{suffix}")
    rehash(folder)
    report = verify_package(folder)
    assert (Check.SEGMENT_HEADER, 42) in {(f.check, f.seq) for f in report.findings}
    assert "badge badge-b" in next(f.message for f in report.findings if f.seq == 42)


def test_a_segment_of_the_badges_next_incident_added(packages: Packages, folder: Path) -> None:
    later = unpack(packages.later, folder.parent / "later")
    for suffix in (".ts", ".header", ".sig"):
        shutil.copy(later / f"segments/0000000044{suffix}", folder / f"segments/0000000044{suffix}")
    rehash(folder)
    report = verify_package(folder)
    chain = [f for f in report.findings if f.check is Check.CHAIN]
    assert [(f.seq, "outside the incident's range 40..43" in f.message) for f in chain] == [
        (44, True)
    ]


def test_a_segment_removed_from_the_middle_is_reported_as_a_gap(folder: Path) -> None:
    for suffix in (".ts", ".header", ".sig"):
        (folder / f"{SEGMENT_42}{suffix}").unlink()
    rehash(folder)
    report = verify_package(folder)
    gaps = [f for f in report.findings if f.check is Check.CHAIN]
    assert [(f.seq, f.message) for f in gaps] == [(42, "gap: seq 41 to 43 (1 segments missing)")]
    assert not report.verified


def test_a_checkpoint_signed_with_another_key_fails_its_signature(folder: Path) -> None:
    note = (folder / CHECKPOINT_NOTE).read_bytes()
    text = note[: note.rindex(b"\n\n") + 1]
    origin = text.split(b"\n", 1)[0].decode()
    forged = sign_note(text, [NoteSigner(origin, Ed25519PrivateKey.generate())])
    (folder / CHECKPOINT_NOTE).write_bytes(forged)
    rehash(folder)
    report = verify_package(folder)
    assert {(f.check, f.file) for f in report.findings} >= {
        (Check.CHECKPOINT, CHECKPOINT_NOTE),
        (Check.TIMESTAMP, CHECKPOINT_TOKEN),  # the token covers the note as it was
    }


def test_a_whole_new_gateway_identity_fails_the_receipts_and_the_pin(
    packages: Packages, folder: Path
) -> None:
    key = Ed25519PrivateKey.generate()
    note = (folder / CHECKPOINT_NOTE).read_bytes()
    text = note[: note.rindex(b"\n\n") + 1]
    signer = NoteSigner(text.split(b"\n", 1)[0].decode(), key)
    (folder / CHECKPOINT_NOTE).write_bytes(sign_note(text, [signer]))
    (folder / GATEWAY_KEY).write_bytes(SigningKey(key).public_key.pem())
    (folder / GATEWAY_VKEY).write_text(format_vkey(signer.verifier()) + "\n")
    rehash(folder)
    report = verify_package(folder)
    assert "checkpoint-signature" not in failed(report)
    assert {"receipt", "timestamp"} <= failed(report)
    pinned = verify_package(folder, gateway_key=packages.hospital.gateway_key)
    assert "trust" in failed(pinned)


def test_a_badge_key_the_ledger_does_not_record_signs_nothing(folder: Path) -> None:
    forger = SigningKey.generate()
    (folder / "keys/badge-badge-a-1.pub").write_bytes(forger.public_key.pem())
    for header in sorted(folder.glob("segments/*.header")):
        header.with_suffix(".sig").write_bytes(forger.sign(SIGNATURE_CONTEXT, header.read_bytes()))
    rehash(folder)
    report = verify_package(folder)
    assert {"badge-key", "segment-signature"} <= failed(report)


# -- time-stamps ---------------------------------------------------------------------------


def _tsa(packages: Packages, clock: datetime) -> TimeStampAuthority:
    tsa = packages.hospital.data_dir.timestamper()
    return replace(tsa, clock=lambda: clock)


def _stamp_anew(folder: Path, tsa: TimeStampAuthority, digest: bytes | None = None) -> None:
    note = (folder / CHECKPOINT_NOTE).read_bytes()
    reply = tsa.respond(build_request(digest or sha256(note)))
    (folder / CHECKPOINT_TOKEN).write_bytes(reply)
    rehash(folder)


def test_a_back_dated_time_stamp_fails(packages: Packages, folder: Path) -> None:
    exported_ns = verify_package(packages.main).summary.exported_at_ns
    assert exported_ns is not None  # back-dated from the export, however long the run takes
    exported = datetime.fromtimestamp(exported_ns / 1e9, UTC)
    _stamp_anew(folder, _tsa(packages, exported - timedelta(minutes=3)))
    report = verify_package(folder)
    messages = [f.message for f in report.findings if f.check is Check.TIMESTAMP]
    assert len(messages) == 1 and "back-dated" in messages[0]


def test_a_time_stamp_from_before_the_tsa_certificate_fails(
    packages: Packages, folder: Path
) -> None:
    _stamp_anew(folder, _tsa(packages, datetime.now(UTC) - timedelta(days=2)))
    assert failed(verify_package(folder)) >= {"timestamp"}


def test_a_time_stamp_over_another_note_fails(packages: Packages, folder: Path) -> None:
    _stamp_anew(folder, _tsa(packages, datetime.now(UTC)), sha256(b"another checkpoint"))
    report = verify_package(folder)
    assert failed(report) == {"timestamp"}, report.findings


def test_a_foreign_time_stamp_fails(packages: Packages, folder: Path, tmp_path: Path) -> None:
    foreign = make_hospital(tmp_path / "foreign", ()).data_dir.timestamper()
    _stamp_anew(folder, foreign)
    assert failed(verify_package(folder)) == {"timestamp"}
    # The forger swaps the certificates too: the export's custody entry names the real ones.
    (folder / "certs/evidence-ca.crt").write_bytes(foreign.ca_certificate.public_bytes(PEM))
    (folder / "certs/tsa.crt").write_bytes(foreign.certificate.public_bytes(PEM))
    rehash(folder)
    report = verify_package(folder)
    assert "timestamp" not in failed(report)
    assert {f.file for f in report.findings if f.check is Check.CERTIFICATES} == {
        "certs/evidence-ca.crt",
        "certs/tsa.crt",
    }


# -- completeness of the incident ----------------------------------------------------------


def _withhold(folder: Path, *paths: str) -> None:
    for path in paths:
        (folder / path).unlink()


def _custody_entries(folder: Path) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = json.loads((folder / "custody.json").read_text())["entries"]
    return entries


def _withhold_custody(folder: Path, index: int) -> None:
    """Leave one custody entry out, with its proof and its line in custody.json."""
    _withhold(folder, f"ledger/entries/{index}.entry", f"ledger/proofs/{index}.proof")
    document = json.loads((folder / "custody.json").read_text())
    document["entries"] = [e for e in document["entries"] if e["ledger_index"] != index]
    (folder / "custody.json").write_bytes(render_json(document))


def test_the_custody_entries_chain_from_the_first_to_the_export(
    packages: Packages, capsys: pytest.CaptureFixture[str]
) -> None:
    entries = _custody_entries(packages.unpacked)
    about = [e for e in entries if e["subject"] == "inc-0417"]
    assert [e["action"] for e in about] == ["view", "export"]
    assert about[0]["previous"] is None and about[1]["previous"] == about[0]["ledger_index"]
    assert verify_package(packages.main).summary.custody_unlinked_before is None
    assert main(["verify", str(packages.main)]) == 0
    assert "holds every custody entry about the incident" in capsys.readouterr().out


def test_a_withheld_custody_entry_is_named(packages: Packages, folder: Path) -> None:
    (view,) = [e for e in _custody_entries(folder) if e["action"] == "view"]
    index = view["ledger_index"]
    assert isinstance(index, int)
    _withhold_custody(folder, index)
    rehash(folder)
    report = verify_package(folder)
    custody = [(f.file, f.message) for f in report.findings if f.check is Check.CUSTODY]
    assert len(custody) == 1 and custody[0][0] == f"ledger/entries/{index}.entry"
    assert f"leaf {index}" in custody[0][1] and "withheld" in custody[0][1]


def test_entries_recorded_before_the_links_are_reported_as_such(
    packages: Packages, capsys: pytest.CaptureFixture[str]
) -> None:
    report = verify_package(packages.other_badge)
    assert report.verified, report.findings
    unlinked = report.summary.custody_unlinked_before
    (view,) = [
        e
        for e in _custody_entries(unpack(packages.other_badge, packages.unpacked.parent / "b"))
        if e["action"] == "view"
    ]
    assert unlinked == view["ledger_index"] and "previous" not in view
    assert main(["verify", str(packages.other_badge)]) == 0
    out = capsys.readouterr().out
    assert f"leaf {unlinked} was recorded before entries named the one before" in out


def test_a_package_without_its_alert_fails_naming_it(folder: Path) -> None:
    entries = _custody_entries(folder)
    assert entries
    _withhold(folder, "alert.record", "receipts/alert.receipt")
    alert_leaves = [
        path.name.split(".")[0]
        for path in (folder / "ledger/entries").iterdir()
        if b"alert_sha256" in path.read_bytes() and b"receipt" not in path.read_bytes()
    ]
    assert len(alert_leaves) == 1
    _withhold(
        folder,
        f"ledger/entries/{alert_leaves[0]}.entry",
        f"ledger/proofs/{alert_leaves[0]}.proof",
    )
    rehash(folder)
    report = verify_package(folder)
    found = {(f.check, f.message) for f in report.findings}
    assert (
        Check.ALERT,
        "the package has no alert record: the badge's alert is a required part of it",
    ) in found
    assert (Check.RECEIPT, "the package has no receipt for the alert") in found


# -- time claims -----------------------------------------------------------------------------


def test_the_capture_window_is_rounded_out_to_what_the_clock_model_supports() -> None:
    base = 1_700_000_000 * 10**9
    summary = Summary(
        capture_start_ns=base + 123_456_789,
        capture_end_ns=base + 4_987_654_321,
        capture_error_ns=11_000_000,
        capture_clock="gateway",
    )
    assert capture_window(summary) == (base + 100_000_000, base + 5_000_000_000, 100_000_000)
    lines = "\n".join(_proven_lines(summary))
    assert "Captured between 2023-11-14 22:13:20.1 UTC and 2023-11-14 22:13:25.0 UTC," in lines
    assert "good to\n  ± 0.011 s, so widened by that and rounded out to 0.1 s" in lines
    badge_only = replace(summary, capture_error_ns=None, capture_clock="badge")
    assert "by the badge's own clock alone: the badge's claim" in "\n".join(
        _proven_lines(badge_only)
    )


def _proven_lines(summary: Summary) -> list[str]:
    report = VerificationReport("p.zip", (), {}, summary)
    return report.human().splitlines()


def test_a_time_stamp_made_long_after_the_export_is_remarked_on(
    packages: Packages, folder: Path
) -> None:
    exported_ns = verify_package(packages.main).summary.exported_at_ns
    assert exported_ns is not None
    later = datetime.fromtimestamp(exported_ns / 1e9, UTC) + timedelta(minutes=42)
    _stamp_anew(folder, _tsa(packages, later))
    text = (folder / "VERIFY.txt").read_text()  # its -attime is the token's time: follow it
    text = re.sub(r"-attime [0-9]+", f"-attime {int(later.timestamp())}", text)
    text = re.sub(r"\(20[0-9-]+ [0-9:]+ UTC\)", f"({later:%Y-%m-%d %H:%M:%S} UTC)", text)
    (folder / "VERIFY.txt").write_text(text)
    rehash(folder)
    report = verify_package(folder)
    assert report.verified, report.findings
    assert report.summary.sealed_after_export_ns is not None
    assert round(report.summary.sealed_after_export_ns / 60e9) == 42  # genTime is in seconds
    assert "Note: that time-stamp was made 42 minutes after the export entry;" in report.human()
