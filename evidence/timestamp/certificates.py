"""The TSA's certificate: found in a token, fit for time-stamping, chained to a trusted CA."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.x509.oid import ExtendedKeyUsageOID

from evidence.errors import TimestampError
from evidence.timestamp.token import Signer

_MAX_PATH = 4
_E = TypeVar("_E", bound=x509.ExtensionType)


def as_certificates(
    value: x509.Certificate | Sequence[x509.Certificate], what: str
) -> tuple[x509.Certificate, ...]:
    """Return one certificate or a sequence of them as a tuple, refusing anything else."""
    found = (value,) if isinstance(value, x509.Certificate) else tuple(value)
    if not all(isinstance(cert, x509.Certificate) for cert in found):
        raise TimestampError(f"{what} must be cryptography X.509 certificates")
    return found


def subject_of(certificate: x509.Certificate) -> str:
    """Name a certificate for an error message."""
    try:
        return certificate.subject.rfc4514_string() or f"serial {certificate.serial_number}"
    except ValueError:
        return f"serial {certificate.serial_number}"


def signer_certificate(
    signer: Signer, candidates: tuple[x509.Certificate, ...]
) -> x509.Certificate:
    """Find the certificate the SignerInfo's sid names among the carried and given ones."""
    for candidate in candidates:
        if signer.key_id is not None:
            if _subject_key_id(candidate) == signer.key_id:
                return candidate
        elif (
            candidate.serial_number == signer.serial
            and candidate.issuer.public_bytes() == signer.issuer
        ):
            return candidate
    raise TimestampError(
        "the time-stamp token's signing certificate is neither in the token nor among the "
        "certificates given: supply the TSA certificate"
    )


def _subject_key_id(certificate: x509.Certificate) -> bytes | None:
    """Return a certificate's subjectKeyIdentifier, or None."""
    try:
        ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except (x509.ExtensionNotFound, ValueError):
        return None
    return ski.value.digest


def check_tsa_certificate(certificate: x509.Certificate) -> None:
    """RFC 3161 section 2.3: a critical extended key usage holding timeStamping only."""
    name = subject_of(certificate)
    try:
        usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        usage = None
    except ValueError as exc:
        raise TimestampError(f"TSA certificate {name} has malformed extensions: {exc}") from exc
    if (
        usage is None
        or not usage.critical
        or list(usage.value) != [ExtendedKeyUsageOID.TIME_STAMPING]
    ):
        raise TimestampError(
            f"TSA certificate {name} lacks the critical timeStamping-only extended key usage "
            "RFC 3161 requires"
        )
    key_usage = _extension(certificate, x509.KeyUsage)
    if key_usage is not None and not (key_usage.digital_signature or key_usage.content_commitment):
        raise TimestampError(f"TSA certificate {name} does not allow digital signatures")


def path_to_trusted_ca(
    leaf: x509.Certificate,
    pool: tuple[x509.Certificate, ...],
    anchors: tuple[x509.Certificate, ...],
) -> list[x509.Certificate]:
    """Build the path from the TSA certificate up to a trusted CA, checking each signature."""
    path = [leaf]
    for _ in range(_MAX_PATH):
        current = path[-1]
        for anchor in anchors:
            if _issued_by(current, anchor):
                _check_ca(anchor)
                return [*path, anchor]
        issuer = next(
            (cert for cert in pool if cert not in path and _issued_by(current, cert)), None
        )
        if issuer is None:
            break
        _check_ca(issuer)
        path.append(issuer)
    raise TimestampError(
        f"time-stamp token is signed by a certificate not issued by the trusted CA: "
        f"{subject_of(leaf)}, issued by {leaf.issuer.rfc4514_string()}"
    )


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer``'s name and key produced ``certificate``'s signature."""
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _check_ca(certificate: x509.Certificate) -> None:
    """A certificate that issues others must be a CA allowed to sign certificates."""
    constraints = _extension(certificate, x509.BasicConstraints)
    usage = _extension(certificate, x509.KeyUsage)
    if constraints is None or not constraints.ca or (usage is not None and not usage.key_cert_sign):
        raise TimestampError(
            f"certificate {subject_of(certificate)} issued the TSA's certificate but is not a CA"
        )


def check_validity(path: list[x509.Certificate], gen_time: datetime) -> None:
    """Every certificate on the path must have been valid when the token was made."""
    for certificate in path:
        start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc
        if not start <= gen_time <= end:
            raise TimestampError(
                f"time-stamp token's genTime {gen_time.isoformat()} lies outside the validity "
                f"of certificate {subject_of(certificate)} ({start.isoformat()} to "
                f"{end.isoformat()}): the token is back- or post-dated"
            )


def names_certificate(name: tuple[str, bytes | str], certificate: x509.Certificate) -> bool:
    """RFC 3161: a TSA name must be one of the subject names in the TSA certificate."""
    kind, value = name
    if kind == "directory_name" and value == certificate.subject.public_bytes():
        return True
    alternative = _extension(certificate, x509.SubjectAlternativeName)
    if alternative is None:
        return False
    if kind == "directory_name":
        return any(
            entry.public_bytes() == value
            for entry in alternative.get_values_for_type(x509.DirectoryName)
        )
    if kind == "dns_name":
        return value in alternative.get_values_for_type(x509.DNSName)
    if kind == "uniform_resource_identifier":
        return value in alternative.get_values_for_type(x509.UniformResourceIdentifier)
    return value in alternative.get_values_for_type(x509.RFC822Name)


def _extension(certificate: x509.Certificate, kind: type[_E]) -> _E | None:
    """Return an extension's value, None when absent; malformed extensions are an error."""
    try:
        return certificate.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None
    except ValueError as exc:
        raise TimestampError(
            f"certificate {subject_of(certificate)} has malformed extensions: {exc}"
        ) from exc
