"""The incident record: what a button press started, signed by the badge.

It names the segments that make up the incident (a run of the badge's chain), every press,
the configured location label, and the badge's battery and storage when it closed. The
gateway checks it on intake and the court checks it in the export package.
"""

from __future__ import annotations

from dataclasses import dataclass

from evidence.canonical import CanonicalValue, decode_map, encode
from evidence.envelope import Envelope
from evidence.errors import EncodingError, EvidenceError, SegmentFormatError
from evidence.identifiers import validate_badge_id, validate_incident_id
from evidence.keys import BadgeIdentity, SigningPublicKey

RECORD_TYPE = "medbadge.incident.v1"
SIGNATURE_CONTEXT = "medbadge incident v1"


@dataclass(frozen=True)
class Press:
    """One press of the alert button, on both of the badge's clocks."""

    boot: int
    mono_ns: int
    wall_ns: int


@dataclass(frozen=True)
class IncidentRecord:
    """What the badge asserts about one incident."""

    badge_id: str
    incident_id: str
    presses: tuple[Press, ...]
    pre_roll_ns: int
    post_roll_ns: int
    first_seq: int
    last_seq: int
    location: str
    battery_percent: int | None
    storage_free_bytes: int
    closed_wall_ns: int

    def to_map(self) -> dict[str, CanonicalValue]:
        """The record as a canonical map."""
        return {
            "type": RECORD_TYPE,
            "badge": self.badge_id,
            "incident": self.incident_id,
            "presses": [[p.boot, p.mono_ns, p.wall_ns] for p in self.presses],
            "pre_roll_ns": self.pre_roll_ns,
            "post_roll_ns": self.post_roll_ns,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "location": self.location,
            "battery_percent": self.battery_percent,
            "storage_free_bytes": self.storage_free_bytes,
            "closed_wall_ns": self.closed_wall_ns,
        }

    def encode(self) -> bytes:
        """Canonical bytes: what the badge signs."""
        return encode(self.to_map())

    @classmethod
    def decode(cls, data: bytes, where: str) -> IncidentRecord:
        """Parse canonical record bytes, naming ``where`` in errors."""
        try:
            fields = decode_map(data, f"{where}: incident record")
            if fields.get("type") != RECORD_TYPE:
                raise EncodingError(f"type is not {RECORD_TYPE!r}")
            presses = tuple(Press(*_ints(p, 3)) for p in _list(fields["presses"]))
            battery = fields["battery_percent"]
            record = cls(
                badge_id=validate_badge_id(_text(fields["badge"])),
                incident_id=validate_incident_id(_text(fields["incident"])),
                presses=presses,
                pre_roll_ns=_int(fields["pre_roll_ns"]),
                post_roll_ns=_int(fields["post_roll_ns"]),
                first_seq=_int(fields["first_seq"]),
                last_seq=_int(fields["last_seq"]),
                location=_text(fields["location"]),
                battery_percent=None if battery is None else _int(battery),
                storage_free_bytes=_int(fields["storage_free_bytes"]),
                closed_wall_ns=_int(fields["closed_wall_ns"]),
            )
        except (KeyError, TypeError, EvidenceError) as error:
            raise SegmentFormatError(f"{where}: not a valid incident record ({error})") from None
        if record.encode() != data:
            raise SegmentFormatError(f"{where}: incident record has fields beyond format v1")
        if not presses or record.last_seq < record.first_seq:
            raise SegmentFormatError(f"{where}: incident record has no press or no segments")
        return record


def _int(value: CanonicalValue) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError(f"{value!r} is not a non-negative integer")
    return value


def _text(value: CanonicalValue) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not text")
    return value


def _list(value: CanonicalValue) -> list[CanonicalValue]:
    if not isinstance(value, list):
        raise TypeError(f"{value!r} is not a list")
    return value


def _ints(value: CanonicalValue, count: int) -> list[int]:
    items = [_int(item) for item in _list(value)]
    if len(items) != count:
        raise TypeError(f"{value!r} does not hold {count} integers")
    return items


@dataclass(frozen=True)
class SignedIncident:
    """An incident record with the badge's signature, carried in a signed envelope."""

    record: IncidentRecord
    envelope: Envelope

    @classmethod
    def sign(cls, record: IncidentRecord, identity: BadgeIdentity) -> SignedIncident:
        """Sign ``record`` with the badge's key."""
        if record.badge_id != identity.badge_id:
            raise EvidenceError(
                f"incident names badge {record.badge_id} but the key is {identity.badge_id}"
            )
        return cls(record, Envelope.sign(record.to_map(), identity.signing_key, SIGNATURE_CONTEXT))

    def to_bytes(self) -> bytes:
        """The signed record's file bytes."""
        return self.envelope.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "incident record") -> SignedIncident:
        """Parse a signed record's bytes (does not verify the signature)."""
        envelope = Envelope.from_bytes(data, where)
        return cls(IncidentRecord.decode(envelope.record_bytes, where), envelope)

    def verify(self, badge_key: SigningPublicKey) -> None:
        """Raise VerificationError unless the badge's key signed this record."""
        what = f"incident {self.record.incident_id} of badge {self.record.badge_id}"
        self.envelope.verify(badge_key, SIGNATURE_CONTEXT, what)


ALERT_TYPE = "medbadge.alert.v1"
ALERT_CONTEXT = "medbadge alert v1"


def sign_alert(
    identity: BadgeIdentity, incident_id: str, press: Press, location: str, first_seq: int
) -> bytes:
    """The alert a first press sends at once, before any video: signed by the badge.

    ``first_seq`` is the first segment of the pre-roll: the gateway takes the incident's
    segments from it on while the incident is still open, before its record comes.
    """
    if first_seq < 0:
        raise EvidenceError(f"an alert's first segment must not be negative, not {first_seq}")
    record = encode(
        {
            "type": ALERT_TYPE,
            "badge": identity.badge_id,
            "incident": validate_incident_id(incident_id),
            "press": [press.boot, press.mono_ns, press.wall_ns],
            "location": location,
            "first_seq": first_seq,
        }
    )
    return Envelope(record, identity.signing_key.sign(ALERT_CONTEXT, record)).to_bytes()
