"""Ledger entries: the canonical-CBOR leaves of the gateway's Merkle log (``medbadge.ledger.v1``).

A leaf is the map ``{"type": "medbadge.ledger.v1", "kind", "at_ns", "body"}``: what happened
(``kind`` and its ``body``) and when, in gateway time. The gateway writes them; a court reads
them from an evidence package and proves each one is in the log with an inclusion proof
(docs/formats.md, "Ledger entries").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

from evidence.canonical import CanonicalValue, decode_map, encode
from evidence.errors import EncodingError, FormatError, LedgerError

LEDGER_ENTRY_TYPE = "medbadge.ledger.v1"
"""The ``type`` of every ledger leaf."""

LedgerKind = Literal["segment", "incident", "receipt", "alert", "custody"]
"""What a ledger entry records (the body's fields depend on it; see decision 1101)."""
LEDGER_KINDS: frozenset[str] = frozenset(get_args(LedgerKind))

_ENTRY_FIELDS = frozenset({"type", "kind", "at_ns", "body"})


@dataclass(frozen=True)
class LedgerEntry:
    """One ledger leaf: what happened (``kind`` and ``body``) and when, in gateway time."""

    kind: str
    at_ns: int
    body: Mapping[str, CanonicalValue] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """The leaf bytes: the canonical CBOR map ``{type, kind, at_ns, body}``."""
        if self.kind not in LEDGER_KINDS:
            raise LedgerError(
                f"ledger entry kind {self.kind!r} is not one of {sorted(LEDGER_KINDS)}"
            )
        if type(self.at_ns) is not int or self.at_ns < 0:
            raise LedgerError(f"ledger entry time {self.at_ns!r} is not a gateway time in ns")
        record: dict[str, CanonicalValue] = {
            "type": LEDGER_ENTRY_TYPE,
            "kind": self.kind,
            "at_ns": self.at_ns,
            "body": self.body,
        }
        return encode(record)

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> LedgerEntry:
        """Parse leaf bytes; FormatError naming ``where`` if they are not an entry."""
        try:
            fields_map = decode_map(data, where)
        except EncodingError as error:
            raise FormatError(f"{where} is not canonical CBOR: {error}") from None
        kind, at_ns, body = fields_map.get("kind"), fields_map.get("at_ns"), fields_map.get("body")
        if (
            set(fields_map) != _ENTRY_FIELDS
            or fields_map["type"] != LEDGER_ENTRY_TYPE
            or not isinstance(kind, str)
            or kind not in LEDGER_KINDS
            or type(at_ns) is not int
            or at_ns < 0
            or not isinstance(body, dict)
        ):
            raise FormatError(f"{where} is not a {LEDGER_ENTRY_TYPE} entry")
        return cls(kind, at_ns, body)
