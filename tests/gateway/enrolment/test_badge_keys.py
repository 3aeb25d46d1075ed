"""The badge's key is the badge's alone: nothing the gateway writes holds it, the evidence
says how each key was made, and footage signed with the hospital's own keys fails."""

from __future__ import annotations

import base64
import json
import logging
import re
import shutil
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from badge.enrolment import enrol
from demo.enrolment import LocalTransport
from evidence.bundle import EnrolmentBundle
from evidence.enrolment import KeyOrigin
from evidence.keys import BadgeIdentity, SigningKey
from evidence.package.layout import Check
from evidence.segment import SIGNATURE_CONTEXT
from evidence.verify import verify_package
from gateway.datadir import GatewayDataDir
from gateway.enrolment.enrolment import issue_code
from gateway.ledger.custody import CustodyLog
from gateway.ledger.ledger import open_ledger
from tests.enrol import enrol_over_http
from tests.gateway.badge_messages import Hospital, make_hospital
from tests.gateway.court_package import deliver_incident, export, record_footage

_PEM_PRIVATE = re.compile(
    rb"-----BEGIN [A-Z ]*PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+-----END [A-Z ]*PRIVATE KEY-----"
)


def key_forms(key: SigningKey) -> dict[str, bytes]:
    """Every form in which a badge's private key could have been written down."""
    seed = key.key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    der = key.key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return {
        "raw seed": seed,
        "hex seed": seed.hex().encode(),
        "base64 seed": base64.b64encode(seed).rstrip(b"="),
        "PKCS#8 DER": der,
        "PKCS#8 base64": base64.b64encode(der)[:40],
    }


def private_keys_in(data: bytes) -> list[PrivateKeyTypes]:
    """Every PEM private key in ``data`` that loads (passphrase-less)."""
    keys: list[PrivateKeyTypes] = []
    for block in _PEM_PRIVATE.findall(data):
        try:
            keys.append(serialization.load_pem_private_key(block, password=None))
        except (TypeError, ValueError):
            continue  # passphrase-protected or not a key: cannot be the badge's
    return keys


def raw_public(key: PrivateKeyTypes) -> bytes:
    """The raw public key an Ed25519 private key derives; nothing for other kinds of key."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.public_key().public_bytes_raw()
    return b""


def gateway_writings(data_dir: GatewayDataDir, package: Path, log_text: str) -> dict[str, bytes]:
    """Everything the gateway wrote: its data directory, the package and its members, logs."""
    found = {str(path): path.read_bytes() for path in data_dir.root.rglob("*") if path.is_file()}
    found[str(package)] = package.read_bytes()
    with zipfile.ZipFile(package) as archive:
        for name in archive.namelist():
            found[f"{package}!{name}"] = archive.read(name)
    found["log"] = log_text.encode()
    return found


def test_nothing_the_gateway_writes_holds_a_key_that_signs_as_the_badge(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hospital = make_hospital(tmp_path, ("badge-a",))
    code = issue_code(hospital.data_dir, "badge-b").code
    enrol_over_http(
        hospital.data_dir.root, "badge-b", tmp_path / "bundles" / "badge-b", code, False
    )
    incident = deliver_incident(hospital, record_footage(2.0))
    result = export(hospital, incident.incident_id, tmp_path / "package.zip")
    assert result.report.verified
    writings = gateway_writings(hospital.data_dir, result.path, caplog.text)
    assert len(writings) > 20 and any(name.endswith(".db") for name in writings)
    for badge_id in ("badge-a", "badge-b"):
        key = EnrolmentBundle.load(tmp_path / "bundles" / badge_id).identity.signing_key
        assert isinstance(key, SigningKey)
        public = key.public_key.raw
        assert any(public in data for data in writings.values())  # the gateway does know this
        for name, data in writings.items():
            for form, pattern in key_forms(key).items():
                assert pattern not in data, f"{badge_id}'s key ({form}) is in {name}"
            for found in private_keys_in(data):
                assert raw_public(found) != public, f"{name} holds a private key of {badge_id}"


def test_the_search_finds_a_key_where_one_was_written(tmp_path: Path) -> None:
    """The scan above can fail: a key written into the data directory is found."""
    hospital = make_hospital(tmp_path, ("badge-a",))
    key = hospital.bundles["badge-a"].identity.signing_key
    assert isinstance(key, SigningKey)
    key.save(hospital.data_dir.root / "stray.key")
    writings = {str(p): p.read_bytes() for p in hospital.data_dir.root.rglob("*") if p.is_file()}
    matches = [found for data in writings.values() for found in private_keys_in(data)]
    assert any(raw_public(found) == key.public_key.raw for found in matches)


def test_verify_says_the_badge_made_its_own_key(tmp_path: Path) -> None:
    hospital = make_hospital(tmp_path, ("badge-a",))
    incident = deliver_incident(hospital, record_footage(2.0))
    report = export(hospital, incident.incident_id, tmp_path / "package.zip").report
    assert report.verified
    assert report.summary.badge_key_origins == ("badge-generated",)
    text = report.human()
    assert "Badge key (badge-generated): made by the badge itself" in text
    assert "WEAKER" not in text
    as_json = json.loads(json.dumps(report.as_dict()))
    assert as_json["summary"]["badge_key_origins"] == ["badge-generated"]


def enrol_the_old_way(data_dir: GatewayDataDir, badge_id: str, bundle_dir: Path) -> None:
    """An enrolment as gateways made them before badge-born keys: the key made here, the
    ledger entry without a key origin, the bundle (v1) carrying the private key."""
    key = SigningKey.generate()
    storage = data_dir.storage()
    try:
        storage.badges.enroll(
            badge_id,
            key.public_key,
            "unused",
            wearer="Nurse Old",
            location="Ward 1",
            operator="cli",
            rotate=False,
            key_origin="gateway-generated",
        )
        CustodyLog(open_ledger(data_dir, storage)).record(
            "cli", "enrol", badge_id, detail={"key_generation": 1, "public_key": key.public_key.raw}
        )
    finally:
        storage.close()
    EnrolmentBundle(
        identity=BadgeIdentity(badge_id, key),
        hospital=data_dir.evidence_ca().hospital_name,
        key_generation=1,
        custodian_key=data_dir.custodian_public_key(),
        gateway_key=data_dir.signing_key().public_key,
        evidence_ca_pem=(data_dir.ca_dir / "ca.crt").read_bytes(),
        broker=EnrolmentBundle.load(bundle_dir.parent / "badge-a").broker,
        key_origin=KeyOrigin.GATEWAY_GENERATED,
    ).write(bundle_dir)


def test_footage_signed_by_a_gateway_made_key_is_called_weaker_until_re_enrolment(
    tmp_path: Path,
) -> None:
    hospital = make_hospital(tmp_path, ("badge-a",))
    old_dir = tmp_path / "bundles" / "old-badge"
    enrol_the_old_way(hospital.data_dir, "old-badge", old_dir)
    bundles = {**hospital.bundles, "old-badge": EnrolmentBundle.load(old_dir)}
    old = Hospital(hospital.data_dir, bundles)
    incident = deliver_incident(old, record_footage(2.0), badge_id="old-badge")
    report = export(old, incident.incident_id, tmp_path / "old.zip").report
    assert report.verified  # still verifies: old footage keeps working
    assert report.summary.badge_key_origins == ("gateway-generated",)
    assert "WEAKER EVIDENCE" in report.human()
    assert "could have signed footage that no badge recorded" in report.human()
    # a re-enrolment moves the badge to a key it made itself
    code = issue_code(hospital.data_dir, "old-badge", rotate=True).code
    enrol(old_dir, "old-badge", code, LocalTransport(hospital.data_dir), rotate=True)
    storage = hospital.data_dir.storage()
    try:
        current = storage.badges.get("old-badge")
        assert (current.key_generation, current.key_origin) == (2, "badge-generated")
        assert len(storage.badges.key_history("old-badge")) == 2
    finally:
        storage.close()
    assert EnrolmentBundle.load(old_dir).key_origin is KeyOrigin.BADGE_GENERATED


def hospital_signing_keys(data_dir: GatewayDataDir) -> list[SigningKey]:
    """Every Ed25519 private key in the gateway's data directory (what an insider holds)."""
    keys = []
    for path in data_dir.root.rglob("*"):
        if path.is_file():
            for found in private_keys_in(path.read_bytes()):
                if isinstance(found, ed25519.Ed25519PrivateKey):
                    keys.append(SigningKey(found))
    return keys


def test_a_package_forged_with_the_hospitals_keys_fails_on_the_badge_key(tmp_path: Path) -> None:
    hospital = make_hospital(tmp_path, ("badge-a",))
    incident = deliver_incident(hospital, record_footage(2.0))
    package = export(hospital, incident.incident_id, tmp_path / "package.zip").path
    insider_keys = hospital_signing_keys(hospital.data_dir)
    assert insider_keys, "the gateway's own signing key is in its data directory"
    for number, insider in enumerate(insider_keys):
        forged = tmp_path / f"forged-{number}"
        with zipfile.ZipFile(package) as archive:
            archive.extractall(forged)
        for header in (forged / "segments").glob("*.header"):
            signature = insider.sign(SIGNATURE_CONTEXT, header.read_bytes())
            header.with_suffix(".sig").write_bytes(signature)
        (badge_key,) = (forged / "keys").glob("badge-badge-a-*.pub")
        insider.public_key.save(badge_key)
        report = verify_package(forged)
        assert not report.verified
        assert {Check.BADGE_KEY, Check.SEGMENT_SIGNATURE} <= report.failed_checks
        assert "no proven ledger entry records this key" in report.human()
        # and with the real badge key left in place, the hospital's signatures do not verify
        shutil.copy(tmp_path / "bundles" / "badge-a" / "badge.pub", badge_key)
        report = verify_package(forged)
        assert Check.SEGMENT_SIGNATURE in report.failed_checks
        assert "no badge key in the package signed this header" in report.human()
