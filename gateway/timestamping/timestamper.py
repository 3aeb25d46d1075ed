"""The time-stamping seam: what the ledger, the export and the daemon need of a TSA."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from cryptography import x509

from evidence.errors import TimestampError
from evidence.timestamp import TimestampInfo, verify_timestamp
from gateway.errors import TimestampAuthorityError


class Timestamper(Protocol):
    """Anything that turns a SHA-256 digest into a verified RFC 3161 ``TimeStampResp``: the
    gateway's own authority or a client of another (the national PKI's)."""

    def stamp(self, digest: bytes) -> bytes:
        """Return a DER ``TimeStampResp`` for ``digest`` that verifies under ``trust_anchors``;
        TimestampAuthorityError if none can be had."""
        ...

    @property
    def trust_anchors(self) -> tuple[x509.Certificate, ...]:
        """The CAs its tokens chain to: what a court is given to check them."""
        ...

    @property
    def certificates(self) -> tuple[x509.Certificate, ...]:
        """The TSA's certificate (and any intermediates) to keep beside its tokens."""
        ...


def verified(
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


