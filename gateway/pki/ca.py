"""The hospital's evidence CA: a P-256 root that certifies the gateway's TSA and TLS servers."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeAlias

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from evidence.durable import write_durably
from evidence.errors import KeyFileError
from evidence.keyfiles import read_secret_file
from gateway.errors import CertificateError

CA_KEY_FILE = "ca.key"
CA_CERT_FILE = "ca.crt"

CA_VALIDITY = timedelta(days=20 * 365 + 5)
TSA_VALIDITY = timedelta(days=10 * 365 + 3)
# 825 days is the longest TLS server certificate lifetime Apple platforms accept from a
# private CA; browsers on the console's workstations would reject a longer one.
SERVER_VALIDITY = timedelta(days=825)
CLIENT_VALIDITY = timedelta(days=825)
"""A badge's broker certificate; a re-enrolment issues a new one."""
# Certificates start slightly in the past so a client whose clock lags a little still
# accepts a certificate issued a moment ago.
_BACKDATE = timedelta(minutes=5)
# RFC 5280's upper bound for a commonName; cryptography refuses longer ones.
_MAX_NAME = 64
_CA_SUFFIX = " Evidence CA"
_DNS_NAME = re.compile(
    r"(?=.{1,253}\Z)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*",
)

CertifiedKey: TypeAlias = tuple[ec.EllipticCurvePrivateKey, x509.Certificate]
"""A freshly issued private key and the certificate for its public key."""


@dataclass(frozen=True, eq=False)
class EvidenceCA:
    """The hospital evidence CA's key and self-signed certificate."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def create(cls, hospital_name: str, *, now: datetime | None = None) -> EvidenceCA:
        """Create a new CA named "<hospital_name> Evidence CA", valid for 20 years."""
        hospital = _check_name(hospital_name, "hospital name", _MAX_NAME - len(_CA_SUFFIX))
        start = (now or datetime.now(UTC)) - _BACKDATE
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, hospital + _CA_SUFFIX),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, hospital),
            ]
        )
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + CA_VALIDITY)
            # path_length 0: this CA certifies end entities only, never another CA.
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cls(key=key, certificate=certificate)

    @classmethod
    def load(cls, directory: Path) -> EvidenceCA:
        """Load the CA saved in ``directory``; refuse a key file others could read."""
        key_path = Path(directory) / CA_KEY_FILE
        cert_path = Path(directory) / CA_CERT_FILE
        key = _parse_private_key(_read_private_file(key_path), key_path)
        certificate = _parse_certificate(_read_file(cert_path), cert_path)
        if _spki(certificate.public_key()) != _spki(key.public_key()):
            raise CertificateError(
                f"CA certificate {cert_path} does not belong to the key in {key_path}: "
                "restore the matching pair"
            )
        try:
            constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.value.ca:
            raise CertificateError(f"certificate {cert_path} is not a CA certificate")
        return cls(key=key, certificate=certificate)

    def save(self, directory: Path) -> None:
        """Write ``ca.key`` (mode 0600) and ``ca.crt`` into ``directory``; never overwrite a key."""
        directory = Path(directory)
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise CertificateError(f"cannot create CA directory {directory}: {exc}") from exc
        # Losing the CA key would orphan every certificate it issued, so an existing key
        # file is an error, not something to replace.
        write_private_key(directory / CA_KEY_FILE, self.key, replace=False)
        write_certificate(directory / CA_CERT_FILE, self.certificate)

    @property
    def hospital_name(self) -> str:
        """The hospital (the certificate's organisation) this CA belongs to."""
        names = self.certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        return str(names[0].value) if names else ""

    def issue_tsa_certificate(
        self, common_name: str, *, validity: timedelta = TSA_VALIDITY, now: datetime | None = None
    ) -> CertifiedKey:
        """Issue a P-256 key and certificate for the gateway's RFC 3161 time-stamping authority.

        RFC 3161 section 2.3 requires the extended key usage to hold only timeStamping
        and to be critical; ``openssl ts -verify`` refuses a TSA certificate without it.
        """
        name = _check_name(common_name, "TSA common name", _MAX_NAME)
        usage = _key_usage(digital_signature=True, content_commitment=True)
        key = ec.generate_private_key(ec.SECP256R1())
        builder = self._leaf_builder(key, name, validity, now)
        certificate = (
            builder.add_extension(usage, critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), True)
            .sign(self.key, hashes.SHA256())
        )
        return key, certificate

    def issue_server_certificate(
        self,
        hostnames: Sequence[str],
        ip_addresses: Sequence[str],
        *,
        validity: timedelta = SERVER_VALIDITY,
        now: datetime | None = None,
    ) -> CertifiedKey:
        """Issue a P-256 TLS server key and certificate for the broker or the console."""
        dns = [_check_hostname(host) for host in _as_list(hostnames, "hostnames")]
        ips = [_check_ip(address) for address in _as_list(ip_addresses, "ip_addresses")]
        if not dns and not ips:
            raise CertificateError("a server certificate needs at least one hostname or IP address")
        first = dns[0] if dns else str(ips[0])
        san: list[x509.GeneralName] = [x509.DNSName(host) for host in dns]
        san += [x509.IPAddress(address) for address in ips]
        key = ec.generate_private_key(ec.SECP256R1())
        builder = self._leaf_builder(key, first[:_MAX_NAME], validity, now)
        certificate = (
            builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(_key_usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .sign(self.key, hashes.SHA256())
        )
        return key, certificate

    def issue_client_certificate(
        self,
        common_name: str,
        request: x509.CertificateSigningRequest,
        *,
        validity: timedelta = CLIENT_VALIDITY,
        now: datetime | None = None,
    ) -> x509.Certificate:
        """Certify a badge's own TLS key for the broker, from its CSR, as ``common_name``.

        The CSR must be signed by the P-256 key it names (so its sender holds that key) and
        name exactly ``common_name``: the broker takes that name as the login.
        """
        if not request.is_signature_valid:
            raise CertificateError(
                "the certificate request is not signed by the key it names; nothing was issued"
            )
        key = request.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(
            key.curve, ec.SECP256R1
        ):
            raise CertificateError("a badge's broker certificate is for a P-256 key")
        names = request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if [name.value for name in names] != [common_name]:
            raise CertificateError(
                f"the certificate request names {[n.value for n in names]!r}, not {common_name!r}"
            )
        builder = self._leaf_builder(key, common_name, validity, now)
        return (
            builder.add_extension(_key_usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
            .sign(self.key, hashes.SHA256())
        )

    def _leaf_builder(
        self,
        key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey,
        common_name: str,
        validity: timedelta,
        now: datetime | None,
    ) -> x509.CertificateBuilder:
        """Start an end-entity certificate signed by this CA, ending no later than the CA."""
        start = (now or datetime.now(UTC)) - _BACKDATE
        ca_end = self.certificate.not_valid_after_utc
        if start >= ca_end:
            raise CertificateError(
                f"the evidence CA expired on {ca_end.isoformat()}: create a new CA"
            )
        subject = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        if self.hospital_name:
            subject.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.hospital_name))
        ca_ski = x509.SubjectKeyIdentifier.from_public_key(self.key.public_key())
        public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name(subject))
            .issuer_name(self.certificate.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(min(start + validity, ca_end))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), False
            )
        )


def write_private_key(path: Path, key: ec.EllipticCurvePrivateKey, *, replace: bool = True) -> None:
    """Write ``key`` as unencrypted PKCS#8 PEM, mode 0600 from the moment the file exists."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        write_durably(Path(path), pem, 0o600, replace=replace)
    except FileExistsError as exc:
        raise CertificateError(
            f"key file {path} already exists: move it away first if it must be replaced"
        ) from exc
    except OSError as exc:
        raise CertificateError(f"cannot write key file {path}: {exc}") from exc


def write_certificate(path: Path, certificate: x509.Certificate) -> None:
    """Write ``certificate`` as PEM, mode 0644 (certificates are public)."""
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    try:
        write_durably(Path(path), pem, 0o644)
    except OSError as exc:
        raise CertificateError(f"cannot write certificate {path}: {exc}") from exc


def _key_usage(
    *,
    digital_signature: bool = False,
    content_commitment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    """Build a KeyUsage with only the named bits set."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=content_commitment,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _check_name(value: object, what: str, limit: int) -> str:
    """Return ``value`` stripped if it is printable text of 1..``limit`` characters."""
    if not isinstance(value, str) or not value.strip():
        raise CertificateError(f"{what} {value!r} is empty: give a non-empty name")
    text = value.strip()
    if len(text) > limit or not text.isprintable():
        raise CertificateError(
            f"{what} {text!r} is not allowed: use at most {limit} printable characters"
        )
    return text


def _as_list(values: Sequence[str], what: str) -> list[str]:
    """Return ``values`` as a list, refusing a bare string (which would split into letters)."""
    if isinstance(values, str | bytes):
        raise CertificateError(f"{what} must be a sequence of strings, not one string")
    return list(values)


def _check_hostname(host: object) -> str:
    """Return ``host`` lower-cased if it is a plain DNS name (no wildcard, no trailing dot)."""
    if isinstance(host, str) and _DNS_NAME.fullmatch(host.lower()):
        return host.lower()
    raise CertificateError(f"hostname {host!r} is not a valid DNS name for a certificate")


def _check_ip(address: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Return ``address`` parsed as an IPv4 or IPv6 address."""
    try:
        return ipaddress.ip_address(str(address))
    except ValueError as exc:
        raise CertificateError(f"IP address {address!r} is not valid for a certificate") from exc


def _spki(public_key: CertificatePublicKeyTypes) -> bytes:
    """Return the DER SubjectPublicKeyInfo of ``public_key`` for comparison."""
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _read_file(path: Path) -> bytes:
    """Read ``path``, turning a missing or unreadable file into ``CertificateError``."""
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise CertificateError(f"{path} is missing: create the evidence CA first") from exc
    except OSError as exc:
        raise CertificateError(f"cannot read {path}: {exc}") from exc


def _read_private_file(path: Path) -> bytes:
    """Read a key file, refusing it if group or others may read or write it."""
    try:
        return read_secret_file(path)
    except KeyFileError as error:
        raise CertificateError(f"{error}; the evidence CA cannot be used") from None


def _parse_private_key(pem: bytes, path: Path) -> ec.EllipticCurvePrivateKey:
    """Parse an unencrypted PEM P-256 private key."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CertificateError(
            f"key file {path} is not an unencrypted PEM private key: {exc}"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise CertificateError(f"key file {path} does not hold a P-256 (secp256r1) key")
    return key


def _parse_certificate(pem: bytes, path: Path) -> x509.Certificate:
    """Parse a PEM certificate with an EC public key."""
    try:
        certificate = x509.load_pem_x509_certificate(pem)
        public_key = certificate.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateError(f"{path} is not a PEM X.509 certificate: {exc}") from exc
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise CertificateError(f"certificate {path} does not hold an EC public key")
    return certificate
