"""Sealed segments: a badge-signed header, and the segment encrypted to the custodian.

File layout (see docs/formats.md)::

    magic "MBSEAL" 0x00 0x01 | header length (u32, big-endian) | header (canonical CBOR)
    | Ed25519 signature (64 bytes) | HPKE output (encapsulated key, then AEAD ciphertext)

Anyone with the badge's public key can check a sealed segment without decrypting it:
the signature covers the header, and the header carries the ciphertext's SHA-256. Only
the custodian's private key opens it; the header (less its ciphertext fields) is bound
into the HPKE key schedule, so a ciphertext moved under another header does not open.

This module is long because it is one file format: every byte of the layout is written,
streamed, checked and opened here and nowhere else.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from evidence.canonical import CanonicalValue, decode_map, encode
from evidence.errors import EncodingError, SegmentFormatError, VerificationError
from evidence.hashing import DIGEST_SIZE, ZERO_DIGEST, sha256
from evidence.identifiers import validate_badge_id
from evidence.keys import (
    BadgeIdentity,
    CustodianPrivateKey,
    CustodianPublicKey,
    SigningPublicKey,
)

MAGIC = b"MBSEAL\x00\x01"
HEADER_TYPE = "medbadge.segment.v1"
SIGNATURE_CONTEXT = "medbadge segment header v1"
HPKE_INFO_LABEL = b"medbadge segment v1\x00"
SIGNATURE_SIZE = 64
MAX_HEADER_SIZE = 64 * 1024
_PREFIX = struct.Struct(">8sI")


@dataclass(frozen=True)
class SegmentFacts:
    """What the badge knows of a segment before sealing it: place in the chain, clocks, codec."""

    seq: int
    boot: int
    mono_start_ns: int
    mono_end_ns: int
    wall_start_ns: int
    wall_end_ns: int
    codec: Mapping[str, str | int]
    previous_header_sha256: bytes
    dropped_frames: int = 0


@dataclass(frozen=True)
class SegmentHeader:
    """What the badge asserts about one segment; signed, and part of the hash chain."""

    badge_id: str
    seq: int
    boot: int
    mono_start_ns: int
    mono_end_ns: int
    wall_start_ns: int
    wall_end_ns: int
    codec: Mapping[str, str | int]
    plaintext_size: int
    plaintext_sha256: bytes
    previous_header_sha256: bytes
    suite: str
    dropped_frames: int
    ciphertext_size: int
    ciphertext_sha256: bytes

    def binding(self) -> dict[str, CanonicalValue]:
        """The header fields fixed before encryption: all but the ciphertext's size and hash."""
        return {
            "type": HEADER_TYPE,
            "badge": self.badge_id,
            "seq": self.seq,
            "boot": self.boot,
            "mono_start_ns": self.mono_start_ns,
            "mono_end_ns": self.mono_end_ns,
            "wall_start_ns": self.wall_start_ns,
            "wall_end_ns": self.wall_end_ns,
            "codec": dict(self.codec),
            "dropped_frames": self.dropped_frames,
            "pt_size": self.plaintext_size,
            "pt_sha256": self.plaintext_sha256,
            "prev": self.previous_header_sha256,
            "suite": self.suite,
        }

    def hpke_info(self) -> bytes:
        """The HPKE ``info`` that binds this header into the encryption."""
        return HPKE_INFO_LABEL + sha256(encode(self.binding()))

    def encode(self) -> bytes:
        """The canonical bytes of the whole header: what is signed and chained."""
        fields = self.binding()
        fields["ct_size"] = self.ciphertext_size
        fields["ct_sha256"] = self.ciphertext_sha256
        return encode(fields)

    def digest(self) -> bytes:
        """SHA-256 of the canonical header: the next segment's ``previous_header_sha256``."""
        return sha256(self.encode())

    @classmethod
    def decode(cls, data: bytes, where: str) -> SegmentHeader:
        """Parse canonical header bytes, checking every field's type; ``where`` names it."""
        try:
            fields = decode_map(data, f"{where}: header")
        except EncodingError as error:
            raise SegmentFormatError(f"{where}: header is not canonical: {error}") from None
        return _HeaderReader(fields, where).header()


class _HeaderReader:
    """Reads typed fields out of a decoded header map, naming the field in every error."""

    _FIELDS = frozenset(
        {
            "type",
            "badge",
            "seq",
            "boot",
            "mono_start_ns",
            "mono_end_ns",
            "wall_start_ns",
            "wall_end_ns",
            "codec",
            "dropped_frames",
            "pt_size",
            "pt_sha256",
            "prev",
            "suite",
            "ct_size",
            "ct_sha256",
        }
    )

    def __init__(self, fields: dict[str, CanonicalValue], where: str) -> None:
        self.fields = fields
        self.where = where

    def _fail(self, message: str) -> SegmentFormatError:
        return SegmentFormatError(f"{self.where}: header {message}")

    def integer(self, name: str) -> int:
        value = self.fields.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self._fail(f"field {name!r} must be a non-negative integer")
        return value

    def text(self, name: str) -> str:
        value = self.fields.get(name)
        if not isinstance(value, str):
            raise self._fail(f"field {name!r} must be text")
        return value

    def digest(self, name: str) -> bytes:
        value = self.fields.get(name)
        if not isinstance(value, bytes) or len(value) != DIGEST_SIZE:
            raise self._fail(f"field {name!r} must be a {DIGEST_SIZE}-byte SHA-256 digest")
        return value

    def codec(self) -> dict[str, str | int]:
        value = self.fields.get("codec")
        if not isinstance(value, dict) or not all(
            isinstance(item, str | int) and not isinstance(item, bool) for item in value.values()
        ):
            raise self._fail("field 'codec' must be a map of text or integer values")
        return {key: item for key, item in value.items() if isinstance(item, str | int)}

    def header(self) -> SegmentHeader:
        unknown = set(self.fields) - self._FIELDS
        missing = self._FIELDS - set(self.fields)
        if unknown or missing:
            raise self._fail(
                f"fields differ from format v1 (unknown {sorted(unknown)}, "
                f"missing {sorted(missing)})"
            )
        if self.fields["type"] != HEADER_TYPE:
            raise self._fail(f"type {self.fields['type']!r} is not {HEADER_TYPE!r}")
        badge_id = self.text("badge")
        try:
            validate_badge_id(badge_id)
        except Exception as error:
            raise self._fail(str(error)) from None
        return SegmentHeader(
            badge_id=badge_id,
            seq=self.integer("seq"),
            boot=self.integer("boot"),
            mono_start_ns=self.integer("mono_start_ns"),
            mono_end_ns=self.integer("mono_end_ns"),
            wall_start_ns=self.integer("wall_start_ns"),
            wall_end_ns=self.integer("wall_end_ns"),
            codec=self.codec(),
            dropped_frames=self.integer("dropped_frames"),
            plaintext_size=self.integer("pt_size"),
            plaintext_sha256=self.digest("pt_sha256"),
            previous_header_sha256=self.digest("prev"),
            suite=self.text("suite"),
            ciphertext_size=self.integer("ct_size"),
            ciphertext_sha256=self.digest("ct_sha256"),
        )


def _body_start(prefix: bytes | bytearray, where: str) -> int:
    """Where the ciphertext starts, read from the first ``_PREFIX.size`` bytes of a file."""
    if not prefix:
        raise SegmentFormatError(f"{where}: is empty")
    if len(prefix) < _PREFIX.size or prefix[: len(MAGIC)] != MAGIC:
        raise SegmentFormatError(f"{where}: is not a medbadge sealed segment (bad magic)")
    _, header_size = _PREFIX.unpack_from(prefix)
    if header_size > MAX_HEADER_SIZE:
        raise SegmentFormatError(f"{where}: header length {header_size} is implausible")
    return int(_PREFIX.size + header_size + SIGNATURE_SIZE)


def _require_head(size: int, body_start: int, where: str) -> None:
    """Refuse a file of ``size`` bytes that ends before its ciphertext starts."""
    if size < body_start:
        raise SegmentFormatError(f"{where}: is truncated inside its header or signature")


def _split_head(head: bytes | bytearray, where: str) -> tuple[SegmentHeader, bytes, bytes]:
    """The header, its bytes and the signature, from the file's bytes before the ciphertext."""
    header_bytes = bytes(head[_PREFIX.size : len(head) - SIGNATURE_SIZE])
    signature = bytes(head[len(head) - SIGNATURE_SIZE :])
    return SegmentHeader.decode(header_bytes, where), header_bytes, signature


def _check_ciphertext_size(header: SegmentHeader, size: int, where: str) -> None:
    if size != header.ciphertext_size:
        raise SegmentFormatError(
            f"{where}: holds {size} ciphertext bytes but its header says "
            f"{header.ciphertext_size} (truncated or extended)"
        )


def _verify(head: SignedHead, ciphertext_sha256: bytes, badge_key: SigningPublicKey) -> None:
    """The badge signature over the header, and the ciphertext's digest against the header's."""
    badge_key.verify(head.signature, SIGNATURE_CONTEXT, head.header_bytes, head.name)
    if ciphertext_sha256 != head.header.ciphertext_sha256:
        raise VerificationError(f"{head.name}: ciphertext does not match its header's SHA-256")


@dataclass(frozen=True)
class SignedHead:
    """A sealed segment's header, its canonical bytes and the badge's signature over them."""

    header: SegmentHeader
    header_bytes: bytes
    signature: bytes

    @property
    def name(self) -> str:
        """A short name for messages: badge and sequence number."""
        return f"segment {self.header.seq} of badge {self.header.badge_id}"


@dataclass(frozen=True)
class SealedSegment(SignedHead):
    """A segment as the badge stores and sends it: header bytes, signature, ciphertext."""

    ciphertext: bytes

    def to_bytes(self) -> bytes:
        """The sealed-segment file's bytes."""
        return b"".join(self.parts())

    def parts(self) -> tuple[bytes, ...]:
        """The file's bytes in pieces, to write without joining a large ciphertext."""
        prefix = _PREFIX.pack(MAGIC, len(self.header_bytes))
        return (prefix, self.header_bytes, self.signature, self.ciphertext)

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "sealed segment") -> SealedSegment:
        """Parse a sealed segment's bytes, raising SegmentFormatError naming ``where``."""
        body_start = _body_start(data, where)
        _require_head(len(data), body_start, where)
        header, header_bytes, signature = _split_head(data[:body_start], where)
        ciphertext = data[body_start:]
        _check_ciphertext_size(header, len(ciphertext), where)
        return cls(header, header_bytes, signature, ciphertext)

    @classmethod
    def read(cls, path: Path) -> SealedSegment:
        """Read and parse a sealed-segment file."""
        try:
            data = path.read_bytes()
        except OSError as error:
            raise SegmentFormatError(f"{path}: cannot be read: {error.strerror}") from None
        return cls.from_bytes(data, str(path))

    def verify(self, badge_key: SigningPublicKey) -> None:
        """Check the badge signature and the ciphertext hash, without decrypting.

        Raises VerificationError naming the segment and what failed.
        """
        _verify(self, sha256(self.ciphertext), badge_key)

    def open(self, custodian_key: CustodianPrivateKey) -> bytes:
        """Decrypt with the custodian key and check the plaintext against its header."""
        plaintext = custodian_key.decrypt(self.ciphertext, self.header.hpke_info(), self.name)
        if len(plaintext) != self.header.plaintext_size or (
            sha256(plaintext) != self.header.plaintext_sha256
        ):
            raise VerificationError(f"{self.name}: plaintext does not match its header's SHA-256")
        return plaintext


@dataclass(frozen=True)
class CheckedSegmentBytes(SignedHead):
    """What a :class:`SegmentStream` found in a sealed segment's bytes (the ciphertext is not
    kept: only its SHA-256), ready for :meth:`verify`."""

    ciphertext_sha256: bytes

    def verify(self, badge_key: SigningPublicKey) -> None:
        """Check the badge signature and the ciphertext hash, as ``SealedSegment.verify`` does."""
        _verify(self, self.ciphertext_sha256, badge_key)


@dataclass(frozen=True)
class StreamResult:
    """What a :class:`SegmentStream` concluded once every byte was in: plain values that can
    cross to another process, answering ``sealed_sha256`` and ``finish`` as the stream did."""

    sealed: bytes
    checked: CheckedSegmentBytes | None
    error: SegmentFormatError | None

    def sealed_sha256(self) -> bytes:
        """SHA-256 of every byte the stream took."""
        return self.sealed

    def finish(self) -> CheckedSegmentBytes:
        """The stream's parsed head, or the SegmentFormatError its ``finish`` raised."""
        if self.checked is None:
            raise self.error or SegmentFormatError("the stream found no segment head")
        return self.checked


class SegmentStream:
    """Reads a sealed segment's bytes in order, in pieces of any size, keeping only its head.

    It hashes the whole file and the ciphertext in one pass over each piece, so a receiver
    can check a segment as it arrives without holding or re-reading it; ``finish`` parses
    the head exactly as ``SealedSegment.from_bytes`` does.
    """

    def __init__(self, where: str = "sealed segment") -> None:
        """Start with no bytes; ``where`` names the segment in errors."""
        self.where = where
        self.size = 0
        self._sealed = hashlib.sha256()
        self._ciphertext = hashlib.sha256()
        self._head = bytearray()
        self._body_start: int | None = None
        self._error: SegmentFormatError | None = None

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Take the next bytes of the file (never raises: ``finish`` says what is wrong)."""
        view = memoryview(data)
        self._sealed.update(view)
        self.size += len(view)
        if self._error is None and (self._body_start is None or len(self._head) < self._body_start):
            view = self._take_head(view)
        if view:
            self._ciphertext.update(view)

    def _take_head(self, view: memoryview) -> memoryview:
        """Keep the bytes before the ciphertext; return what is left of ``view``."""
        if self._body_start is None:
            wanted = _PREFIX.size - len(self._head)
            self._head += view[:wanted]
            view = view[wanted:]
            if len(self._head) < _PREFIX.size:
                return view
            try:
                self._body_start = _body_start(self._head, self.where)
            except SegmentFormatError as error:
                self._error = error  # the rest is hashed whole, never parsed
                return memoryview(b"")
        wanted = self._body_start - len(self._head)
        self._head += view[:wanted]
        return view[wanted:]

    def sealed_sha256(self) -> bytes:
        """SHA-256 of every byte taken so far (the whole file's, once it is all in)."""
        return self._sealed.copy().digest()

    def finish(self) -> CheckedSegmentBytes:
        """Parse the head and check the ciphertext's size; SegmentFormatError says what is
        wrong. The signature and digests are checked by ``verify`` on the result."""
        if self._error is not None:
            raise self._error
        body_start = self._body_start
        if body_start is None:  # fewer bytes than the prefix: refused as from_bytes refuses
            body_start = _body_start(self._head, self.where)
        _require_head(len(self._head), body_start, self.where)
        header, header_bytes, signature = _split_head(self._head, self.where)
        _check_ciphertext_size(header, self.size - body_start, self.where)
        return CheckedSegmentBytes(
            header=header,
            header_bytes=header_bytes,
            signature=signature,
            ciphertext_sha256=self._ciphertext.digest(),
        )

    def result(self) -> StreamResult:
        """``finish`` and ``sealed_sha256`` taken now, as plain values (see StreamResult)."""
        try:
            return StreamResult(self.sealed_sha256(), self.finish(), None)
        except SegmentFormatError as error:
            return StreamResult(self.sealed_sha256(), None, error)


def seal_segment(
    plaintext: bytes,
    facts: SegmentFacts,
    identity: BadgeIdentity,
    custodian_key: CustodianPublicKey,
) -> SealedSegment:
    """Seal ``plaintext``: hash it, encrypt it to the custodian, hash that, sign the header."""
    header = SegmentHeader(
        badge_id=identity.badge_id,
        seq=facts.seq,
        boot=facts.boot,
        mono_start_ns=facts.mono_start_ns,
        mono_end_ns=facts.mono_end_ns,
        wall_start_ns=facts.wall_start_ns,
        wall_end_ns=facts.wall_end_ns,
        codec=facts.codec,
        plaintext_size=len(plaintext),
        plaintext_sha256=sha256(plaintext),
        previous_header_sha256=facts.previous_header_sha256,
        suite=custodian_key.suite.value,
        dropped_frames=facts.dropped_frames,
        ciphertext_size=0,  # not yet known; outside the encryption binding
        ciphertext_sha256=ZERO_DIGEST,
    )
    ciphertext = custodian_key.encrypt(plaintext, header.hpke_info())
    header = replace(header, ciphertext_size=len(ciphertext), ciphertext_sha256=sha256(ciphertext))
    header_bytes = header.encode()
    signature = identity.signing_key.sign(SIGNATURE_CONTEXT, header_bytes)
    return SealedSegment(header, header_bytes, signature, ciphertext)
