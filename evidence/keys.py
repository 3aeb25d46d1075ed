"""The keys of the system: badge identity, custodian (HPKE) key and gateway signing key.

Private keys are PKCS#8 PEM and public keys SubjectPublicKeyInfo PEM, so ``openssl pkey``
reads every one of them. The custodian key may hold two blocks (X25519, then ML-KEM-768)
for the hybrid post-quantum suite. A badge key is Ed25519, or ECDSA P-256 for a key held
in a TPM or secure element (decision 1901); both sign in 64 bytes (P-256 as r || s).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hpke, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mlkem, x25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from evidence.errors import DecryptionError, KeyFileError, PassphraseError, VerificationError
from evidence.identifiers import validate_badge_id
from evidence.keyfiles import (
    read_public_file,
    read_secret_file,
    write_public_file,
    write_secret_file,
)

SignatureAlgorithm = Literal["ed25519", "ecdsa-p256"]
"""How a badge key signs: the ``algorithm`` its enrolment records."""
SIGNATURE_BYTES = 64
"""Every signature's size: Ed25519's, and P-256's r || s (32 bytes each, big-endian)."""
_P256_POINT_BYTES = 65
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]+)-----\n[A-Za-z0-9+/=\n]*-----END \1-----\n?")


def signed_message(context: str, payload: bytes) -> bytes:
    """Return the bytes actually signed: a context label, a zero byte, then the payload.

    The label keeps a signature made for one purpose (a segment header) from being
    accepted for another (a receipt).
    """
    return context.encode("ascii") + b"\x00" + payload


class HpkeSuite(enum.Enum):
    """The HPKE (RFC 9180) suites a custodian key can use; the value is what headers record."""

    X25519 = "DHKEM(X25519,HKDF-SHA256)/HKDF-SHA256/ChaCha20Poly1305"
    MLKEM768_X25519 = "MLKEM768-X25519/HKDF-SHA256/ChaCha20Poly1305"

    def primitive(self) -> hpke.Suite:
        """Return the ``cryptography`` suite object."""
        kem = hpke.KEM.X25519 if self is HpkeSuite.X25519 else hpke.KEM.MLKEM768_X25519
        return hpke.Suite(kem, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)

    @classmethod
    def from_name(cls, name: str) -> HpkeSuite:
        """Return the suite whose recorded name is ``name``."""
        for suite in cls:
            if suite.value == name:
                return suite
        raise VerificationError(f"unknown encryption suite {name!r}")


def _pem_blocks(data: bytes, path: Path) -> list[bytes]:
    blocks = [match.group(0) for match in _PEM_BLOCK.finditer(data)]
    if not blocks or _PEM_BLOCK.sub(b"", data).strip():
        raise KeyFileError(f"key file {path} is not in PEM format")
    return blocks


def _load_private(block: bytes, path: Path, passphrase: bytes | None) -> object:
    try:
        return serialization.load_pem_private_key(block, password=passphrase)
    except TypeError:
        if passphrase is None:
            raise PassphraseError(
                f"key file {path} is passphrase-protected; give its passphrase"
            ) from None
        raise KeyFileError(
            f"key file {path} is not passphrase-protected; give no passphrase"
        ) from None
    except ValueError:
        if passphrase is not None:
            raise PassphraseError(f"the passphrase does not unlock key file {path}") from None
        raise KeyFileError(f"key file {path} does not hold a readable private key") from None


def _load_public(block: bytes, path: Path) -> object:
    try:
        return serialization.load_pem_public_key(block)
    except ValueError:
        raise KeyFileError(f"key file {path} does not hold a readable public key") from None


def _private_pem(
    key: ed25519.Ed25519PrivateKey | x25519.X25519PrivateKey | mlkem.MLKEM768PrivateKey,
    passphrase: bytes | None,
) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def _public_pem(
    key: ed25519.Ed25519PublicKey
    | x25519.X25519PublicKey
    | mlkem.MLKEM768PublicKey
    | ec.EllipticCurvePublicKey,
) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _custodian_parts(
    keys: Sequence[object], classic_type: type, quantum_type: type, path: Path
) -> tuple[Any, Any]:
    """Split a custodian key file's keys into its X25519 key and optional ML-KEM-768 key."""
    if len(keys) == 1 and isinstance(keys[0], classic_type):
        return keys[0], None
    if len(keys) == 2 and isinstance(keys[0], classic_type) and isinstance(keys[1], quantum_type):
        return keys[0], keys[1]
    raise KeyFileError(
        f"key file {path} must hold an X25519 key, optionally followed by an ML-KEM-768 key"
    )


def _suite_for(quantum_key: object | None) -> HpkeSuite:
    return HpkeSuite.X25519 if quantum_key is None else HpkeSuite.MLKEM768_X25519


@dataclass(frozen=True)
class SigningPublicKey:
    """An Ed25519 public key of a badge or of the gateway: checks signatures."""

    key: ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey

    def __post_init__(self) -> None:
        if isinstance(self.key, ec.EllipticCurvePublicKey) and not isinstance(
            self.key.curve, ec.SECP256R1
        ):
            raise KeyFileError(f"an ECDSA badge key must be on P-256, not {self.key.curve.name}")

    def __reduce__(self) -> tuple[object, tuple[bytes]]:
        """Pickle as the raw bytes (the gateway hands badges to its store process)."""
        return SigningPublicKey.from_raw, (self.raw,)

    @property
    def algorithm(self) -> SignatureAlgorithm:
        """``ed25519`` or ``ecdsa-p256``."""
        return "ed25519" if isinstance(self.key, ed25519.Ed25519PublicKey) else "ecdsa-p256"

    @property
    def raw(self) -> bytes:
        """The raw public key: 32 bytes (Ed25519) or the 65-byte uncompressed point (P-256)."""
        if isinstance(self.key, ed25519.Ed25519PublicKey):
            return self.key.public_bytes_raw()
        return self.key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    @property
    def ed25519_key(self) -> ed25519.Ed25519PublicKey:
        """The key as Ed25519 (the gateway's key always is); KeyFileError for a P-256 key."""
        if not isinstance(self.key, ed25519.Ed25519PublicKey):
            raise KeyFileError("this is a P-256 key, where an Ed25519 key is needed")
        return self.key

    def pem(self) -> bytes:
        """The key as SubjectPublicKeyInfo PEM."""
        return _public_pem(self.key)

    def verify(self, signature: bytes, context: str, payload: bytes, what: str) -> None:
        """Raise VerificationError unless ``signature`` signs ``payload`` under ``context``."""
        message = signed_message(context, payload)
        try:
            if isinstance(self.key, ed25519.Ed25519PublicKey):
                self.key.verify(signature, message)
            elif len(signature) != SIGNATURE_BYTES:
                raise InvalidSignature
            else:
                r, s = (int.from_bytes(signature[at : at + 32], "big") for at in (0, 32))
                self.key.verify(
                    encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256())
                )
        except InvalidSignature:
            raise VerificationError(f"{what}: the signature does not verify") from None

    @classmethod
    def from_raw(cls, raw: bytes) -> SigningPublicKey:
        """Build a key from its raw bytes: 32 (Ed25519) or a 65-byte P-256 point."""
        if len(raw) == 32:
            return cls(ed25519.Ed25519PublicKey.from_public_bytes(raw))
        if len(raw) == _P256_POINT_BYTES and raw[0] == 4:
            try:
                return cls(ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw))
            except ValueError:
                raise KeyFileError("the P-256 public key is not a point on the curve") from None
        raise KeyFileError(
            f"a badge public key has 32 bytes (Ed25519) or 65 (P-256), not {len(raw)}"
        )

    @classmethod
    def from_pem(cls, data: bytes, path: Path) -> SigningPublicKey:
        """Parse a SubjectPublicKeyInfo PEM Ed25519 or P-256 key (``path`` names it in errors)."""
        key = _load_public(_pem_blocks(data, path)[0], path)
        if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
            return cls(key)
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise KeyFileError(f"key file {path} does not hold an Ed25519 or P-256 public key")
        return cls(key)

    @classmethod
    def load(cls, path: Path) -> SigningPublicKey:
        """Read a public key file."""
        return cls.from_pem(read_public_file(path), path)

    def save(self, path: Path) -> None:
        """Write the key as a PEM file."""
        write_public_file(path, self.pem())


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 private key: a badge's identity or the gateway's signing key."""

    key: ed25519.Ed25519PrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        """Create a new random key."""
        return cls(ed25519.Ed25519PrivateKey.generate())

    @property
    def public_key(self) -> SigningPublicKey:
        """The matching public key."""
        return SigningPublicKey(self.key.public_key())

    def sign(self, context: str, payload: bytes) -> bytes:
        """Sign ``payload`` under the purpose label ``context``."""
        return self.key.sign(signed_message(context, payload))

    def save(self, path: Path) -> None:
        """Write the key as a PKCS#8 PEM file with mode 0600."""
        write_secret_file(path, _private_pem(self.key, None))

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        """Read a key file written by :meth:`save`."""
        key = _load_private(_pem_blocks(read_secret_file(path), path)[0], path, None)
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise KeyFileError(f"key file {path} does not hold an Ed25519 private key")
        return cls(key)


class Signer(Protocol):
    """What signs as a badge: its key file's key (SigningKey) or a key in its hardware."""

    @property
    def public_key(self) -> SigningPublicKey:
        """The public key the signatures verify under."""
        ...

    def sign(self, context: str, payload: bytes) -> bytes:
        """A 64-byte signature over ``payload`` under the purpose label ``context``."""
        ...


@dataclass(frozen=True)
class BadgeIdentity:
    """A badge's id together with the signer of its key (a key file's, or hardware's)."""

    badge_id: str
    signing_key: Signer

    def __post_init__(self) -> None:
        validate_badge_id(self.badge_id)

    @classmethod
    def generate(cls, badge_id: str) -> BadgeIdentity:
        """Create a new identity for ``badge_id``."""
        return cls(badge_id, SigningKey.generate())


@dataclass(frozen=True)
class CustodianPublicKey:
    """The hospital custodian's HPKE public key: all a badge needs to encrypt footage."""

    suite: HpkeSuite
    x25519_key: x25519.X25519PublicKey
    mlkem_key: mlkem.MLKEM768PublicKey | None = None

    def _recipient(self) -> x25519.X25519PublicKey | hpke.MLKEM768X25519PublicKey:
        if self.mlkem_key is None:
            return self.x25519_key
        return hpke.MLKEM768X25519PublicKey(self.mlkem_key, self.x25519_key)

    def encrypt(self, plaintext: bytes, info: bytes) -> bytes:
        """HPKE single-shot seal (base mode); returns the encapsulated key then the ciphertext."""
        return self.suite.primitive().encrypt(plaintext, self._recipient(), info=info)

    def pem(self) -> bytes:
        """The key as one (X25519) or two (X25519, ML-KEM-768) SubjectPublicKeyInfo blocks."""
        blocks = [_public_pem(self.x25519_key)]
        if self.mlkem_key is not None:
            blocks.append(_public_pem(self.mlkem_key))
        return b"".join(blocks)

    def save(self, path: Path) -> None:
        """Write the public key file."""
        write_public_file(path, self.pem())

    @classmethod
    def from_pem(cls, data: bytes, path: Path) -> CustodianPublicKey:
        """Parse a custodian public key file's contents (``path`` names it in errors)."""
        keys = [_load_public(block, path) for block in _pem_blocks(data, path)]
        classic, quantum = _custodian_parts(
            keys, x25519.X25519PublicKey, mlkem.MLKEM768PublicKey, path
        )
        return cls(_suite_for(quantum), classic, quantum)

    @classmethod
    def load(cls, path: Path) -> CustodianPublicKey:
        """Read a custodian public key file."""
        return cls.from_pem(read_public_file(path), path)


@dataclass(frozen=True)
class CustodianPrivateKey:
    """The hospital custodian's HPKE private key: the only key that opens footage."""

    suite: HpkeSuite
    x25519_key: x25519.X25519PrivateKey
    mlkem_key: mlkem.MLKEM768PrivateKey | None = None

    @classmethod
    def generate(cls, suite: HpkeSuite = HpkeSuite.X25519) -> CustodianPrivateKey:
        """Create a new custodian key for ``suite``."""
        hybrid = suite is HpkeSuite.MLKEM768_X25519
        quantum = mlkem.MLKEM768PrivateKey.generate() if hybrid else None
        return cls(suite, x25519.X25519PrivateKey.generate(), quantum)

    @property
    def public_key(self) -> CustodianPublicKey:
        """The matching public key, to give to badges."""
        quantum = self.mlkem_key.public_key() if self.mlkem_key is not None else None
        return CustodianPublicKey(self.suite, self.x25519_key.public_key(), quantum)

    def decrypt(self, sealed: bytes, info: bytes, where: str) -> bytes:
        """Open an HPKE single-shot ciphertext; raise DecryptionError naming ``where``."""
        recipient: x25519.X25519PrivateKey | hpke.MLKEM768X25519PrivateKey = self.x25519_key
        if self.mlkem_key is not None:
            recipient = hpke.MLKEM768X25519PrivateKey(self.mlkem_key, self.x25519_key)
        try:
            return self.suite.primitive().decrypt(sealed, recipient, info=info)
        except Exception:  # cryptography raises InvalidTag, ValueError or others by cause
            raise DecryptionError(
                f"{where}: cannot be opened with this custodian key "
                "(wrong key, or the ciphertext or its header was altered)"
            ) from None

    def save(self, path: Path, passphrase: bytes | None = None) -> None:
        """Write the key (mode 0600), encrypted under ``passphrase`` when one is given."""
        blocks = [_private_pem(self.x25519_key, passphrase)]
        if self.mlkem_key is not None:
            blocks.append(_private_pem(self.mlkem_key, passphrase))
        write_secret_file(path, b"".join(blocks))

    @classmethod
    def load(cls, path: Path, passphrase: bytes | None = None) -> CustodianPrivateKey:
        """Read a custodian key file, unlocking it with ``passphrase`` if it is protected."""
        blocks = _pem_blocks(read_secret_file(path), path)
        keys = [_load_private(block, path, passphrase) for block in blocks]
        classic, quantum = _custodian_parts(
            keys, x25519.X25519PrivateKey, mlkem.MLKEM768PrivateKey, path
        )
        return cls(_suite_for(quantum), classic, quantum)
