"""Enrolment by public key: the one-time code, the badge's signed request, the sealed answer.

The badge makes its key itself and sends only the public half (decision 1900). The request
is proof of two things: possession of the key (the badge signs the request with it) and of
the one-time code (an HMAC keyed by the code's digest over the same bytes). The gateway's
answer is sealed (ChaCha20-Poly1305) under a key derived from the code's digest and the
gateway's nonce, with the request as associated data: only a holder of the code opens it,
and a badge knows the answer comes from the gateway that issued its code. So the exchange
needs no prior trust anchor and no secret ever crosses the network in the clear.
"""

from __future__ import annotations

import enum
import hmac
import os
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from evidence.canonical import CanonicalValue, decode_map, encode
from evidence.errors import EnrolmentProtocolError, EvidenceError
from evidence.hashing import sha256
from evidence.identifiers import validate_badge_id
from evidence.keys import Signer, SigningPublicKey

REQUEST_FORMAT = "medbadge.enrolment-request.v1"
ANSWER_FORMAT = "medbadge.enrolment-answer.v1"
REQUEST_CONTEXT = "medbadge enrolment request v1"
CODE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
"""RFC 4648 base32: no 0, 1, 8 or 9 to mistake for O, I, B or g."""
CODE_GROUPS = 4
CODE_GROUP_LENGTH = 4
NONCE_SIZE = 32
_CODE_LENGTH = CODE_GROUPS * CODE_GROUP_LENGTH
_AEAD_NONCE_SIZE = 12


class KeyOrigin(enum.StrEnum):
    """How a badge key was made: what the ledger records and ``evidence verify`` reports."""

    BADGE_GENERATED = "badge-generated"
    """Made by the badge's software in its own data directory; never left the badge."""
    BADGE_HARDWARE = "badge-hardware"
    """Made inside the badge's TPM or secure element and not exportable from it."""
    GATEWAY_GENERATED = "gateway-generated"
    """Made by the gateway and copied to the badge (enrolments before badge-born keys)."""

    @classmethod
    def parse(cls, text: object) -> KeyOrigin:
        """The origin named ``text``; EnrolmentProtocolError for anything else."""
        for origin in cls:
            if origin.value == text:
                return origin
        raise EnrolmentProtocolError(f"unknown key origin {str(text)[:40]!r}")


def new_code() -> str:
    """A fresh one-time code: 80 random bits as four groups of four base32 letters."""
    letters = "".join(secrets.choice(CODE_ALPHABET) for _ in range(_CODE_LENGTH))
    return "-".join(
        letters[start : start + CODE_GROUP_LENGTH]
        for start in range(0, _CODE_LENGTH, CODE_GROUP_LENGTH)
    )


def normalise_code(text: str) -> str:
    """The code as typed, without spaces or hyphens, upper case; checked for shape."""
    letters = "".join(text.split()).replace("-", "").upper()
    if len(letters) != _CODE_LENGTH or any(letter not in CODE_ALPHABET for letter in letters):
        raise EnrolmentProtocolError(
            f"an enrolment code is {CODE_GROUPS} groups of {CODE_GROUP_LENGTH} letters A-Z "
            "and digits 2-7, e.g. ABCD-EF23-GH45-JK67; check what was typed"
        )
    return letters


def code_digest(code: str) -> bytes:
    """The code's SHA-256 under a purpose label: what the gateway keeps, and the MAC key."""
    return sha256(b"medbadge enrolment code v1\x00" + normalise_code(code).encode("ascii"))


def fingerprint(key: SigningPublicKey) -> str:
    """SHA-256 of the raw public key in groups of four hex digits, as both sides show it."""
    digest = sha256(key.raw).hex()
    return " ".join(digest[start : start + 4] for start in range(0, len(digest), 4))


@dataclass(frozen=True)
class EnrolmentRequest:
    """A badge's request to enrol ``public_key``, bound to the gateway's nonce and the code."""

    badge_id: str
    public_key: SigningPublicKey
    key_origin: KeyOrigin
    nonce: bytes
    tls_csr: bytes
    """The PKCS#10 request (DER) for the badge's broker certificate, over its own TLS key."""
    code_proof: bytes
    signature: bytes
    body: bytes
    """The canonical bytes that the proof and the signature cover."""

    @classmethod
    def create(
        cls,
        badge_id: str,
        key: Signer,
        code: str,
        nonce: bytes,
        key_origin: KeyOrigin = KeyOrigin.BADGE_GENERATED,
        *,
        tls_csr: bytes,
    ) -> EnrolmentRequest:
        """The request a badge sends, signed by ``key`` and proving ``code``; ``tls_csr``
        asks for the badge's broker certificate (DER PKCS#10)."""
        body = encode(
            {
                "format": REQUEST_FORMAT,
                "badge_id": validate_badge_id(badge_id),
                "algorithm": key.public_key.algorithm,
                "public_key": key.public_key.raw,
                "key_origin": key_origin.value,
                "nonce": nonce,
                "tls_csr": tls_csr,
            }
        )
        proof = _code_proof(code_digest(code), body)
        signature = key.sign(REQUEST_CONTEXT, body + proof)
        return cls(badge_id, key.public_key, key_origin, nonce, tls_csr, proof, signature, body)

    def to_bytes(self) -> bytes:
        """The request as sent."""
        return encode(
            {"request": self.body, "code_proof": self.code_proof, "signature": self.signature}
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> EnrolmentRequest:
        """Parse a request and check it is signed by the key it names (proof of possession)."""
        try:
            outer = decode_map(data, "enrolment request")
            body = _bytes(outer, "request")
            fields = decode_map(body, "enrolment request body")
            if fields.get("format") != REQUEST_FORMAT:
                raise EnrolmentProtocolError(f"the request is not a {REQUEST_FORMAT} request")
            public_key = SigningPublicKey.from_raw(_bytes(fields, "public_key"))
            if fields.get("algorithm") != public_key.algorithm:
                raise EnrolmentProtocolError(
                    f"badge key algorithm {str(fields.get('algorithm'))[:20]!r} is not supported "
                    "or is not the named key's (ed25519 or ecdsa-p256)"
                )
            request = cls(
                badge_id=validate_badge_id(str(fields.get("badge_id"))),
                public_key=public_key,
                key_origin=KeyOrigin.parse(fields.get("key_origin")),
                nonce=_bytes(fields, "nonce"),
                tls_csr=_bytes(fields, "tls_csr"),
                code_proof=_bytes(outer, "code_proof"),
                signature=_bytes(outer, "signature"),
                body=body,
            )
        except EnrolmentProtocolError:
            raise
        except EvidenceError as error:
            raise EnrolmentProtocolError(f"the enrolment request is malformed: {error}") from None
        _check_signed(request)
        return request

    def proves(self, digest: bytes) -> bool:
        """Whether the request proves the code whose :func:`code_digest` is ``digest``."""
        return hmac.compare_digest(_code_proof(digest, self.body), self.code_proof)


def _check_signed(request: EnrolmentRequest) -> None:
    """Raise EnrolmentProtocolError unless the key the request names signed it."""
    try:
        request.public_key.verify(
            request.signature, REQUEST_CONTEXT, request.body + request.code_proof, "request"
        )
    except EvidenceError:
        raise EnrolmentProtocolError(
            "the enrolment request is not signed by the key it names, so the badge does not "
            "prove it holds that key; nothing was enrolled"
        ) from None


def _bytes(fields: dict[str, CanonicalValue], name: str) -> bytes:
    value = fields.get(name)
    if not isinstance(value, bytes):
        raise EnrolmentProtocolError(f"the enrolment request has no {name}")
    return value


def _code_proof(digest: bytes, body: bytes) -> bytes:
    return hmac.new(digest, b"medbadge enrolment code proof v1\x00" + body, "sha256").digest()


def _answer_key(digest: bytes, nonce: bytes) -> ChaCha20Poly1305:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=nonce, info=ANSWER_FORMAT.encode("ascii")
    ).derive(digest)
    return ChaCha20Poly1305(key)


def seal_answer(
    answer: dict[str, CanonicalValue], request: EnrolmentRequest, digest: bytes
) -> bytes:
    """The gateway's answer, readable only with the code and bound to ``request``."""
    nonce = os.urandom(_AEAD_NONCE_SIZE)
    plaintext = encode({"format": ANSWER_FORMAT, **answer})
    return nonce + _answer_key(digest, request.nonce).encrypt(nonce, plaintext, request.body)


def open_answer(sealed: bytes, request: EnrolmentRequest, code: str) -> dict[str, CanonicalValue]:
    """Open the gateway's answer to ``request``; EnrolmentProtocolError if it is not genuine."""
    cipher = _answer_key(code_digest(code), request.nonce)
    try:
        plaintext = cipher.decrypt(
            sealed[:_AEAD_NONCE_SIZE], sealed[_AEAD_NONCE_SIZE:], request.body
        )
        answer = decode_map(plaintext, "enrolment answer")
    except EvidenceError:
        raise EnrolmentProtocolError(
            "the gateway's answer is not a valid enrolment answer"
        ) from None
    except Exception:  # cryptography raises InvalidTag for a forged or altered answer
        raise EnrolmentProtocolError(
            "the gateway's answer does not open with this code: it was not made by the gateway "
            "that issued the code, or it was altered on the way"
        ) from None
    if answer.get("format") != ANSWER_FORMAT:
        raise EnrolmentProtocolError(f"the gateway's answer is not a {ANSWER_FORMAT} answer")
    return answer
