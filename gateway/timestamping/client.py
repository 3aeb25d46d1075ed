"""A client for an external RFC 3161 time-stamping authority reached over HTTP(S)."""

from __future__ import annotations

import secrets
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from http.client import HTTPException

from cryptography import x509

from gateway.errors import TimestampAuthorityError
from gateway.timestamping.request import (
    MAX_REPLY_SIZE,
    QUERY_TYPE,
    REPLY_TYPE,
    build_request,
    check_policy,
)
from gateway.timestamping.timestamper import verified


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
        self._policy_oid = None if policy_oid is None else check_policy(policy_oid)

    @property
    def trust_anchors(self) -> tuple[x509.Certificate, ...]:
        """The CAs the TSA's tokens must chain to."""
        return self._trusted_ca

    @property
    def certificates(self) -> tuple[x509.Certificate, ...]:
        """The TSA certificate or intermediates given beside its tokens (maybe none: then
        each token carries the TSA's own)."""
        return self._certificates

    def stamp(self, digest: bytes) -> bytes:
        """Ask the TSA to stamp a SHA-256 ``digest``; return its verified ``TimeStampResp``."""
        nonce = secrets.randbits(64)
        query = build_request(digest, nonce=nonce, policy_oid=self._policy_oid)
        reply = self._post(query)
        verified(
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


