"""Signed incident records: round trip, signature, and damage."""

from __future__ import annotations

import pytest

from evidence.canonical import decode_map
from evidence.errors import EvidenceError, SegmentFormatError, VerificationError
from evidence.incident import IncidentRecord, Press, SignedIncident, sign_alert
from evidence.keys import BadgeIdentity, SigningKey


def record(badge_id: str = "badge-007") -> IncidentRecord:
    return IncidentRecord(
        badge_id=badge_id,
        incident_id="20261124t221500-3f9a0c",
        presses=(Press(2, 5_000_000_000, 1_795_000_000_000_000_000),),
        pre_roll_ns=60 * 10**9,
        post_roll_ns=120 * 10**9,
        first_seq=100,
        last_seq=190,
        location="Emergency, bay 3",
        battery_percent=None,
        storage_free_bytes=123_456_789,
        closed_wall_ns=1_795_000_180_000_000_000,
    )


def test_round_trip_and_signature(identity: BadgeIdentity) -> None:
    signed = SignedIncident.sign(record(), identity)
    parsed = SignedIncident.from_bytes(signed.to_bytes())
    assert parsed.record == record()
    parsed.verify(identity.signing_key.public_key)
    with pytest.raises(VerificationError, match="incident 20261124t221500-3f9a0c"):
        parsed.verify(SigningKey.generate().public_key)


def test_a_changed_byte_is_caught(identity: BadgeIdentity) -> None:
    data = bytearray(SignedIncident.sign(record(), identity).to_bytes())
    for index in range(len(data)):
        damaged = bytearray(data)
        damaged[index] ^= 0x01
        with pytest.raises(EvidenceError):
            SignedIncident.from_bytes(bytes(damaged)).verify(identity.signing_key.public_key)


def test_cannot_sign_for_another_badge(identity: BadgeIdentity) -> None:
    with pytest.raises(EvidenceError, match="names badge badge-001"):
        SignedIncident.sign(record("badge-001"), identity)


@pytest.mark.parametrize("data", [b"", b"\xa0", b"garbage"])
def test_garbage_is_our_error(data: bytes) -> None:
    with pytest.raises(SegmentFormatError):
        SignedIncident.from_bytes(data)


def test_alert_is_signed(identity: BadgeIdentity) -> None:
    envelope = decode_map(sign_alert(identity, "inc-1", Press(1, 2, 3), "ER", 0), "alert")
    payload, signature = envelope["record"], envelope["signature"]
    assert isinstance(payload, bytes) and isinstance(signature, bytes)
    identity.signing_key.public_key.verify(signature, "medbadge alert v1", payload, "alert")
    assert decode_map(payload, "alert")["location"] == "ER"
