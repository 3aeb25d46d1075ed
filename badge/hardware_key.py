"""A badge key held in a PKCS#11 token (a TPM 2.0, a secure element; SoftHSM2 in tests).

The key is ECDSA P-256, made inside the token, marked sensitive and not extractable, so it
signs without ever existing outside the hardware (decision 1901). Each signature is
ECDSA over SHA-256 of the same labelled message an Ed25519 key signs, as r || s (64 bytes),
the form PKCS#11 returns. One session serves every thread, one signature at a time.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import pkcs11
from asn1crypto.core import OctetString
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.types import SignMixin
from pkcs11.util.ec import encode_named_curve_parameters

from badge.errors import EnrolmentError
from evidence.hashing import sha256
from evidence.keyfiles import read_secret_file
from evidence.keys import SigningPublicKey, signed_message

_P256 = "secp256r1"


@dataclass(frozen=True)
class TokenKey:
    """Where a hardware key lives: the PKCS#11 module, the token, the key's label, the PIN."""

    module: Path
    token_label: str
    key_label: str
    pin_file: Path

    def pin(self) -> str:
        """The user PIN, from a file only its owner can read."""
        return read_secret_file(self.pin_file).decode("utf-8").strip()


class HardwareSigner:
    """Signs as the badge with a non-exportable P-256 key in a PKCS#11 token."""

    def __init__(self, where: TokenKey, *, create: bool = False) -> None:
        """Open the token and find the key; with ``create``, make it there if it is absent.

        EnrolmentError if the module, token or key cannot be opened, or the key could be
        exported (then it would not be the hardware key the enrolment says it is).
        """
        self._lock = threading.Lock()
        try:
            token = pkcs11.lib(str(where.module)).get_token(token_label=where.token_label)
            self._session = _logged_in_session(token, create, where.pin())
            self._private = self._find_or_make(where.key_label, create)
        except pkcs11.PKCS11Error as error:
            raise EnrolmentError(
                f"the key {where.key_label!r} in token {where.token_label!r} "
                f"({where.module}) cannot be used: {type(error).__name__} {error}"
            ) from None
        if self._private[Attribute.EXTRACTABLE] or not self._private[Attribute.SENSITIVE]:
            raise EnrolmentError(
                f"the key {where.key_label!r} can be exported from its token; a badge key in "
                "hardware must be sensitive and not extractable"
            )
        self._public = SigningPublicKey.from_raw(_point(self._public_key(where.key_label)))

    def _find_or_make(self, label: str, create: bool) -> SignMixin:
        try:
            found: object = self._session.get_key(ObjectClass.PRIVATE_KEY, KeyType.EC, label=label)
        except pkcs11.NoSuchKey:
            if not create:
                raise
            found = self._make(label)
        if not isinstance(found, SignMixin):
            raise pkcs11.NoSuchKey(f"{label} cannot sign")
        return found

    def _make(self, label: str) -> pkcs11.PrivateKey:
        parameters = self._session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(_P256)}, local=True
        )
        _, private = parameters.generate_keypair(
            store=True,
            label=label,
            private_template={Attribute.EXTRACTABLE: False, Attribute.SENSITIVE: True},
        )
        return private

    def _public_key(self, label: str) -> bytes:
        key = self._session.get_key(ObjectClass.PUBLIC_KEY, KeyType.EC, label=label)
        return bytes(key[Attribute.EC_POINT])

    @property
    def public_key(self) -> SigningPublicKey:
        """The P-256 public key, as the token gives it."""
        return self._public

    def sign(self, context: str, payload: bytes) -> bytes:
        """ECDSA P-256 over SHA-256 of the labelled message, as r || s."""
        digest = sha256(signed_message(context, payload))
        with self._lock:
            return bytes(self._private.sign(digest, mechanism=Mechanism.ECDSA))

    def close(self) -> None:
        """Close the token session."""
        with self._lock:
            self._session.close()


def _logged_in_session(token: pkcs11.Token, rw: bool, pin: str) -> pkcs11.Session:
    """A session as the token's user; a login is the whole process's, so a second signer on
    the same token joins the first one's."""
    try:
        return token.open(rw=rw, user_pin=pin)
    except pkcs11.UserAlreadyLoggedIn:
        return token.open(rw=rw)


def _point(ec_point: bytes) -> bytes:
    """The uncompressed point: PKCS#11 gives it DER-wrapped in an OCTET STRING (some tokens
    give it bare)."""
    if len(ec_point) == 65 and ec_point[0] == 4:
        return ec_point
    return bytes(OctetString.load(ec_point).native)
