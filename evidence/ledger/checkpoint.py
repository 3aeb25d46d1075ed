"""Signed ledger checkpoints: C2SP tlog-checkpoint bodies inside C2SP signed notes (Ed25519).

A checkpoint names the log (origin), its size and its Merkle root. The gateway signs it as a
signed note (c2sp.org/signed-note): the text, a blank line, then one line per signature,
``— <key name> base64(key id || signature)``. Verifier keys travel as ``vkey`` strings,
``<name>+<hex key id>+base64(0x01 || public key)``, as golang.org/x/mod/sumdb/note prints them.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from evidence.errors import EncodingError, VerificationError
from evidence.hashing import DIGEST_SIZE, sha256

ED25519_SIGNATURE_TYPE = 0x01
"""The signed-note signature type byte for Ed25519."""

MAX_SIGNATURES = 100
"""More signature lines than this make a note malformed (the spec asks us to accept 16)."""

_SIGNATURE_PREFIX = "\u2014 "  # em dash, space
_KEY_ID_SIZE = 4
_ED25519_SIGNATURE_SIZE = 64
_MAX_TREE_SIZE = 2**64 - 1
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}", re.ASCII)
_KEY_ID_HEX = re.compile(r"[0-9a-f]{8}", re.ASCII)


def _name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a key name, or None if it can."""
    if not name:
        return "is empty"
    if "+" in name:
        return "contains '+'"
    if any(ch.isspace() for ch in name) or _CONTROL.search(name):
        return "contains a space or control character"
    return None


def _decode_base64(text: str) -> bytes | None:
    """Decode standard base64, refusing anything but its one canonical spelling."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        return None
    return raw if base64.b64encode(raw).decode("ascii") == text else None


def _encode_base64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _key_id(name: str, public_key: Ed25519PublicKey) -> bytes:
    """SHA-256(name || 0x0A || 0x01 || 32-byte public key)[:4], as signed-note recommends."""
    material = name.encode("utf-8") + b"\n" + bytes([ED25519_SIGNATURE_TYPE])
    return sha256(material + public_key.public_bytes_raw())[:_KEY_ID_SIZE]


@dataclass(frozen=True)
class NoteVerifier:
    """A trusted note key: a key name and the Ed25519 public key that signs under it."""

    name: str
    public_key: Ed25519PublicKey

    def __post_init__(self) -> None:
        """Refuse a key name the signed-note format cannot carry, or a non-Ed25519 key."""
        if (problem := _name_problem(self.name)) is not None:
            raise EncodingError(f"note key name {self.name!r} {problem}")
        if not isinstance(self.public_key, Ed25519PublicKey):
            raise EncodingError(f"note key {self.name!r} is not an Ed25519 public key")

    @property
    def key_id(self) -> bytes:
        """The 4-byte key id that prefixes this key's signatures."""
        return _key_id(self.name, self.public_key)

    def verify(self, text: bytes, signature: bytes) -> bool:
        """Return whether ``signature`` (without key id) is this key's signature of ``text``."""
        if len(signature) != _ED25519_SIGNATURE_SIZE:
            return False
        try:
            self.public_key.verify(signature, text)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class NoteSigner:
    """A note signing key: a key name and its Ed25519 private key."""

    name: str
    private_key: Ed25519PrivateKey = field(repr=False)

    def __post_init__(self) -> None:
        """Refuse a key name the signed-note format cannot carry, or a non-Ed25519 key."""
        if (problem := _name_problem(self.name)) is not None:
            raise EncodingError(f"note key name {self.name!r} {problem}")
        if not isinstance(self.private_key, Ed25519PrivateKey):
            raise EncodingError(f"note key {self.name!r} is not an Ed25519 private key")

    @property
    def key_id(self) -> bytes:
        """The 4-byte key id that prefixes this key's signatures."""
        return _key_id(self.name, self.private_key.public_key())

    def verifier(self) -> NoteVerifier:
        """Return the NoteVerifier that checks this signer's notes."""
        return NoteVerifier(self.name, self.private_key.public_key())

    def sign(self, text: bytes) -> bytes:
        """Return the Ed25519 signature of ``text`` (without key id)."""
        return self.private_key.sign(text)


def format_vkey(verifier: NoteVerifier) -> str:
    """Return the verifier key string ``name+hexkeyid+base64(0x01 || public key)``."""
    key = bytes([ED25519_SIGNATURE_TYPE]) + verifier.public_key.public_bytes_raw()
    return f"{verifier.name}+{verifier.key_id.hex()}+{_encode_base64(key)}"


def parse_vkey(vkey: str) -> NoteVerifier:
    """Parse a verifier key string; raise EncodingError if it is malformed or inconsistent."""
    parts = vkey.split("+", 2)  # names hold no '+', but base64 may
    if len(parts) != 3:
        raise EncodingError(f"verifier key {vkey!r} is not of the form name+keyid+key")
    name, key_id_hex, key_b64 = parts
    if not _KEY_ID_HEX.fullmatch(key_id_hex):
        raise EncodingError(f"verifier key {vkey!r} has a key id that is not 8 lowercase hex")
    key = _decode_base64(key_b64)
    if key is None or len(key) == 0:
        raise EncodingError(f"verifier key {vkey!r} has a key that is not canonical base64")
    if key[0] != ED25519_SIGNATURE_TYPE:
        raise EncodingError(f"verifier key {vkey!r} has unsupported signature type {key[0]:#04x}")
    if len(key) != 1 + 32:
        raise EncodingError(f"verifier key {vkey!r} holds {len(key) - 1} key bytes, not 32")
    try:
        public_key = Ed25519PublicKey.from_public_bytes(key[1:])
    except ValueError as error:
        raise EncodingError(f"verifier key {vkey!r} does not hold an Ed25519 key") from error
    verifier = NoteVerifier(name, public_key)
    if verifier.key_id.hex() != key_id_hex:
        raise EncodingError(
            f"verifier key {vkey!r} gives key id {key_id_hex}, but its name and key give "
            f"{verifier.key_id.hex()}"
        )
    return verifier


def sign_note(text: bytes, signers: Sequence[NoteSigner]) -> bytes:
    """Return ``text`` as a signed note carrying one signature line per signer, in order."""
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as error:
        raise EncodingError("note text to sign is not valid UTF-8") from error
    if not decoded.endswith("\n") or _CONTROL.search(decoded):
        raise EncodingError("note text to sign must end in a newline and hold no control bytes")
    if not signers:
        raise EncodingError("a signed note needs at least one signer")
    if len({(signer.name, signer.key_id) for signer in signers}) != len(signers):
        raise EncodingError("two signers of one note share a key name and key id")
    lines = [
        f"{_SIGNATURE_PREFIX}{signer.name} {_encode_base64(signer.key_id + signer.sign(text))}\n"
        for signer in signers
    ]
    return text + b"\n" + "".join(lines).encode("utf-8")


@dataclass(frozen=True)
class _SignatureLine:
    name: str
    key_id: bytes
    signature: bytes


def _split_note(note: bytes) -> tuple[bytes, list[_SignatureLine]]:
    """Split a signed note into its text and parsed signature lines, or raise if malformed."""
    try:
        decoded = note.decode("utf-8")
    except UnicodeDecodeError as error:
        raise VerificationError("the signed note is not valid UTF-8") from error
    if _CONTROL.search(decoded):
        raise VerificationError("the signed note holds a control character other than newline")
    split = decoded.rfind("\n\n")
    if split < 0:
        raise VerificationError("the signed note has no blank line before its signatures")
    text, block = decoded[: split + 1], decoded[split + 2 :]
    if not block.endswith("\n"):
        raise VerificationError("the signed note does not end in a complete signature line")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise VerificationError(f"the signed note has more than {MAX_SIGNATURES} signatures")
    return text.encode("utf-8"), [_parse_signature_line(n, line) for n, line in enumerate(lines)]


def _parse_signature_line(number: int, line: str) -> _SignatureLine:
    where = f"signature line {number + 1} of the signed note"
    if not line.startswith(_SIGNATURE_PREFIX):
        raise VerificationError(f"{where} does not start with an em dash and a space")
    name, _, encoded = line[len(_SIGNATURE_PREFIX) :].partition(" ")
    if (problem := _name_problem(name)) is not None:
        raise VerificationError(f"{where} has a key name that {problem}")
    raw = _decode_base64(encoded)
    if raw is None or len(raw) <= _KEY_ID_SIZE:
        raise VerificationError(f"{where} does not carry a base64 key id and signature")
    return _SignatureLine(name, raw[:_KEY_ID_SIZE], raw[_KEY_ID_SIZE:])


def open_note(note: bytes, verifiers: Sequence[NoteVerifier]) -> tuple[bytes, tuple[str, ...]]:
    """Verify a signed note against trusted keys; return its text and who signed it.

    Signatures by keys not in ``verifiers`` (by name and key id) are ignored, as the spec
    requires. Raise VerificationError if the note is malformed, if any signature by a trusted
    key fails, or if no trusted key signed it.
    """
    trusted: dict[tuple[str, bytes], NoteVerifier] = {}
    for verifier in verifiers:
        known = trusted.setdefault((verifier.name, verifier.key_id), verifier)
        if known.public_key != verifier.public_key:
            raise VerificationError(
                f"two trusted keys share the name {verifier.name!r} and key id "
                f"{verifier.key_id.hex()}"
            )
    text, lines = _split_note(note)
    signed_by: list[str] = []
    for line in lines:
        key = trusted.get((line.name, line.key_id))
        if key is None:
            continue
        if not key.verify(text, line.signature):
            raise VerificationError(
                f"the signature by {line.name}+{line.key_id.hex()} does not verify over the note"
            )
        if line.name not in signed_by:
            signed_by.append(line.name)
    if not signed_by:
        names = ", ".join(f"{v.name}+{v.key_id.hex()}" for v in trusted.values()) or "none"
        raise VerificationError(f"the signed note carries no signature by a trusted key ({names})")
    return text, tuple(signed_by)


@dataclass(frozen=True)
class Checkpoint:
    """A ledger tree head: the log's origin, its size and its Merkle root (tlog-checkpoint)."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Refuse values the checkpoint text format cannot carry."""
        for what, line in [("origin", self.origin)] + [("extension", e) for e in self.extensions]:
            if not line or "\n" in line or _CONTROL.search(line):
                raise EncodingError(f"checkpoint {what} {line!r} is empty or not a single line")
        if type(self.size) is not int or not 0 <= self.size <= _MAX_TREE_SIZE:
            raise EncodingError(f"checkpoint size {self.size!r} is not a tree size")
        if not isinstance(self.root, bytes) or len(self.root) != DIGEST_SIZE:
            raise EncodingError(f"checkpoint root is not a {DIGEST_SIZE}-byte SHA-256 digest")

    def body(self) -> bytes:
        """Return the note text: origin, decimal size, base64 root, extensions; each + '\\n'."""
        lines = [self.origin, str(self.size), _encode_base64(self.root), *self.extensions]
        return "".join(f"{line}\n" for line in lines).encode("utf-8")


def parse_checkpoint(text: bytes | str) -> Checkpoint:
    """Parse a checkpoint's note text; raise VerificationError saying which line is wrong."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as error:
            raise VerificationError("the checkpoint text is not valid UTF-8") from error
    if not text.endswith("\n") or _CONTROL.search(text):
        raise VerificationError("the checkpoint text must be newline-terminated lines of text")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or not all(lines):
        raise VerificationError("the checkpoint text needs origin, size and root on 3 lines")
    origin, size_line, root_line, *extensions = lines
    if not _DECIMAL.fullmatch(size_line) or int(size_line) > _MAX_TREE_SIZE:
        raise VerificationError(f"checkpoint size line {size_line!r} is not a decimal tree size")
    root = _decode_base64(root_line)
    if root is None or len(root) != DIGEST_SIZE:
        raise VerificationError(f"checkpoint root line {root_line!r} is not a base64 SHA-256")
    return Checkpoint(origin, int(size_line), root, tuple(extensions))
