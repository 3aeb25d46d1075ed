"""Alerts as the gateway reads them: the badge-signed alert, and the event the console is given."""

from __future__ import annotations

from dataclasses import dataclass

from evidence.canonical import CanonicalValue
from evidence.envelope import Envelope
from evidence.errors import SegmentFormatError
from evidence.identifiers import validate_badge_id, validate_incident_id
from evidence.incident import ALERT_CONTEXT, ALERT_TYPE, Press
from evidence.keys import SigningPublicKey

_FIELDS = frozenset({"type", "badge", "incident", "press", "location", "first_seq"})


@dataclass(frozen=True)
class SignedAlert:
    """An alert (``medbadge.alert.v1``) whose badge signature has been checked."""

    badge_id: str
    incident_id: str
    press: Press
    location: str
    first_seq: int
    """The pre-roll's first segment: the open incident's segments start there."""

    @classmethod
    def open(cls, data: bytes, key: SigningPublicKey, where: str) -> SignedAlert:
        """Parse a signed alert and verify it under ``key``.

        Raises SegmentFormatError when it is not a well-formed alert and VerificationError
        when the signature does not verify (the counterpart of ``evidence.incident.sign_alert``).
        """
        envelope = Envelope.from_bytes(data, where)
        envelope.verify(key, ALERT_CONTEXT, where)
        return cls._parse(envelope, where)

    @classmethod
    def read(cls, data: bytes, where: str) -> SignedAlert:
        """Parse an alert this gateway verified when it came (a stored one), without
        verifying its signature again; SegmentFormatError if it is not well formed."""
        return cls._parse(Envelope.from_bytes(data, where), where)

    @classmethod
    def _parse(cls, envelope: Envelope, where: str) -> SignedAlert:
        fields = envelope.record(where)
        if set(fields) != _FIELDS or fields["type"] != ALERT_TYPE:
            raise SegmentFormatError(
                f"{where}: alert fields {sorted(fields)} are not those of {ALERT_TYPE}"
            )
        badge, incident, location = fields["badge"], fields["incident"], fields["location"]
        if not (isinstance(badge, str) and isinstance(incident, str) and isinstance(location, str)):
            raise SegmentFormatError(f"{where}: alert badge, incident and location must be text")
        try:
            validate_badge_id(badge)
            validate_incident_id(incident)
        except Exception as error:
            raise SegmentFormatError(f"{where}: {error}") from None
        first_seq = fields["first_seq"]
        if not isinstance(first_seq, int) or isinstance(first_seq, bool) or first_seq < 0:
            raise SegmentFormatError(f"{where}: alert first_seq must be a whole number >= 0")
        return cls(badge, incident, Press(*_press(fields["press"], where)), location, first_seq)


def _press(value: CanonicalValue, where: str) -> tuple[int, int, int]:
    """The ``[boot, mono_ns, wall_ns]`` triple of a press."""
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not all(isinstance(item, int) and not isinstance(item, bool) for item in value)
    ):
        raise SegmentFormatError(f"{where}: alert press must be [boot, mono_ns, wall_ns]")
    boot, mono, wall = (int(item) for item in value if isinstance(item, int))
    if min(boot, mono, wall) < 0:
        raise SegmentFormatError(f"{where}: alert press times must not be negative")
    return boot, mono, wall


@dataclass(frozen=True)
class AlertEvent:
    """What the live alert screen and webhooks get the moment an alert is stored."""

    badge_id: str
    wearer: str
    registered_location: str
    """Where the badge is registered (enrolment)."""
    location: str
    """The location label the badge sent with the alert."""
    incident_id: str
    press: Press
    received_wall_ns: int
    """Gateway time the alert arrived: the trusted time."""
    claimed_latency_ns: int
    """Receipt time minus the press time by the badge's own clock (uncorrected)."""
    estimated_press_wall_ns: int | None
    """The press in gateway time, by the badge's measured clock offset (None: no heartbeat yet)."""
    estimated_latency_ns: int | None
    latency_error_ns: int | None
    """The bound, either way, on the estimated press time and latency."""


def alert_event(
    *,
    badge_id: str,
    wearer: str,
    registered_location: str,
    location: str,
    incident_id: str,
    press: Press,
    received_wall_ns: int,
    press_estimate: tuple[int, int] | None,
) -> AlertEvent:
    """The event of a stored alert; ``press_estimate`` is the press in gateway time and its
    error bound, from the badge's measured clock (None before its first heartbeat)."""
    pressed, error = press_estimate if press_estimate is not None else (None, None)
    return AlertEvent(
        badge_id=badge_id,
        wearer=wearer,
        registered_location=registered_location,
        location=location,
        incident_id=incident_id,
        press=press,
        received_wall_ns=received_wall_ns,
        claimed_latency_ns=received_wall_ns - press.wall_ns,
        estimated_press_wall_ns=pressed,
        estimated_latency_ns=None if pressed is None else received_wall_ns - pressed,
        latency_error_ns=error,
    )
