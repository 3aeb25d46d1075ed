"""The uplink's messages: heartbeats, segment chunks, status, receipts and rejections.

Every payload is canonical CBOR. Alerts, heartbeats and incident records are signed by the
badge; receipts and rejections by the gateway; chunks need no signature of their own
because the sealed segment they carry is signed. See docs/protocol.md.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, Literal, TypeVar

from evidence.canonical import CanonicalValue, decode_map, encode
from evidence.envelope import Envelope
from evidence.errors import EncodingError, SegmentFormatError
from evidence.hashing import DIGEST_SIZE
from evidence.identifiers import validate_badge_id
from evidence.keys import Signer, SigningPublicKey

HEARTBEAT_CONTEXT = "medbadge heartbeat v1"
RECEIPT_CONTEXT = "medbadge receipt v1"
REJECTION_CONTEXT = "medbadge rejection v1"

Subject = Literal["alert", "segment", "incident"]
SUBJECTS: frozenset[str] = frozenset({"alert", "segment", "incident"})

_Message = TypeVar("_Message")

SignedInt = int
"""An integer that may be negative (a discharge rate, a temperature); plain ``int`` may not."""


def _from_map(cls: type[_Message], fields_map: dict[str, CanonicalValue], where: str) -> _Message:
    """Build a message dataclass from a map whose keys and types must match exactly.

    A field with a default (added to a message after its first release) may be absent: a
    sender of the earlier release did not know it, and it reads as its default (None).
    """
    declared = fields(cls)  # type: ignore[arg-type]
    expected = {field.name: str(field.type) for field in declared}
    optional = {field.name for field in declared if field.default is not MISSING}
    given = {key: value for key, value in fields_map.items() if key != "type"}
    if not set(expected) - optional <= set(given) <= set(expected):
        raise SegmentFormatError(
            f"{where}: fields {sorted(given)} differ from the expected {sorted(expected)}"
        )
    for name, annotation in expected.items():
        if name not in given:
            continue
        value = given[name]
        if not _matches(value, annotation):
            raise SegmentFormatError(f"{where}: field {name!r} must be {annotation}")
    return cls(**given)


def _matches(value: CanonicalValue, annotation: str) -> bool:
    if annotation == "int":
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if annotation == "int | None":
        return value is None or _matches(value, "int")
    if annotation == "SignedInt | None":
        return value is None or (isinstance(value, int) and not isinstance(value, bool))
    if annotation == "bool | None":
        return value is None or isinstance(value, bool)
    if annotation == "bool":
        return isinstance(value, bool)
    if annotation == "bytes":
        return isinstance(value, bytes)
    return isinstance(value, str)


def _typed_map(message: Any, type_name: str) -> dict[str, CanonicalValue]:
    return {"type": type_name, **asdict(message)}


def _decode_typed(data: bytes, type_name: str, where: str) -> dict[str, CanonicalValue]:
    try:
        fields_map = decode_map(data, where)
    except EncodingError as error:
        raise SegmentFormatError(f"{where}: not canonical ({error})") from None
    if fields_map.get("type") != type_name:
        raise SegmentFormatError(f"{where}: type is not {type_name!r}")
    return fields_map


@dataclass(frozen=True)
class Heartbeat:
    """A badge's periodic report: health, storage, ring state and both clocks.

    None means the badge has no such sensor (no fuel gauge fitted, no thermal zone) or does
    not know (clock sync state); the fields after ``recording`` came in a later release and
    are None when an earlier badge omits them.
    """

    badge: str
    boot: int
    mono_ns: int
    wall_ns: int
    battery_percent: int | None
    storage_free_bytes: int
    ring_bytes: int
    ring_segments: int
    pinned_segments: int
    dropped_frames: int
    outbox_pending: int
    recording: bool
    battery_millivolts: int | None = None
    """The cell's voltage."""
    battery_rate_millipercent_per_hour: SignedInt | None = None
    """Charge rate in 1/1000 % per hour: positive charging, negative discharging."""
    soc_temperature_millicelsius: SignedInt | None = None
    """The processor's temperature (the SoC's thermal zone)."""
    clock_synchronised: bool | None = None
    """Whether the kernel says the badge's wall clock is synchronised (NTP/chrony)."""

    TYPE = "medbadge.heartbeat.v1"

    def sign(self, key: Signer) -> bytes:
        """The signed heartbeat payload."""
        return Envelope.sign(_typed_map(self, self.TYPE), key, HEARTBEAT_CONTEXT).to_bytes()

    @classmethod
    def open(cls, data: bytes, key: SigningPublicKey, where: str) -> Heartbeat:
        """Parse and verify a signed heartbeat."""
        envelope = Envelope.from_bytes(data, where)
        envelope.verify(key, HEARTBEAT_CONTEXT, where)
        message = _from_map(cls, _decode_typed(envelope.record_bytes, cls.TYPE, where), where)
        validate_badge_id(message.badge)
        return message


@dataclass(frozen=True)
class SegmentChunk:
    """One piece of a sealed segment on its way to the gateway."""

    badge: str
    incident: str
    seq: int
    index: int
    count: int
    offset: int
    total_size: int
    sealed_sha256: bytes
    data: bytes

    TYPE = "medbadge.chunk.v1"

    def to_bytes(self) -> bytes:
        """The chunk's payload."""
        return encode(_typed_map(self, self.TYPE))

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> SegmentChunk:
        """Parse a chunk and check its numbers are consistent."""
        chunk = _from_map(cls, _decode_typed(data, cls.TYPE, where), where)
        if not (
            chunk.index < chunk.count
            and chunk.offset + len(chunk.data) <= chunk.total_size
            and len(chunk.sealed_sha256) == DIGEST_SIZE
        ):
            raise SegmentFormatError(f"{where}: chunk {chunk.index}/{chunk.count} is inconsistent")
        return chunk


@dataclass(frozen=True)
class Status:
    """A badge's retained presence: 'online', or 'offline' (its last will)."""

    badge: str
    state: str
    boot: int

    TYPE = "medbadge.status.v1"

    def to_bytes(self) -> bytes:
        """The status payload."""
        return encode(_typed_map(self, self.TYPE))

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> Status:
        """Parse a status payload."""
        status = _from_map(cls, _decode_typed(data, cls.TYPE, where), where)
        if status.state not in ("online", "offline"):
            raise SegmentFormatError(f"{where}: state {status.state!r} is not online/offline")
        return status


@dataclass(frozen=True)
class Receipt:
    """The gateway's signed word that it has stored something durably."""

    badge: str
    subject: str
    key: str
    sha256: bytes
    received_wall_ns: int

    TYPE = "medbadge.receipt.v1"

    def sign(self, key: Signer) -> bytes:
        """The signed receipt payload."""
        return Envelope.sign(_typed_map(self, self.TYPE), key, RECEIPT_CONTEXT).to_bytes()

    @classmethod
    def open(cls, data: bytes, key: SigningPublicKey, where: str) -> Receipt:
        """Parse a receipt and verify the gateway's signature on it."""
        envelope = Envelope.from_bytes(data, where)
        envelope.verify(key, RECEIPT_CONTEXT, where)
        receipt = _from_map(cls, _decode_typed(envelope.record_bytes, cls.TYPE, where), where)
        if receipt.subject not in SUBJECTS:
            raise SegmentFormatError(f"{where}: receipt subject {receipt.subject!r} is unknown")
        return receipt


@dataclass(frozen=True)
class Rejection:
    """The gateway's signed refusal of something a badge sent, with the reason."""

    badge: str
    subject: str
    key: str
    reason: str
    detail: str

    TYPE = "medbadge.rejection.v1"

    def sign(self, key: Signer) -> bytes:
        """The signed rejection payload."""
        return Envelope.sign(_typed_map(self, self.TYPE), key, REJECTION_CONTEXT).to_bytes()

    @classmethod
    def open(cls, data: bytes, key: SigningPublicKey, where: str) -> Rejection:
        """Parse a rejection and verify the gateway's signature on it."""
        envelope = Envelope.from_bytes(data, where)
        envelope.verify(key, REJECTION_CONTEXT, where)
        return _from_map(cls, _decode_typed(envelope.record_bytes, cls.TYPE, where), where)
