"""The canonical encoding: one encoding per value, checked against an independent CBOR library."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from evidence.canonical import CanonicalValue, decode, encode
from evidence.errors import EncodingError

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.binary(max_size=64)
    | st.text(max_size=32),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)


@pytest.mark.parametrize(
    ("value", "expected_hex"),
    [
        (0, "00"),
        (23, "17"),
        (24, "1818"),
        (1000, "1903e8"),
        (2**32, "1b0000000100000000"),
        (-1, "20"),
        (-1000, "3903e7"),
        (b"\x01\x02", "420102"),
        ("a", "6161"),
        ([1, [2, 3]], "8201820203"),
        ({"b": 1, "a": 2, "aa": 3}, "a3616102616201626161 03".replace(" ", "")),
        (True, "f5"),
        (None, "f6"),
    ],
)
def test_known_encodings(value: CanonicalValue, expected_hex: str) -> None:
    assert encode(value).hex() == expected_hex
    assert decode(bytes.fromhex(expected_hex)) == value


@given(values)
def test_matches_an_independent_deterministic_cbor_encoder(value: CanonicalValue) -> None:
    assert encode(value) == cbor2.dumps(value, canonical=True)


@given(values)
def test_round_trip(value: CanonicalValue) -> None:
    assert decode(encode(value)) == value


@pytest.mark.parametrize(
    ("data_hex", "reason"),
    [
        ("1817", "shortest form"),  # 23 encoded in two bytes
        ("190017", "shortest form"),
        ("5f4101ff", "not allowed"),  # indefinite-length byte string
        ("a2616201616102", "canonical order"),  # keys "b" then "a"
        ("a2616101616102", "duplicated"),
        ("a10102", "not a text string"),  # integer map key
        ("f97e00", "not allowed"),  # a half-precision float
        ("c11a514b67b0", "not allowed"),  # a tag
        ("62c328", "UTF-8"),
        ("0000", "unexpected bytes"),
        ("", "ends"),
        ("5a00010000", "past the end"),
        ("9bffffffffffffffff", "more than the data"),
    ],
)
def test_non_canonical_input_is_refused_with_its_reason(data_hex: str, reason: str) -> None:
    with pytest.raises(EncodingError, match=reason):
        decode(bytes.fromhex(data_hex))


def test_values_outside_the_subset_are_refused() -> None:
    with pytest.raises(EncodingError, match="64 bits"):
        encode(2**64)
    with pytest.raises(EncodingError, match="float"):
        encode(1.5)  # type: ignore[arg-type]
    with pytest.raises(EncodingError, match="map key"):
        encode({1: 2})  # type: ignore[dict-item]


def test_deep_nesting_is_refused_not_a_recursion_error() -> None:
    with pytest.raises(EncodingError, match="deeper"):
        decode(b"\x81" * 10_000 + b"\x00")


@given(st.binary(max_size=200))
def test_garbage_gives_our_error_or_a_value(data: bytes) -> None:
    try:
        value = decode(data)
    except EncodingError:
        return
    assert encode(value) == data
