"""Tests for gateway.ca: the evidence CA, its TSA and TLS certificates, and their key files."""

from __future__ import annotations

import ipaddress
import os
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.errors import CertificateError, GatewayError
from gateway.pki.ca import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    EvidenceCA,
    write_certificate,
    write_private_key,
)


@pytest.fixture(scope="module")
def ca() -> EvidenceCA:
    return EvidenceCA.create("City Hospital No. 1")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _openssl_verify(
    ca_file: Path, cert_file: Path, *purpose: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", "verify", *purpose, "-CAfile", str(ca_file), str(cert_file)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_ca_certificate_properties(ca: EvidenceCA) -> None:
    cert = ca.certificate
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "City Hospital No. 1 Evidence CA"
    )
    assert ca.hospital_name == "City Hospital No. 1"
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.curve.name == "secp256r1"

    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca
    assert constraints.value.path_length == 0

    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature

    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(key)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert timedelta(days=20 * 365) <= lifetime <= timedelta(days=20 * 366)
    cert.verify_directly_issued_by(cert)


def test_tsa_certificate_has_critical_time_stamping_eku(ca: EvidenceCA) -> None:
    key, cert = ca.issue_tsa_certificate("City Hospital No. 1 TSA")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical
    assert list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]

    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature and usage.value.content_commitment
    assert not usage.value.key_cert_sign

    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert not constraints.value.ca
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    assert cert.public_key() == key.public_key()
    cert.verify_directly_issued_by(ca.certificate)
    assert cert.not_valid_after_utc <= ca.certificate.not_valid_after_utc


def test_openssl_verifies_tsa_certificate_under_ca(ca: EvidenceCA, tmp_path: Path) -> None:
    ca.save(tmp_path / "ca")
    _, tsa = ca.issue_tsa_certificate("Evidence TSA")
    write_certificate(tmp_path / "tsa.crt", tsa)
    result = _openssl_verify(tmp_path / "ca" / CA_CERT_FILE, tmp_path / "tsa.crt")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(": OK")
    # openssl checks the timeStamping purpose (critical, sole EKU) the way ts -verify does.
    purpose = _openssl_verify(
        tmp_path / "ca" / CA_CERT_FILE, tmp_path / "tsa.crt", "-purpose", "timestampsign"
    )
    assert purpose.returncode == 0, purpose.stderr


def test_openssl_refuses_tsa_certificate_from_another_ca(ca: EvidenceCA, tmp_path: Path) -> None:
    other = EvidenceCA.create("Other Hospital")
    other.save(tmp_path / "other")
    _, tsa = ca.issue_tsa_certificate("Evidence TSA")
    write_certificate(tmp_path / "tsa.crt", tsa)
    result = _openssl_verify(tmp_path / "other" / CA_CERT_FILE, tmp_path / "tsa.crt")
    assert result.returncode != 0


def test_server_certificate_names_and_usage(ca: EvidenceCA, tmp_path: Path) -> None:
    key, cert = ca.issue_server_certificate(
        ["Gateway.Hospital.local", "localhost"], ["10.0.0.5", "::1"]
    )
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["gateway.hospital.local", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.5"),
        ipaddress.ip_address("::1"),
    ]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.public_key() == key.public_key()
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ca.save(tmp_path / "ca")
    write_certificate(tmp_path / "server.crt", cert)
    result = _openssl_verify(
        tmp_path / "ca" / CA_CERT_FILE, tmp_path / "server.crt", "-purpose", "sslserver"
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("hostnames", "ips"),
    [
        ([], []),
        (["bad host"], []),
        (["*.wild.example"], []),
        ([], ["999.1.1.1"]),
        ("localhost", []),
    ],
)
def test_server_certificate_refuses_bad_names(
    ca: EvidenceCA, hostnames: list[str], ips: list[str]
) -> None:
    with pytest.raises(CertificateError):
        ca.issue_server_certificate(hostnames, ips)


def test_save_writes_key_0600_and_load_round_trips(ca: EvidenceCA, tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    ca.save(directory)
    assert _mode(directory / CA_KEY_FILE) == 0o600
    assert (directory / CA_KEY_FILE).read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert _mode(directory / CA_CERT_FILE) == 0o644
    loaded = EvidenceCA.load(directory)
    assert loaded.certificate == ca.certificate
    assert loaded.key.private_numbers() == ca.key.private_numbers()
    # No temporary files are left behind.
    assert sorted(p.name for p in directory.iterdir()) == [CA_CERT_FILE, CA_KEY_FILE]


def test_key_file_is_0600_even_with_a_permissive_umask(ca: EvidenceCA, tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private_key(tmp_path / "k.pem", ca.key)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "k.pem") == 0o600


def test_save_refuses_to_overwrite_an_existing_ca_key(ca: EvidenceCA, tmp_path: Path) -> None:
    ca.save(tmp_path)
    original = (tmp_path / CA_KEY_FILE).read_bytes()
    with pytest.raises(CertificateError, match="already exists"):
        EvidenceCA.create("Impostor").save(tmp_path)
    assert (tmp_path / CA_KEY_FILE).read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == [CA_CERT_FILE, CA_KEY_FILE]


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_load_refuses_group_or_world_readable_key(
    ca: EvidenceCA, tmp_path: Path, mode: int
) -> None:
    ca.save(tmp_path)
    (tmp_path / CA_KEY_FILE).chmod(mode)
    with pytest.raises(CertificateError, match="chmod 600"):
        EvidenceCA.load(tmp_path)


def test_load_missing_files(ca: EvidenceCA, tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match="missing"):
        EvidenceCA.load(tmp_path)
    ca.save(tmp_path)
    (tmp_path / CA_CERT_FILE).unlink()
    with pytest.raises(CertificateError, match="missing"):
        EvidenceCA.load(tmp_path)


def test_load_malformed_files(ca: EvidenceCA, tmp_path: Path) -> None:
    ca.save(tmp_path)
    (tmp_path / CA_CERT_FILE).write_text("not a certificate")
    with pytest.raises(CertificateError, match=r"not a PEM X\.509 certificate"):
        EvidenceCA.load(tmp_path)
    (tmp_path / CA_KEY_FILE).write_text("garbage")
    with pytest.raises(CertificateError, match="not an unencrypted PEM private key"):
        EvidenceCA.load(tmp_path)


def test_load_refuses_mismatched_pair(ca: EvidenceCA, tmp_path: Path) -> None:
    ca.save(tmp_path)
    write_certificate(tmp_path / CA_CERT_FILE, EvidenceCA.create("Other").certificate)
    with pytest.raises(CertificateError, match="does not belong"):
        EvidenceCA.load(tmp_path)


def test_load_refuses_non_ca_certificate(ca: EvidenceCA, tmp_path: Path) -> None:
    key, cert = ca.issue_tsa_certificate("TSA")
    write_private_key(tmp_path / CA_KEY_FILE, key)
    write_certificate(tmp_path / CA_CERT_FILE, cert)
    with pytest.raises(CertificateError, match="not a CA"):
        EvidenceCA.load(tmp_path)


@pytest.mark.parametrize("name", ["", "   ", "x" * 53, "Tab\there"])
def test_create_refuses_bad_hospital_names(name: str) -> None:
    with pytest.raises(CertificateError):
        EvidenceCA.create(name)


def test_errors_belong_to_the_gateway_hierarchy() -> None:
    assert issubclass(CertificateError, GatewayError)


def test_leaf_never_outlives_the_ca(ca: EvidenceCA) -> None:
    late = ca.certificate.not_valid_after_utc - timedelta(days=30)
    _, cert = ca.issue_tsa_certificate("TSA", now=late)
    assert cert.not_valid_after_utc == ca.certificate.not_valid_after_utc


def test_expired_ca_issues_nothing(ca: EvidenceCA) -> None:
    after = ca.certificate.not_valid_after_utc + timedelta(days=1)
    with pytest.raises(CertificateError, match="expired"):
        ca.issue_tsa_certificate("TSA", now=after)


def test_create_uses_given_time() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    cert = EvidenceCA.create("Clinic", now=now).certificate
    assert cert.not_valid_before_utc < now < cert.not_valid_before_utc + timedelta(hours=1)
