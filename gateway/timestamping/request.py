"""RFC 3161 time-stamp requests: building one, and reading and checking one a TSA received."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from asn1crypto import tsp

from evidence.hashing import DIGEST_SIZE
from gateway.errors import TimestampAuthorityError

QUERY_TYPE = "application/timestamp-query"
"""The media type of a DER ``TimeStampReq`` sent over HTTP (RFC 3161 section 3.4)."""
REPLY_TYPE = "application/timestamp-reply"
"""The media type of a DER ``TimeStampResp`` sent over HTTP (RFC 3161 section 3.4)."""

# A TimeStampReq with a SHA-512 imprint and a nonce is about 100 bytes; anything near this
# size is not a time-stamp request. A reply carries two certificates: a few kilobytes.
MAX_REQUEST_SIZE = 16 * 1024
MAX_REPLY_SIZE = 256 * 1024

# The imprint algorithms a request may use, with their digest sizes.
IMPRINT_SIZES = {
    "2.16.840.1.101.3.4.2.1": 32,  # SHA-256
    "2.16.840.1.101.3.4.2.2": 48,  # SHA-384
    "2.16.840.1.101.3.4.2.3": 64,  # SHA-512
}
_DOTTED_OID = re.compile(r"[0-2](?:\.(?:0|[1-9][0-9]*))+")
# What asn1crypto raises on bytes it cannot decode; it decodes lazily, on field access.
_DECODE_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError)


def build_request(
    digest: bytes,
    *,
    nonce: int | None = None,
    cert_req: bool = True,
    policy_oid: str | None = None,
) -> bytes:
    """Build a DER ``TimeStampReq`` for a SHA-256 ``digest`` (RFC 3161 section 2.4.1)."""
    check_digest(digest)
    request: dict[str, Any] = {
        "version": "v1",
        "message_imprint": {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": digest},
        "cert_req": cert_req,
    }
    if policy_oid is not None:
        request["req_policy"] = check_policy(policy_oid)
    if nonce is not None:
        request["nonce"] = nonce
    return bytes(tsp.TimeStampReq(request).dump())


@dataclass(frozen=True)
class AcceptedRequest:
    """The parts of an accepted ``TimeStampReq`` the token echoes."""

    algorithm_oid: str
    digest: bytes
    nonce: int | None
    cert_req: bool


@dataclass(frozen=True)
class Refusal:
    """Why a request gets a rejection: an RFC 3161 PKIFailureInfo bit name and a sentence."""

    fail_info: str
    text: str


def read_request(request_der: object, policy_oid: str) -> AcceptedRequest | Refusal:
    """Decode and check a ``TimeStampReq`` for a TSA under ``policy_oid``; say why it is
    refused if it is."""
    if not isinstance(request_der, bytes | bytearray):
        return Refusal("bad_data_format", "the request is not bytes")
    if len(request_der) > MAX_REQUEST_SIZE:
        return Refusal("bad_data_format", f"the request is larger than {MAX_REQUEST_SIZE} bytes")
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
        return Refusal("bad_data_format", f"the request is not a DER TimeStampReq: {exc}")
    if version != "v1":
        return Refusal("bad_request", f"request version {version} is not supported; use v1")
    if algorithm_oid not in IMPRINT_SIZES or parameters not in (b"", b"\x05\x00"):
        return Refusal(
            "bad_alg", f"imprint algorithm {algorithm_oid} is not SHA-256, SHA-384 or SHA-512"
        )
    if len(digest) != IMPRINT_SIZES[algorithm_oid]:
        return Refusal(
            "bad_data_format",
            f"the imprint has {len(digest)} bytes, not the {IMPRINT_SIZES[algorithm_oid]} "
            "its algorithm produces",
        )
    if requested_policy is not None and requested_policy != policy_oid:
        return Refusal(
            "unaccepted_policy",
            f"policy {requested_policy} is not offered; this TSA uses {policy_oid}",
        )
    if has_extensions:
        return Refusal("unaccepted_extensions", "this TSA supports no request extensions")
    return AcceptedRequest(algorithm_oid, digest, None if nonce is None else int(nonce), cert_req)


def check_digest(digest: object) -> None:
    """A digest to stamp must be the 32 bytes of a SHA-256."""
    if not isinstance(digest, bytes) or len(digest) != DIGEST_SIZE:
        raise TimestampAuthorityError(
            f"a digest to time-stamp must be {DIGEST_SIZE} bytes of SHA-256, not {digest!r:.80}"
        )


def check_policy(policy_oid: object) -> str:
    """Return ``policy_oid`` if it is a dotted object identifier."""
    if not isinstance(policy_oid, str) or not _DOTTED_OID.fullmatch(policy_oid):
        raise TimestampAuthorityError(
            f"TSA policy {policy_oid!r} is not a dotted object identifier such as 1.2.3.4"
        )
    return policy_oid


