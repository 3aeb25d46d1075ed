"""The gateway's own RFC 3161 time-stamping authority: P-256 tokens under the evidence CA."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from asn1crypto import cms, parser, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from evidence.hashing import sha256
from gateway.errors import TimestampAuthorityError
from gateway.timestamping.request import (
    AcceptedRequest,
    Refusal,
    build_request,
    check_policy,
    read_request,
)
from gateway.timestamping.timestamper import verified

DEFAULT_POLICY_OID = "1.3.6.1.4.1.32473.3161.1"
"""The TSA policy a token names unless configured otherwise: a placeholder.

It lies under 1.3.6.1.4.1.32473, the private enterprise number RFC 5612 reserves for
documentation and examples, so it can never collide with a real policy. A hospital that
publishes a time-stamping policy configures the OID of that document instead.
"""

_log = logging.getLogger(__name__)


def _utc_now() -> datetime:
    """The system clock, in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True, eq=False)
class TimeStampAuthority:
    """The gateway's own TSA: signs TSTInfo tokens with a P-256 key under the evidence CA.

    ``key`` and ``certificate`` come from ``EvidenceCA.issue_tsa_certificate``;
    ``ca_certificate`` is the evidence CA's, included in replies that ask for certificates
    and used to verify each token ``stamp`` returns. ``clock`` must return an aware time.
    """

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    ca_certificate: x509.Certificate
    policy_oid: str = DEFAULT_POLICY_OID
    accuracy_seconds: int = 1
    clock: Callable[[], datetime] = field(default=_utc_now)

    def __post_init__(self) -> None:
        """Refuse a key that is not P-256 or does not match the certificate."""
        if not isinstance(self.key, ec.EllipticCurvePrivateKey) or not isinstance(
            self.key.curve, ec.SECP256R1
        ):
            raise TimestampAuthorityError("the TSA key must be a P-256 (secp256r1) private key")
        if not isinstance(self.certificate, x509.Certificate) or not isinstance(
            self.ca_certificate, x509.Certificate
        ):
            raise TimestampAuthorityError("the TSA and CA certificates must be X.509 certificates")
        if _spki(self.certificate) != self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ):
            raise TimestampAuthorityError(
                f"TSA certificate {self.certificate.subject.rfc4514_string()} does not belong "
                "to the TSA key: configure the matching pair"
            )
        check_policy(self.policy_oid)
        if not isinstance(self.accuracy_seconds, int) or self.accuracy_seconds < 1:
            raise TimestampAuthorityError("the TSA accuracy must be a whole number of seconds >= 1")

    @property
    def trust_anchors(self) -> tuple[x509.Certificate, ...]:
        """The evidence CA: its tokens chain to it."""
        return (self.ca_certificate,)

    @property
    def certificates(self) -> tuple[x509.Certificate, ...]:
        """The TSA's own certificate, to keep beside its tokens."""
        return (self.certificate,)

    def respond(self, request_der: bytes) -> bytes:
        """Answer a DER ``TimeStampReq`` with a DER ``TimeStampResp``; never raises.

        A request this TSA cannot honour gets status rejection with the RFC 3161 failure
        reason: badDataFormat (not a request, or a digest of the wrong size), badRequest
        (unsupported version), badAlg, unacceptedPolicy, unacceptedExtension; a clock that
        fails gets systemFailure.
        """
        request = read_request(request_der, self.policy_oid)
        if isinstance(request, Refusal):
            _log.info("time-stamp request refused: %s", request.text)
            return _reply(_status("rejection", request), None)
        try:
            token = self._sign(request)
        except TimestampAuthorityError as exc:
            _log.error("time-stamp request failed: %s", exc)
            return _reply(_status("rejection", Refusal("system_failure", str(exc))), None)
        return _reply(_status("granted"), token)

    def stamp(self, digest: bytes) -> bytes:
        """Stamp a SHA-256 ``digest``; return the ``TimeStampResp`` after verifying it.

        Verifying each token as a court would catches a TSA that cannot produce verifiable
        tokens (a certificate without the timeStamping usage, a clock outside the
        certificate's validity) when it stamps, not years later in court.
        """
        nonce = secrets.randbits(64)
        reply = self.respond(build_request(digest, nonce=nonce))
        verified(
            reply, digest, nonce=nonce, where="the gateway's TSA", trusted_ca=self.ca_certificate
        )
        return reply

    def _sign(self, request: AcceptedRequest) -> bytes:
        """Build and sign the token (a CMS ContentInfo) for an accepted request."""
        tst_info = self._tst_info(request)
        certificate_der = self.certificate.public_bytes(serialization.Encoding.DER)
        content_type, signing_certificate = self._fixed_attributes
        attributes = cms.CMSAttributes(
            [
                cms.CMSAttribute.load(content_type),
                cms.CMSAttribute({"type": "message_digest", "values": [sha256(tst_info)]}),
                cms.CMSAttribute.load(signing_certificate),
            ]
        )
        # RFC 5652 section 5.4: the signature covers the DER SET OF the signed attributes.
        signature = self.key.sign(attributes.dump(), ec.ECDSA(hashes.SHA256()))
        signer = {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                name="issuer_and_serial_number",
                value={
                    "issuer": _asn1_name(self.certificate.issuer),
                    "serial_number": self.certificate.serial_number,
                },
            ),
            "digest_algorithm": {"algorithm": "sha256"},
            "signed_attrs": attributes,
            "signature_algorithm": {"algorithm": "sha256_ecdsa"},
            "signature": signature,
        }
        signed_data: dict[str, Any] = {
            "version": "v3",
            "digest_algorithms": [{"algorithm": "sha256"}],
            "encap_content_info": {
                "content_type": "tst_info",
                "content": tsp.TSTInfo.load(tst_info),
            },
            "signer_infos": [signer],
        }
        # RFC 3161 section 2.4.1: certificates only when asked for, and then the TSA's.
        if request.cert_req:
            ca_der = self.ca_certificate.public_bytes(serialization.Encoding.DER)
            carried = (certificate_der, ca_der)
            signed_data["certificates"] = [
                cms.CertificateChoices(name="certificate", value=asn1_x509.Certificate.load(der))
                for der in carried
            ]
        token = cms.ContentInfo({"content_type": "signed_data", "content": signed_data})
        return bytes(token.dump())

    def _tst_info(self, request: AcceptedRequest) -> bytes:
        """Encode the TSTInfo: genTime from the clock, a random 128-bit serial number."""
        try:
            now = self.clock()
            if not isinstance(now, datetime) or now.utcoffset() is None:
                raise TypeError("the clock returned a time without a time zone")
        except Exception as exc:  # any clock failure must become a refusal, not a crash
            raise TimestampAuthorityError(f"the TSA clock failed: {exc}") from exc
        tst: dict[str, Any] = {
            "version": "v1",
            "policy": self.policy_oid,
            "message_imprint": {
                "hash_algorithm": {"algorithm": request.algorithm_oid},
                "hashed_message": request.digest,
            },
            # Random, so serial numbers stay unique across restarts and gateway workers.
            "serial_number": secrets.randbits(128),
            # Whole seconds: the accuracy of at least one second covers the truncation.
            "gen_time": now.astimezone(UTC).replace(microsecond=0),
            "accuracy": {"seconds": self.accuracy_seconds},
            "tsa": asn1_x509.GeneralName(
                name="directory_name", value=_asn1_name(self.certificate.subject)
            ),
        }
        if request.nonce is not None:
            tst["nonce"] = request.nonce
        return bytes(tsp.TSTInfo(tst).dump())

    @cached_property
    def _fixed_attributes(self) -> tuple[bytes, bytes]:
        """The DER of the two signed attributes every token carries unchanged: its content
        type, and the ESSCertIDv2 naming this TSA's certificate. Built once: asn1crypto took
        about 15 ms per token to build and encode them from values, most of a stamp's cost,
        and the store process stamps a checkpoint at every incident's close (decision 1505)."""
        certificate_der = self.certificate.public_bytes(serialization.Encoding.DER)
        content_type = cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]})
        signing_certificate = cms.CMSAttribute(
            {
                "type": "signing_certificate_v2",
                "values": [{"certs": [self._cert_id(certificate_der)]}],
            }
        )
        return bytes(content_type.dump()), bytes(signing_certificate.dump())

    def _cert_id(self, certificate_der: bytes) -> dict[str, Any]:
        """The ESSCertIDv2 (RFC 5816) naming the TSA certificate by SHA-256, issuer and serial."""
        issuer = asn1_x509.GeneralName(
            name="directory_name", value=_asn1_name(self.certificate.issuer)
        )
        return {
            "hash_algorithm": {"algorithm": "sha256"},
            "cert_hash": sha256(certificate_der),
            "issuer_serial": {
                "issuer": [issuer],
                "serial_number": self.certificate.serial_number,
            },
        }


def _status(status: str, refusal: Refusal | None = None) -> bytes:
    """Encode a PKIStatusInfo, with the failure reason and text of a refusal."""
    info: dict[str, Any] = {"status": status}
    if refusal is not None:
        info["status_string"] = [refusal.text]
        info["fail_info"] = {refusal.fail_info}
    return bytes(tsp.PKIStatusInfo(info).dump())


def _reply(status: bytes, token: bytes | None) -> bytes:
    """Encode ``TimeStampResp ::= SEQUENCE { status, timeStampToken OPTIONAL }``.

    Written by hand because asn1crypto's ``TimeStampResp`` makes the token mandatory,
    where RFC 3161 leaves it out of every reply that is not granted.
    """
    return bytes(parser.emit(0, 1, 16, status + (token or b"")))


def _asn1_name(name: x509.Name) -> Any:
    """Carry a cryptography ``Name`` into asn1crypto by its DER, unchanged."""
    return asn1_x509.Name.load(name.public_bytes())


def _spki(certificate: x509.Certificate) -> bytes:
    """Return a certificate's DER SubjectPublicKeyInfo."""
    return certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
