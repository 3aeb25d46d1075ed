"""A badge key in a real PKCS#11 token (SoftHSM2): P-256, made there, never exportable, and
the whole incident from enrolment to the court's verification signed with it."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

from badge.config import BadgeConfig
from badge.enrolment import enrol
from badge.errors import EnrolmentError
from badge.hardware_key import HardwareSigner
from badge.signer import hardware_signer, load_enrolment
from demo.enrolment import LocalTransport
from evidence.enrolment import KeyOrigin
from evidence.package.instructions import commands
from evidence.package.layout import INSTRUCTIONS
from evidence.segment import SIGNATURE_CONTEXT
from gateway.enrolment.enrolment import issue_code
from gateway.ledger.custody import CustodyLog
from gateway.ledger.ledger import open_ledger
from tests.gateway.badge_messages import Hospital, make_hospital
from tests.gateway.court_package import deliver_incident, export, record_footage
from tests.softhsm import MODULE, TOKEN_LABEL, USER_PIN, softhsm_token, token_key

__all__ = ["softhsm_token"]  # the fixture, used by name


def test_the_token_key_signs_in_p256_and_cannot_be_read_out(softhsm_token: Path) -> None:
    signer = HardwareSigner(token_key(softhsm_token, "sign-test"), create=True)
    try:
        signature = signer.sign(SIGNATURE_CONTEXT, b"a header")
        assert len(signature) == 64 and signer.public_key.algorithm == "ecdsa-p256"
        signer.public_key.verify(signature, SIGNATURE_CONTEXT, b"a header", "header")
        with pytest.raises(Exception, match="does not verify"):
            signer.public_key.verify(signature, SIGNATURE_CONTEXT, b"another", "header")
        private = signer._private
        assert private[Attribute.EXTRACTABLE] is False and private[Attribute.SENSITIVE] is True
        with pytest.raises(pkcs11.PKCS11Error):
            private[Attribute.VALUE]  # the token will not give the private value out
    finally:
        signer.close()
    again = HardwareSigner(token_key(softhsm_token, "sign-test"))
    assert again.public_key.raw == signer.public_key.raw  # the same key, found again
    again.close()


def test_a_key_that_could_be_exported_is_refused(softhsm_token: Path) -> None:
    token = pkcs11.lib(str(MODULE)).get_token(token_label=TOKEN_LABEL)
    with token.open(rw=True, user_pin=USER_PIN) as session:
        parameters = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, True
        )
        parameters.generate_keypair(
            store=True,
            label="exportable",
            private_template={Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: False},
        )
        assert session.get_key(ObjectClass.PRIVATE_KEY, label="exportable")
    with pytest.raises(EnrolmentError, match="can be exported from its token"):
        HardwareSigner(token_key(softhsm_token, "exportable"))
    with pytest.raises(EnrolmentError, match="cannot be used"):
        HardwareSigner(token_key(softhsm_token, "no-such-key"))


def test_a_hardware_key_carries_the_whole_incident_to_a_verified_package(
    softhsm_token: Path, tmp_path: Path
) -> None:
    hospital = make_hospital(tmp_path, ("badge-a",))
    config = BadgeConfig.from_mapping(
        {
            "badge": {"bundle": str(tmp_path / "hw-enrolment")},
            "key": {
                "store": "pkcs11",
                "pkcs11_module": str(MODULE),
                "token_label": TOKEN_LABEL,
                "key_label": "hw-badge",
                "pin_file": str(softhsm_token),
            },
        }
    )
    signer = hardware_signer(config, create=True)
    assert isinstance(signer, HardwareSigner)
    code = issue_code(hospital.data_dir, "hw-badge", wearer="Paramedic B").code
    bundle = enrol(
        config.badge.bundle, "hw-badge", code, LocalTransport(hospital.data_dir), hardware=signer
    )
    assert bundle.key_origin is KeyOrigin.BADGE_HARDWARE
    assert not (config.badge.bundle / "badge.key").exists()  # no private key on the file system
    loaded = load_enrolment(config)
    assert loaded.identity.signing_key.public_key.raw == signer.public_key.raw
    storage = hospital.data_dir.storage()
    try:
        assert storage.badges.get("hw-badge").key_origin == "badge-hardware"
        (entry,) = CustodyLog(open_ledger(hospital.data_dir, storage)).entries(subject="hw-badge")
        assert entry.detail["algorithm"] == "ecdsa-p256"
        assert entry.detail["public_key"] == signer.public_key.raw
    finally:
        storage.close()
    badges = {**hospital.bundles, "hw-badge": loaded}
    incident = deliver_incident(
        Hospital(hospital.data_dir, badges), record_footage(3.0), badge_id="hw-badge"
    )
    receipts = [topic for topic, _ in incident.published if topic.endswith("/receipt")]
    assert len(receipts) >= len(incident.sealed) + 1  # every segment and the incident
    result = export(hospital, incident.incident_id, tmp_path / "hw.zip")
    report = result.report
    assert report.verified, report.human()
    assert report.summary.badge_key_origins == ("badge-hardware",)
    assert "Badge key (badge-hardware): made inside the badge's secure hardware" in report.human()
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(result.path) as archive:
        archive.extractall(unpacked)
    text = (unpacked / INSTRUCTIONS).read_text()
    assert "ECDSA P-256" in text
    segment_lines = [line for line in commands(text) if "genconf" in line]
    assert len(segment_lines) == len(incident.sealed)
    for line in segment_lines:
        done = subprocess.run(
            ["bash", "-c", line], cwd=unpacked, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0 and done.stdout == "Verified OK\n", (line, done.stderr)
    signer.close()
