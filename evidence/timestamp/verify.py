"""RFC 3161 time-stamp tokens verified offline against a trusted CA.

A token is CMS SignedData (RFC 5652) over a TSTInfo (RFC 3161 section 2.4.2) whose signed
attributes name the signing certificate with an ESSCertIDv2 (RFC 5816) or ESSCertID
(RFC 2634). ``verify_timestamp`` checks every link a court relies on and raises
``TimestampError`` saying which one broke. Object identifiers are written out in dotted form
so a reader can look each one up in its RFC.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from evidence.errors import TimestampError
from evidence.hashing import DIGEST_SIZE
from evidence.timestamp.certificates import (
    as_certificates,
    check_tsa_certificate,
    check_validity,
    names_certificate,
    path_to_trusted_ca,
    signer_certificate,
    subject_of,
)
from evidence.timestamp.token import (
    ID_CT_TST_INFO,
    SHA1_OID,
    SHA256_OID,
    Signer,
    TimestampInfo,
    TimestampToken,
)

_DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    SHA256_OID: hashes.SHA256,
    "2.16.840.1.101.3.4.2.2": hashes.SHA384,
    "2.16.840.1.101.3.4.2.3": hashes.SHA512,
}
# Signature algorithm -> (key type, the digest it implies, or None to use the signer's).
_SIGNATURES: dict[str, tuple[str, str | None]] = {
    "1.2.840.10045.4.3.2": ("ecdsa", SHA256_OID),
    "1.2.840.10045.4.3.3": ("ecdsa", "2.16.840.1.101.3.4.2.2"),
    "1.2.840.10045.4.3.4": ("ecdsa", "2.16.840.1.101.3.4.2.3"),
    "1.2.840.10045.2.1": ("ecdsa", None),
    "1.2.840.113549.1.1.11": ("rsa", SHA256_OID),
    "1.2.840.113549.1.1.12": ("rsa", "2.16.840.1.101.3.4.2.2"),
    "1.2.840.113549.1.1.13": ("rsa", "2.16.840.1.101.3.4.2.3"),
    "1.2.840.113549.1.1.1": ("rsa", None),
}


def verify_timestamp(
    token_der: bytes,
    data_digest: bytes,
    trusted_ca: x509.Certificate | Sequence[x509.Certificate],
    *,
    certificates: Sequence[x509.Certificate] = (),
    expected_nonce: int | None = None,
    expected_policy: str | None = None,
) -> TimestampInfo:
    """Verify a time-stamp token (or a granted ``TimeStampResp``) for ``data_digest``.

    ``data_digest`` is the SHA-256 of the time-stamped data. ``trusted_ca`` is the CA (or
    CAs) the TSA certificate must chain to; ``certificates`` supplies the TSA certificate
    and any intermediates when the token does not carry them. Checks, in order: the CMS
    structure; the contentType and messageDigest signed attributes; the signature over the
    signed attributes; the ESS signing-certificate attribute; the TSA certificate's critical
    timeStamping-only extended key usage; its chain to the trusted CA, every certificate
    valid at genTime; that the token carries no certificate off that chain; then the
    message imprint, the nonce, the policy and the TSA name. Returns what the token says;
    raises ``TimestampError`` naming the first check that failed.
    """
    anchors = as_certificates(trusted_ca, "trusted CA")
    extra = as_certificates(certificates, "certificates")
    if not isinstance(data_digest, bytes) or len(data_digest) != DIGEST_SIZE:
        raise TimestampError(
            f"the digest to check must be {DIGEST_SIZE} bytes of SHA-256, not {data_digest!r:.80}"
        )
    token = TimestampToken.from_der(token_der)
    signer = token._signer
    tsa_certificate = signer_certificate(signer, token.certificates + extra)
    _check_signed_attributes(signer, token._tst_info)
    _check_signature(signer, tsa_certificate)
    _check_signing_certificate_attribute(signer, tsa_certificate)
    check_tsa_certificate(tsa_certificate)
    path = path_to_trusted_ca(tsa_certificate, token.certificates + extra, anchors)
    check_validity(path, token.info.gen_time)
    for carried in token.certificates:
        if carried not in path:
            raise TimestampError(
                "time-stamp token carries a certificate that is not on its TSA's path to "
                f"the trusted CA: {subject_of(carried)}"
            )
    _check_claims(token, tsa_certificate, data_digest, expected_nonce, expected_policy)
    return token.info


def _check_signed_attributes(signer: Signer, tst_info: bytes) -> None:
    """The contentType must be id-ct-TSTInfo and messageDigest the hash of the TSTInfo."""
    if signer.content_type != ID_CT_TST_INFO:
        raise TimestampError("time-stamp token's signed contentType is not id-ct-TSTInfo")
    if signer.digest_oid not in _DIGESTS:
        raise TimestampError(
            f"time-stamp token's signer uses the unsupported digest {signer.digest_oid}"
        )
    hasher = hashes.Hash(_DIGESTS[signer.digest_oid]())
    hasher.update(tst_info)
    if hasher.finalize() != signer.message_digest:
        raise TimestampError(
            "time-stamp token's signed messageDigest does not match its TSTInfo: "
            "the token was altered"
        )


def _check_signature(signer: Signer, certificate: x509.Certificate) -> None:
    """Verify the signature over the DER signed attributes with the TSA certificate's key."""
    if signer.signature_oid not in _SIGNATURES:
        raise TimestampError(
            f"time-stamp token uses the unsupported signature algorithm {signer.signature_oid}"
        )
    key_type, implied_digest = _SIGNATURES[signer.signature_oid]
    if implied_digest not in (None, signer.digest_oid):
        raise TimestampError(
            "time-stamp token's signature algorithm does not match its signer's digest"
        )
    digest = _DIGESTS[signer.digest_oid]()
    try:
        key = certificate.public_key()
        if key_type == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signer.signature, signer.signed_attributes, ec.ECDSA(digest))
        elif key_type == "rsa" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signer.signature, signer.signed_attributes, padding.PKCS1v15(), digest)
        else:
            raise TimestampError(
                f"time-stamp token is signed with {key_type} but the TSA certificate "
                f"{subject_of(certificate)} holds another kind of key"
            )
    except InvalidSignature as exc:
        raise TimestampError(
            "time-stamp token's signature does not verify with the key of TSA certificate "
            f"{subject_of(certificate)}"
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise TimestampError(
            f"TSA certificate {subject_of(certificate)} has an unusable public key: {exc}"
        ) from exc


def _check_signing_certificate_attribute(signer: Signer, certificate: x509.Certificate) -> None:
    """The ESS signing-certificate attribute's first entry must identify the TSA certificate.

    RFC 3161 section 2.4.1 requires the attribute; RFC 5816 allows ESSCertIDv2 in place of
    ESSCertID. The first identifier is the signing certificate (RFC 5035 section 5.4).
    """
    if not signer.cert_ids and not signer.cert_ids_v1:
        raise TimestampError(
            "time-stamp token lacks the signing-certificate attribute (ESSCertID or ESSCertIDv2)"
        )
    der = certificate.public_bytes(serialization.Encoding.DER)
    for ids in (signer.cert_ids, signer.cert_ids_v1):
        if not ids:
            continue
        cert_id = ids[0]
        if cert_id.hash_oid == SHA1_OID:
            actual = hashlib.sha1(der, usedforsecurity=False).digest()
        elif cert_id.hash_oid in _DIGESTS:
            hasher = hashes.Hash(_DIGESTS[cert_id.hash_oid]())
            hasher.update(der)
            actual = hasher.finalize()
        else:
            raise TimestampError(
                f"time-stamp token's ESSCertIDv2 uses the unsupported hash {cert_id.hash_oid}"
            )
        if actual != cert_id.cert_hash:
            raise TimestampError(
                "time-stamp token's signing-certificate attribute names another certificate "
                f"than the TSA certificate {subject_of(certificate)}"
            )
        if cert_id.serial is not None and (
            cert_id.serial != certificate.serial_number
            or certificate.issuer.public_bytes() not in cert_id.issuer_names
        ):
            raise TimestampError(
                "time-stamp token's signing-certificate attribute gives another issuer or serial "
                f"than the TSA certificate {subject_of(certificate)}"
            )


def _check_claims(
    token: TimestampToken,
    certificate: x509.Certificate,
    data_digest: bytes,
    expected_nonce: int | None,
    expected_policy: str | None,
) -> None:
    """Check what the verified TSTInfo says against what the caller expects."""
    info = token.info
    if info.digest != data_digest:
        raise TimestampError(
            f"time-stamp token is for a different digest: it stamps {info.digest.hex()}, "
            f"not {data_digest.hex()}"
        )
    if expected_nonce is not None and info.nonce != expected_nonce:
        raise TimestampError(
            f"time-stamp token's nonce {info.nonce} is not the request's nonce {expected_nonce}"
        )
    if expected_policy is not None and info.policy != expected_policy:
        raise TimestampError(
            f"time-stamp token was made under policy {info.policy}, not {expected_policy}"
        )
    if token._tsa_name is not None and not names_certificate(token._tsa_name, certificate):
        raise TimestampError(
            f"time-stamp token names its TSA {info.tsa_name}, which is not a name of the TSA "
            f"certificate {subject_of(certificate)}"
        )
