"""Broker access by certificate: the gateway's own client certificate for the broker.

Badges get theirs at enrolment, from a CSR over a TLS key they made (decision 1902). The
gateway's comes from ``gateway broker-config --badge-auth certificate``: a P-256 key and a
clientAuth certificate from the evidence CA naming the gateway's broker account, in the
data directory's ``keys/``. Whoever connects with a certificate is the name it carries
(mosquitto ``use_identity_as_username``), so no password is involved on that listener.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.datadir import GatewayDataDir
from gateway.pki.ca import write_certificate, write_private_key

GATEWAY_CERT_FILE = "broker-gateway.crt"
GATEWAY_KEY_FILE = "broker-gateway.key"
_RENEW_BEFORE = timedelta(days=30)


def gateway_certificate_files(data_dir: GatewayDataDir) -> tuple[Path, Path] | None:
    """The gateway's broker certificate and key, if ``broker-config`` made them."""
    certificate, key = data_dir.keys / GATEWAY_CERT_FILE, data_dir.keys / GATEWAY_KEY_FILE
    return (certificate, key) if certificate.exists() and key.exists() else None


def ensure_gateway_certificate(data_dir: GatewayDataDir, username: str) -> bool:
    """Issue the gateway's broker certificate for ``username`` unless a current one exists;
    True when a new one was written."""
    existing = gateway_certificate_files(data_dir)
    if existing is not None and _current(existing[0], username):
        return False
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, username)])
    request = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    certificate = data_dir.evidence_ca().issue_client_certificate(username, request)
    write_private_key(data_dir.keys / GATEWAY_KEY_FILE, key)
    write_certificate(data_dir.keys / GATEWAY_CERT_FILE, certificate)
    return True


def _current(path: Path, username: str) -> bool:
    try:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return False
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    fresh = certificate.not_valid_after_utc - datetime.now(UTC) > _RENEW_BEFORE
    return fresh and [name.value for name in names] == [username]
