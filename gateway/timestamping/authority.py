"""RFC 3161 time-stamping: the gateway's own TSA, a client for an external one, an HTTP front."""

from __future__ import annotations

import logging
import re
import secrets
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from http import HTTPStatus
from http.client import HTTPException
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Protocol

from asn1crypto import cms, parser, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from evidence.errors import TimestampError
from evidence.hashing import DIGEST_SIZE, sha256
from evidence.timestamp import TimestampInfo, verify_timestamp
from gateway.errors import TimestampAuthorityError

DEFAULT_POLICY_OID = "1.3.6.1.4.1.32473.3161.1"
"""The TSA policy a token names unless configured otherwise: a placeholder.

It lies under 1.3.6.1.4.1.32473, the private enterprise number RFC 5612 reserves for
documentation and examples, so it can never collide with a real policy. A hospital that
publishes a time-stamping policy configures the OID of that document instead.
"""

QUERY_TYPE = "application/timestamp-query"
"""The media type of a DER ``TimeStampReq`` sent over HTTP (RFC 3161 section 3.4)."""
REPLY_TYPE = "application/timestamp-reply"
"""The media type of a DER ``TimeStampResp`` sent over HTTP (RFC 3161 section 3.4)."""

# A TimeStampReq with a SHA-512 imprint and a nonce is about 100 bytes; anything near this
# size is not a time-stamp request. A reply carries two certificates: a few kilobytes.
MAX_REQUEST_SIZE = 16 * 1024
MAX_REPLY_SIZE = 256 * 1024

# The imprint algorithms a request may use, with their digest sizes.
_IMPRINT_SIZES = {
    "2.16.840.1.101.3.4.2.1": 32,  # SHA-256
    "2.16.840.1.101.3.4.2.2": 48,  # SHA-384
    "2.16.840.1.101.3.4.2.3": 64,  # SHA-512
}
_SHA256_OID = "2.16.840.1.101.3.4.2.1"
_DOTTED_OID = re.compile(r"[0-2](?:\.(?:0|[1-9][0-9]*))+")
# What asn1crypto raises on bytes it cannot decode; it decodes lazily, on field access.
_DECODE_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError)

_log = logging.getLogger(__name__)


class TimeStamper(Protocol):
    """Anything that turns a SHA-256 digest into a verified RFC 3161 ``TimeStampResp``."""

    def stamp(self, digest: bytes) -> bytes:
        """Return a DER ``TimeStampResp`` for ``digest`` that verifies under the trusted CA."""
        ...


def build_request(
    digest: bytes,
    *,
    nonce: int | None = None,
    cert_req: bool = True,
    policy_oid: str | None = None,
) -> bytes:
    """Build a DER ``TimeStampReq`` for a SHA-256 ``digest`` (RFC 3161 section 2.4.1)."""
    _check_digest(digest)
    request: dict[str, Any] = {
        "version": "v1",
        "message_imprint": {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": digest},
        "cert_req": cert_req,
    }
    if policy_oid is not None:
        request["req_policy"] = _check_policy(policy_oid)
    if nonce is not None:
        request["nonce"] = nonce
    return bytes(tsp.TimeStampReq(request).dump())


@dataclass(frozen=True)
class _Request:
    """The parts of an accepted ``TimeStampReq`` the token echoes."""

    algorithm_oid: str
    digest: bytes
    nonce: int | None
    cert_req: bool


@dataclass(frozen=True)
class _Refusal:
    """Why a request gets a rejection: an RFC 3161 PKIFailureInfo bit name and a sentence."""

    fail_info: str
    text: str


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
        _check_policy(self.policy_oid)
        if not isinstance(self.accuracy_seconds, int) or self.accuracy_seconds < 1:
            raise TimestampAuthorityError("the TSA accuracy must be a whole number of seconds >= 1")

    def respond(self, request_der: bytes) -> bytes:
        """Answer a DER ``TimeStampReq`` with a DER ``TimeStampResp``; never raises.

        A request this TSA cannot honour gets status rejection with the RFC 3161 failure
        reason: badDataFormat (not a request, or a digest of the wrong size), badRequest
        (unsupported version), badAlg, unacceptedPolicy, unacceptedExtension; a clock that
        fails gets systemFailure.
        """
        request = _read_request(request_der, self.policy_oid)
        if isinstance(request, _Refusal):
            _log.info("time-stamp request refused: %s", request.text)
            return _reply(_status("rejection", request), None)
        try:
            token = self._sign(request)
        except TimestampAuthorityError as exc:
            _log.error("time-stamp request failed: %s", exc)
            return _reply(_status("rejection", _Refusal("system_failure", str(exc))), None)
        return _reply(_status("granted"), token)

    def stamp(self, digest: bytes) -> bytes:
        """Stamp a SHA-256 ``digest``; return the ``TimeStampResp`` after verifying it.

        Verifying each token as a court would catches a TSA that cannot produce verifiable
        tokens (a certificate without the timeStamping usage, a clock outside the
        certificate's validity) when it stamps, not years later in court.
        """
        nonce = secrets.randbits(64)
        reply = self.respond(build_request(digest, nonce=nonce))
        _verified(
            reply, digest, nonce=nonce, where="the gateway's TSA", trusted_ca=self.ca_certificate
        )
        return reply

    def _sign(self, request: _Request) -> bytes:
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

    def _tst_info(self, request: _Request) -> bytes:
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


class TsaClient:
    """A client for an external RFC 3161 TSA reached over HTTP(S), e.g. the national PKI's."""

    def __init__(
        self,
        url: str,
        trusted_ca: x509.Certificate | Sequence[x509.Certificate],
        *,
        certificates: Sequence[x509.Certificate] = (),
        timeout: float = 10.0,
        policy_oid: str | None = None,
    ) -> None:
        """Use the TSA at ``url``; its tokens must chain to ``trusted_ca``.

        ``certificates`` supplies the TSA certificate or intermediates if the TSA does not
        include them; ``policy_oid`` asks for (and then requires) a particular TSA policy.
        """
        parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise TimestampAuthorityError(f"TSA URL {url!r} is not an http:// or https:// URL")
        if timeout <= 0:
            raise TimestampAuthorityError(f"TSA timeout must be positive, not {timeout}")
        self.url = url
        self._trusted_ca: tuple[x509.Certificate, ...] = (
            (trusted_ca,) if isinstance(trusted_ca, x509.Certificate) else tuple(trusted_ca)
        )
        self._certificates = tuple(certificates)
        self._timeout = timeout
        self._policy_oid = None if policy_oid is None else _check_policy(policy_oid)

    def stamp(self, digest: bytes) -> bytes:
        """Ask the TSA to stamp a SHA-256 ``digest``; return its verified ``TimeStampResp``."""
        nonce = secrets.randbits(64)
        query = build_request(digest, nonce=nonce, policy_oid=self._policy_oid)
        reply = self._post(query)
        _verified(
            reply,
            digest,
            nonce=nonce,
            where=f"the TSA at {self.url}",
            trusted_ca=self._trusted_ca,
            certificates=self._certificates,
            policy_oid=self._policy_oid,
        )
        return reply

    def _post(self, query: bytes) -> bytes:
        """POST ``query`` and return the reply body, turning every transport failure into ours."""
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            self.url,
            data=query,
            headers={"Content-Type": QUERY_TYPE, "Accept": REPLY_TYPE},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as answer:  # noqa: S310
                content_type = answer.headers.get_content_type()
                body = answer.read(MAX_REPLY_SIZE + 1)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise TimestampAuthorityError(
                f"the TSA at {self.url} answered HTTP {exc.code} {exc.reason}"
            ) from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise self._timed_out() from exc
            raise TimestampAuthorityError(
                f"cannot reach the TSA at {self.url}: {exc.reason}"
            ) from exc
        except TimeoutError as exc:
            raise self._timed_out() from exc
        except (OSError, HTTPException) as exc:
            raise TimestampAuthorityError(
                f"the connection to the TSA at {self.url} failed: {exc}"
            ) from exc
        if content_type != REPLY_TYPE:
            raise TimestampAuthorityError(
                f"the TSA at {self.url} answered {content_type}, not {REPLY_TYPE}"
            )
        if len(body) > MAX_REPLY_SIZE:
            raise TimestampAuthorityError(
                f"the TSA at {self.url} sent a reply larger than {MAX_REPLY_SIZE} bytes"
            )
        return bytes(body)

    def _timed_out(self) -> TimestampAuthorityError:
        """The error for a TSA that did not answer in time."""
        return TimestampAuthorityError(
            f"the TSA at {self.url} did not answer within {self._timeout:g} s"
        )


class TsaHttpServer:
    """Serve a ``TimeStampAuthority`` over HTTP (RFC 3161 section 3.4) from a background thread.

    POST ``application/timestamp-query`` to any path; the answer is
    ``application/timestamp-reply``. Listens on IPv4. Use as a context manager, or call
    ``start`` and ``close``.
    """

    def __init__(self, tsa: TimeStampAuthority, host: str = "127.0.0.1", port: int = 0) -> None:
        """Bind ``host:port`` (port 0 picks a free one); serving begins with ``start``."""
        try:
            self._httpd = _TsaHttpd((host, port), tsa)
        except OSError as exc:
            raise TimestampAuthorityError(
                f"cannot listen for time-stamp requests on {host}:{port}: {exc}"
            ) from exc
        # A short poll interval lets close() return promptly.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.1,), name="tsa-http", daemon=True
        )

    @property
    def url(self) -> str:
        """The URL clients POST their requests to."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> TsaHttpServer:
        """Start answering requests in a daemon thread."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop answering and release the port."""
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()

    def __enter__(self) -> TsaHttpServer:
        """Start the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.close()


class _TsaHttpd(ThreadingHTTPServer):
    """A threading HTTP server that holds the TSA its handlers answer with."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], tsa: TimeStampAuthority) -> None:
        self.tsa = tsa
        super().__init__(address, _TsaRequestHandler)


class _TsaRequestHandler(BaseHTTPRequestHandler):
    """Answers POSTed time-stamp queries; anything else gets the matching HTTP error."""

    server: _TsaHttpd

    def do_POST(self) -> None:
        """Read one ``TimeStampReq`` and send the TSA's ``TimeStampResp``."""
        if self.headers.get_content_type() != QUERY_TYPE:
            self.send_error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"send {QUERY_TYPE}")
            return
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            self.send_error(HTTPStatus.LENGTH_REQUIRED)
            return
        try:
            length = int(length_header)
        except ValueError:
            length = -1
        if length < 0:
            self.send_error(HTTPStatus.BAD_REQUEST, "invalid Content-Length")
            return
        if length > MAX_REQUEST_SIZE:
            self.send_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            return
        body = self.rfile.read(length)
        if len(body) != length:
            self.send_error(HTTPStatus.BAD_REQUEST, "request body shorter than Content-Length")
            return
        reply = self.server.tsa.respond(body)
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", REPLY_TYPE)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        """Log requests through ``logging`` rather than to stderr."""
        _log.debug("%s %s", self.address_string(), format % args)


# --- helpers -------------------------------------------------------------------------------


def _read_request(request_der: object, policy_oid: str) -> _Request | _Refusal:
    """Decode and check a ``TimeStampReq``; say why it is refused if it is."""
    if not isinstance(request_der, bytes | bytearray):
        return _Refusal("bad_data_format", "the request is not bytes")
    if len(request_der) > MAX_REQUEST_SIZE:
        return _Refusal("bad_data_format", f"the request is larger than {MAX_REQUEST_SIZE} bytes")
    try:
        request = tsp.TimeStampReq.load(bytes(request_der), strict=True)
        version = request["version"].native
        algorithm = request["message_imprint"]["hash_algorithm"]
        algorithm_oid = str(algorithm["algorithm"].dotted)
        parameters = bytes(algorithm["parameters"].dump())
        digest = bytes(request["message_imprint"]["hashed_message"].native)
        policy = request["req_policy"]
        requested_policy = None if policy.native is None else str(policy.dotted)
        nonce = request["nonce"].native
        cert_req = bool(request["cert_req"].native)
        has_extensions = request["extensions"].native is not None
    except _DECODE_ERRORS as exc:
        return _Refusal("bad_data_format", f"the request is not a DER TimeStampReq: {exc}")
    if version != "v1":
        return _Refusal("bad_request", f"request version {version} is not supported; use v1")
    if algorithm_oid not in _IMPRINT_SIZES or parameters not in (b"", b"\x05\x00"):
        return _Refusal(
            "bad_alg", f"imprint algorithm {algorithm_oid} is not SHA-256, SHA-384 or SHA-512"
        )
    if len(digest) != _IMPRINT_SIZES[algorithm_oid]:
        return _Refusal(
            "bad_data_format",
            f"the imprint has {len(digest)} bytes, not the {_IMPRINT_SIZES[algorithm_oid]} "
            "its algorithm produces",
        )
    if requested_policy is not None and requested_policy != policy_oid:
        return _Refusal(
            "unaccepted_policy",
            f"policy {requested_policy} is not offered; this TSA uses {policy_oid}",
        )
    if has_extensions:
        return _Refusal("unaccepted_extensions", "this TSA supports no request extensions")
    return _Request(algorithm_oid, digest, None if nonce is None else int(nonce), cert_req)


def _status(status: str, refusal: _Refusal | None = None) -> bytes:
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


def _verified(
    reply: bytes,
    digest: bytes,
    *,
    nonce: int,
    where: str,
    trusted_ca: x509.Certificate | Sequence[x509.Certificate],
    certificates: Sequence[x509.Certificate] = (),
    policy_oid: str | None = None,
) -> TimestampInfo:
    """Verify a reply as a court would, turning any failure into ``TimestampAuthorityError``."""
    try:
        return verify_timestamp(
            reply,
            digest,
            trusted_ca,
            certificates=certificates,
            expected_nonce=nonce,
            expected_policy=policy_oid,
        )
    except TimestampError as exc:
        raise TimestampAuthorityError(
            f"{where} gave no usable token for {digest.hex()}: {exc}"
        ) from exc


def _check_digest(digest: object) -> None:
    """A digest to stamp must be the 32 bytes of a SHA-256."""
    if not isinstance(digest, bytes) or len(digest) != DIGEST_SIZE:
        raise TimestampAuthorityError(
            f"a digest to time-stamp must be {DIGEST_SIZE} bytes of SHA-256, not {digest!r:.80}"
        )


def _check_policy(policy_oid: object) -> str:
    """Return ``policy_oid`` if it is a dotted object identifier."""
    if not isinstance(policy_oid, str) or not _DOTTED_OID.fullmatch(policy_oid):
        raise TimestampAuthorityError(
            f"TSA policy {policy_oid!r} is not a dotted object identifier such as 1.2.3.4"
        )
    return policy_oid


def _asn1_name(name: x509.Name) -> Any:
    """Carry a cryptography ``Name`` into asn1crypto by its DER, unchanged."""
    return asn1_x509.Name.load(name.public_bytes())


def _spki(certificate: x509.Certificate) -> bytes:
    """Return a certificate's DER SubjectPublicKeyInfo."""
    return certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
