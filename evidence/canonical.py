"""The one canonical encoding for everything signed or hashed: deterministic CBOR (RFC 8949 §4.2.1).

Only a small subset is used, so an independent implementer needs little: unsigned and
negative integers (64-bit), byte strings, UTF-8 text strings, arrays, maps with text keys,
``false``/``true``/``null``. Every value has exactly one encoding: integers and lengths in
their shortest form, definite lengths only, map keys sorted by their encoded bytes. The
decoder refuses anything else, so two parties that agree on a value agree on its bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

from evidence.errors import EncodingError

CanonicalValue: TypeAlias = (
    "bool | int | bytes | str | Sequence[CanonicalValue] | Mapping[str, CanonicalValue] | None"
)
"""A value the canonical encoding can carry (decoding gives lists and dicts)."""

_MAJOR_UNSIGNED = 0
_MAJOR_NEGATIVE = 1
_MAJOR_BYTES = 2
_MAJOR_TEXT = 3
_MAJOR_ARRAY = 4
_MAJOR_MAP = 5
_SIMPLE = {False: b"\xf4", True: b"\xf5"}
_NULL = b"\xf6"
_SIMPLE_VALUES: dict[int, bool | None] = {20: False, 21: True, 22: None}
_MAX_UINT = 2**64 - 1
_MAX_DEPTH = 16


def _head(major: int, argument: int) -> bytes:
    """Encode a CBOR item head with its argument in the shortest form."""
    if argument < 24:
        return bytes([major << 5 | argument])
    for info, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if argument < 1 << (8 * width):
            return bytes([major << 5 | info]) + argument.to_bytes(width, "big")
    raise EncodingError(f"integer {argument} does not fit in 64 bits")


def encode(value: CanonicalValue) -> bytes:
    """Return the canonical bytes of ``value``; raise EncodingError for anything not encodable."""
    out = bytearray()
    _encode_into(value, out, 0)
    return bytes(out)


def _encode_into(value: CanonicalValue, out: bytearray, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise EncodingError(f"value nests deeper than {_MAX_DEPTH} levels")
    if value is None:
        out += _NULL
    elif isinstance(value, bool):
        out += _SIMPLE[value]
    elif isinstance(value, int):
        if value >= 0:
            out += _head(_MAJOR_UNSIGNED, value)
        else:
            out += _head(_MAJOR_NEGATIVE, -1 - value)
    elif isinstance(value, bytes | bytearray | memoryview):
        out += _head(_MAJOR_BYTES, len(value))
        out += value
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        out += _head(_MAJOR_TEXT, len(raw))
        out += raw
    elif isinstance(value, Mapping):
        items = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise EncodingError(f"map key {key!r} is not a text string")
            items.append((encode(key), item))
        items.sort(key=lambda pair: pair[0])
        out += _head(_MAJOR_MAP, len(items))
        for encoded_key, item in items:
            out += encoded_key
            _encode_into(item, out, depth + 1)
    elif isinstance(value, Sequence):
        out += _head(_MAJOR_ARRAY, len(value))
        for item in value:
            _encode_into(item, out, depth + 1)
    else:
        raise EncodingError(f"cannot encode a value of type {type(value).__name__}")


def decode(data: bytes) -> CanonicalValue:
    """Decode canonical bytes; raise EncodingError naming the offset of anything non-canonical."""
    value, end = _Decoder(bytes(data)).item(0, 0)
    if end != len(data):
        raise EncodingError(f"{len(data) - end} unexpected bytes after the value at offset {end}")
    return value


def decode_map(data: bytes, what: str) -> dict[str, CanonicalValue]:
    """Decode canonical bytes that must hold a map; ``what`` names it in errors."""
    value = decode(data)
    if not isinstance(value, dict):
        raise EncodingError(f"{what} is not a map")
    return value


class _Decoder:
    """A strict decoder for the canonical subset."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def _argument(self, offset: int) -> tuple[int, int, int]:
        """Read an item head at ``offset``; return (major, argument, offset after the head)."""
        if offset >= len(self.data):
            raise EncodingError(f"data ends at offset {offset} where a value was expected")
        initial = self.data[offset]
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            return major, info, offset + 1
        widths = {24: 1, 25: 2, 26: 4, 27: 8}
        if major == 7 or info not in widths:
            raise EncodingError(
                f"item at offset {offset} (byte 0x{initial:02x}) is not allowed: "
                "floats, indefinite lengths and reserved values have no canonical form here"
            )
        width = widths[info]
        end = offset + 1 + width
        if end > len(self.data):
            raise EncodingError(f"data ends inside the item head at offset {offset}")
        argument = int.from_bytes(self.data[offset + 1 : end], "big")
        if _head(major, argument) != self.data[offset:end]:
            raise EncodingError(f"integer or length at offset {offset} is not in shortest form")
        return major, argument, end

    def _span(self, start: int, length: int, offset: int) -> bytes:
        if start + length > len(self.data):
            raise EncodingError(f"string at offset {offset} runs past the end of the data")
        return self.data[start : start + length]

    def item(self, offset: int, depth: int) -> tuple[CanonicalValue, int]:
        """Decode one item at ``offset``; return it and the offset after it."""
        if depth > _MAX_DEPTH:
            raise EncodingError(f"value at offset {offset} nests deeper than {_MAX_DEPTH} levels")
        major, argument, pos = self._argument(offset)
        if major == _MAJOR_UNSIGNED:
            return argument, pos
        if major == _MAJOR_NEGATIVE:
            return -1 - argument, pos
        if major == _MAJOR_BYTES:
            return self._span(pos, argument, offset), pos + argument
        if major == _MAJOR_TEXT:
            raw = self._span(pos, argument, offset)
            try:
                return raw.decode("utf-8"), pos + argument
            except UnicodeDecodeError:
                raise EncodingError(f"text at offset {offset} is not valid UTF-8") from None
        if major == _MAJOR_ARRAY:
            return self._array(argument, pos, depth)
        if major == _MAJOR_MAP:
            return self._map(argument, pos, depth, offset)
        if major == 7 and argument in _SIMPLE_VALUES:
            return _SIMPLE_VALUES[argument], pos
        raise EncodingError(
            f"item at offset {offset} (byte 0x{self.data[offset]:02x}) is not allowed"
        )

    def _array(self, count: int, pos: int, depth: int) -> tuple[CanonicalValue, int]:
        if count > len(self.data) - pos:
            raise EncodingError(f"array at offset {pos} claims {count} items, more than the data")
        items = []
        for _ in range(count):
            item, pos = self.item(pos, depth + 1)
            items.append(item)
        return items, pos

    def _map(self, count: int, pos: int, depth: int, offset: int) -> tuple[CanonicalValue, int]:
        if count > len(self.data) - pos:
            raise EncodingError(f"map at offset {offset} claims {count} entries, beyond the data")
        result: dict[str, CanonicalValue] = {}
        previous_key = b""
        for index in range(count):
            key_start = pos
            key, pos = self.item(pos, depth + 1)
            if not isinstance(key, str):
                raise EncodingError(f"map key at offset {key_start} is not a text string")
            encoded_key = self.data[key_start:pos]
            if index and encoded_key <= previous_key:
                raise EncodingError(
                    f"map key {key!r} at offset {key_start} is duplicated or out of canonical order"
                )
            previous_key = encoded_key
            result[key], pos = self.item(pos, depth + 1)
        return result, pos
