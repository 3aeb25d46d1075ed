"""Uplink messages: round trips, signatures, and refusal of anything malformed."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evidence.canonical import encode
from evidence.envelope import Envelope
from evidence.errors import EvidenceError, SegmentFormatError, VerificationError
from evidence.keys import SigningKey
from evidence.messages import Heartbeat, Receipt, Rejection, SegmentChunk, Status

GATEWAY = SigningKey.generate()
BADGE = SigningKey.generate()


def heartbeat() -> Heartbeat:
    return Heartbeat(
        badge="badge-007",
        boot=2,
        mono_ns=5,
        wall_ns=6,
        battery_percent=None,
        storage_free_bytes=7,
        ring_bytes=8,
        ring_segments=9,
        pinned_segments=1,
        dropped_frames=0,
        outbox_pending=3,
        recording=True,
    )


def test_signed_messages_round_trip_and_check_their_signer() -> None:
    assert Heartbeat.open(heartbeat().sign(BADGE), BADGE.public_key, "hb") == heartbeat()
    receipt = Receipt("badge-007", "segment", "41", bytes(32), 123)
    assert Receipt.open(receipt.sign(GATEWAY), GATEWAY.public_key, "r") == receipt
    rejection = Rejection("badge-007", "segment", "41", "hash-mismatch", "the hash differs")
    assert Rejection.open(rejection.sign(GATEWAY), GATEWAY.public_key, "j") == rejection
    with pytest.raises(VerificationError):
        Receipt.open(receipt.sign(BADGE), GATEWAY.public_key, "receipt")


def test_a_heartbeat_signature_is_not_a_receipt_signature() -> None:
    """Purpose labels keep one kind of signed record from passing as another."""
    envelope = Envelope.from_bytes(heartbeat().sign(GATEWAY), "hb")
    with pytest.raises(VerificationError):
        envelope.verify(GATEWAY.public_key, "medbadge receipt v1", "as receipt")


def test_chunk_and_status_round_trip() -> None:
    chunk = SegmentChunk("badge-007", "inc-1", 41, 0, 4, 0, 1000, bytes(32), b"x" * 250)
    assert SegmentChunk.from_bytes(chunk.to_bytes(), "c") == chunk
    status = Status("badge-007", "offline", 3)
    assert Status.from_bytes(status.to_bytes(), "s") == status


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"index": 4}, "inconsistent"),
        ({"offset": 900}, "inconsistent"),
        ({"sealed_sha256": b"short"}, "inconsistent"),
        ({"seq": -1}, "'seq' must be int"),
        ({"data": "text"}, "'data' must be bytes"),
        ({"extra": 1}, "differ from the expected"),
        ({"type": "medbadge.other"}, "type is not"),
    ],
)
def test_malformed_chunks_are_refused_with_the_reason(
    fields: dict[str, object], reason: str
) -> None:
    base = {
        "type": SegmentChunk.TYPE,
        "badge": "b",
        "incident": "i",
        "seq": 1,
        "index": 0,
        "count": 4,
        "offset": 0,
        "total_size": 1000,
        "sealed_sha256": bytes(32),
        "data": b"x" * 200,
    }
    with pytest.raises(SegmentFormatError, match=reason):
        SegmentChunk.from_bytes(encode({**base, **fields}), "chunk")  # type: ignore[dict-item]


@given(st.binary(max_size=300))
@settings(max_examples=200)
def test_garbage_is_always_our_error(data: bytes) -> None:
    for parse in (
        lambda: SegmentChunk.from_bytes(data, "c"),
        lambda: Status.from_bytes(data, "s"),
        lambda: Receipt.open(data, GATEWAY.public_key, "r"),
        lambda: Heartbeat.open(data, BADGE.public_key, "h"),
    ):
        with pytest.raises(EvidenceError):
            parse()


def test_heartbeat_health_fields_round_trip_signed_and_negative() -> None:
    full = dataclasses.replace(
        heartbeat(),
        battery_percent=41,
        battery_millivolts=3_712,
        battery_rate_millipercent_per_hour=-4_160,
        soc_temperature_millicelsius=-2_500,
        clock_synchronised=False,
    )
    assert Heartbeat.open(full.sign(BADGE), BADGE.public_key, "hb") == full


def test_a_heartbeat_from_an_earlier_badge_reads_its_new_fields_as_unknown() -> None:
    """A badge of the release before sends no health fields past ``recording``."""
    earlier = {
        "type": Heartbeat.TYPE,
        **{
            name: value
            for name, value in dataclasses.asdict(heartbeat()).items()
            if name not in ("battery_millivolts", "battery_rate_millipercent_per_hour")
            and name not in ("soc_temperature_millicelsius", "clock_synchronised")
        },
    }
    signed = Envelope.sign(earlier, BADGE, "medbadge heartbeat v1").to_bytes()
    opened = Heartbeat.open(signed, BADGE.public_key, "hb")
    assert opened == heartbeat() and opened.battery_millivolts is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("battery_millivolts", -1),
        ("battery_rate_millipercent_per_hour", True),
        ("soc_temperature_millicelsius", "hot"),
        ("clock_synchronised", 1),
    ],
)
def test_heartbeat_health_fields_of_the_wrong_kind_are_refused(name: str, value: object) -> None:
    fields_map = {"type": Heartbeat.TYPE, **dataclasses.asdict(heartbeat()), name: value}
    signed = Envelope.sign(fields_map, BADGE, "medbadge heartbeat v1").to_bytes()
    with pytest.raises(SegmentFormatError, match=name):
        Heartbeat.open(signed, BADGE.public_key, "hb")


def test_a_required_heartbeat_field_may_not_be_left_out() -> None:
    fields_map = {"type": Heartbeat.TYPE, **dataclasses.asdict(heartbeat())}
    del fields_map["boot"]
    signed = Envelope.sign(fields_map, BADGE, "medbadge heartbeat v1").to_bytes()
    with pytest.raises(SegmentFormatError, match="differ from the expected"):
        Heartbeat.open(signed, BADGE.public_key, "hb")
