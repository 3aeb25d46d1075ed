"""Sealed segments: round trip, verification without decryption, and every kind of damage."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evidence.errors import (
    DecryptionError,
    EvidenceError,
    SegmentFormatError,
    VerificationError,
)
from evidence.hashing import ZERO_DIGEST, sha256
from evidence.keys import BadgeIdentity, CustodianPrivateKey, SigningKey
from evidence.segment import CheckedSegmentBytes, SealedSegment, SegmentStream, seal_segment
from tests.evidence.conftest import facts_for


@pytest.fixture(scope="module")
def sealed_bytes(identity: BadgeIdentity, custodian: CustodianPrivateKey) -> bytes:
    return seal_segment(
        b"segment plaintext " * 50, facts_for(3, ZERO_DIGEST), identity, custodian.public_key
    ).to_bytes()


@pytest.mark.parametrize("custodian_fixture", ["custodian", "hybrid_custodian"])
def test_round_trip(
    identity: BadgeIdentity, custodian_fixture: str, request: pytest.FixtureRequest
) -> None:
    custodian: CustodianPrivateKey = request.getfixturevalue(custodian_fixture)
    plaintext = os.urandom(100_000)
    sealed = seal_segment(plaintext, facts_for(0, ZERO_DIGEST), identity, custodian.public_key)
    parsed = SealedSegment.from_bytes(sealed.to_bytes())
    parsed.verify(identity.signing_key.public_key)
    assert parsed.to_bytes() == sealed.to_bytes()
    assert parsed.header == sealed.header and parsed.header_bytes == sealed.header_bytes
    assert parsed.open(custodian) == plaintext
    assert parsed.header.plaintext_sha256 == sha256(plaintext)
    assert parsed.header.suite == custodian.suite.value
    assert plaintext not in sealed.to_bytes()


def test_file_round_trip(
    tmp_path: Path, sealed_bytes: bytes, identity: BadgeIdentity, custodian: CustodianPrivateKey
) -> None:
    path = tmp_path / "seg.mbseal"
    path.write_bytes(sealed_bytes)
    read = SealedSegment.read(path)
    read.verify(identity.signing_key.public_key)
    assert read.to_bytes() == sealed_bytes
    assert read.header == SealedSegment.from_bytes(sealed_bytes).header
    assert read.open(custodian) == b"segment plaintext " * 50


def test_wrong_badge_key_is_refused(sealed_bytes: bytes) -> None:
    other = SigningKey.generate().public_key
    with pytest.raises(VerificationError, match="segment 3 of badge badge-007: the signature"):
        SealedSegment.from_bytes(sealed_bytes).verify(other)


def test_wrong_custodian_key_cannot_open(sealed_bytes: bytes) -> None:
    with pytest.raises(DecryptionError, match="cannot be opened"):
        SealedSegment.from_bytes(sealed_bytes).open(CustodianPrivateKey.generate())


@given(position=st.data(), bit=st.integers(min_value=0, max_value=7))
@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_flipped_bit_is_caught(
    sealed_bytes: bytes,
    identity: BadgeIdentity,
    custodian: CustodianPrivateKey,
    position: st.DataObject,
    bit: int,
) -> None:
    index = position.draw(st.integers(min_value=0, max_value=len(sealed_bytes) - 1))
    damaged = bytearray(sealed_bytes)
    damaged[index] ^= 1 << bit
    with pytest.raises(EvidenceError) as caught:
        segment = SealedSegment.from_bytes(bytes(damaged))
        segment.verify(identity.signing_key.public_key)
    assert str(caught.value)


def test_a_flipped_ciphertext_bit_names_the_ciphertext(
    sealed_bytes: bytes, identity: BadgeIdentity
) -> None:
    damaged = bytearray(sealed_bytes)
    damaged[-1] ^= 1
    with pytest.raises(VerificationError, match="ciphertext does not match"):
        SealedSegment.from_bytes(bytes(damaged)).verify(identity.signing_key.public_key)


def test_ciphertext_moved_under_another_header_does_not_open(
    identity: BadgeIdentity, custodian: CustodianPrivateKey
) -> None:
    """Even with a badge's own signature, a header and a foreign ciphertext do not match."""
    first = seal_segment(b"a" * 500, facts_for(0, ZERO_DIGEST), identity, custodian.public_key)
    second = seal_segment(b"b" * 500, facts_for(1, ZERO_DIGEST), identity, custodian.public_key)
    assert len(first.ciphertext) == len(second.ciphertext)
    swapped = SealedSegment(first.header, first.header_bytes, first.signature, second.ciphertext)
    with pytest.raises(VerificationError, match="ciphertext"):
        swapped.verify(identity.signing_key.public_key)
    with pytest.raises(DecryptionError):
        swapped.open(custodian)


@pytest.mark.parametrize("cut", [0, 1, 8, 12, 40, -64, -1])
def test_truncated_and_empty_files(sealed_bytes: bytes, cut: int) -> None:
    data = sealed_bytes[:cut]
    with pytest.raises(SegmentFormatError) as caught:
        SealedSegment.from_bytes(data, "seg-3.mbseal")
    assert "seg-3.mbseal" in str(caught.value)


def test_extended_file_is_refused(sealed_bytes: bytes) -> None:
    with pytest.raises(SegmentFormatError, match="truncated or extended"):
        SealedSegment.from_bytes(sealed_bytes + b"\x00")


@given(st.binary(max_size=400))
@settings(max_examples=300)
def test_garbage_gives_our_error(data: bytes) -> None:
    with pytest.raises(SegmentFormatError):
        SealedSegment.from_bytes(data)


@given(st.binary(max_size=300))
@settings(max_examples=300)
def test_garbage_after_valid_magic_gives_our_error(data: bytes) -> None:
    with pytest.raises(SegmentFormatError):
        SealedSegment.from_bytes(b"MBSEAL\x00\x01" + data)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(SegmentFormatError, match="cannot be read"):
        SealedSegment.read(tmp_path / "missing.mbseal")


# -- checking a segment as it arrives ---------------------------------------------------------


def _fed(data: bytes, cuts: list[int], where: str = "sealed segment") -> SegmentStream:
    """A stream given ``data`` in pieces cut at ``cuts``."""
    stream = SegmentStream(where)
    start = 0
    for cut in [*sorted({min(cut, len(data)) for cut in cuts}), len(data)]:
        stream.update(data[start:cut])
        start = max(start, cut)
    return stream


def _streamed(data: bytes, cuts: list[int], where: str = "sealed segment") -> CheckedSegmentBytes:
    return _fed(data, cuts, where).finish()


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=0, max_value=2_000), max_size=12))
def test_stream_in_any_pieces_finds_what_from_bytes_finds(
    sealed_bytes: bytes, identity: BadgeIdentity, cuts: list[int]
) -> None:
    whole = SealedSegment.from_bytes(sealed_bytes)
    stream = _fed(sealed_bytes, cuts)
    checked = stream.finish()
    assert (checked.header, checked.header_bytes, checked.signature) == (
        whole.header,
        whole.header_bytes,
        whole.signature,
    )
    assert checked.ciphertext_sha256 == sha256(whole.ciphertext)
    assert stream.sealed_sha256() == sha256(sealed_bytes)
    assert stream.size == len(sealed_bytes)
    checked.verify(identity.signing_key.public_key)


def test_stream_refuses_a_flipped_ciphertext_bit_and_a_foreign_key(
    sealed_bytes: bytes, identity: BadgeIdentity
) -> None:
    damaged = bytearray(sealed_bytes)
    damaged[-1] ^= 0x01
    with pytest.raises(VerificationError, match="ciphertext does not match"):
        _streamed(bytes(damaged), [100, 5_000]).verify(identity.signing_key.public_key)
    with pytest.raises(VerificationError):
        _streamed(sealed_bytes, [7]).verify(SigningKey.generate().public_key)


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_stream_and_from_bytes_refuse_the_same_damage_the_same_way(
    sealed_bytes: bytes, data: st.DataObject
) -> None:
    """Truncated, extended, emptied or mis-prefixed bytes: the same error, word for word."""
    damaged = data.draw(
        st.one_of(
            st.integers(0, len(sealed_bytes) - 1).map(lambda end: sealed_bytes[:end]),
            st.binary(min_size=1, max_size=40).map(lambda extra: sealed_bytes + extra),
            st.binary(max_size=64),
            st.binary(min_size=1, max_size=12).map(lambda junk: junk + sealed_bytes[12:]),
        )
    )
    cuts = data.draw(st.lists(st.integers(0, len(damaged)), max_size=5))
    try:
        SealedSegment.from_bytes(damaged, "seg")
    except SegmentFormatError as error:
        with pytest.raises(SegmentFormatError) as streamed:
            _streamed(damaged, cuts, "seg")
        assert str(streamed.value) == str(error)
    else:
        stream = _fed(damaged, cuts, "seg")
        stream.finish()
        assert stream.sealed_sha256() == sha256(damaged)
