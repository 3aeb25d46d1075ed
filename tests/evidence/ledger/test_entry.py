"""Ledger entries: the documented example reproduces, and anything off the format is refused."""

from __future__ import annotations

import re
from pathlib import Path

import cbor2
import pytest

from evidence.errors import FormatError, LedgerError
from evidence.ledger.entry import LedgerEntry
from evidence.ledger.merkle import leaf_hash

DOC = Path(__file__).resolve().parents[3] / "docs" / "formats.md"
EXAMPLE = LedgerEntry(
    "custody",
    1_795_000_000_000_000_000,
    {
        "actor": "Officer Dana Bekova",
        "action": "export",
        "subject": "inc-0417",
        "justification": "Court order 12/2026",
        "detail": {},
    },
)


def _block(name: str) -> bytes:
    found = re.search(rf"```hex {name}\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert found is not None, name
    return bytes.fromhex("".join(found[1].split()))


def test_the_documented_example_reproduces() -> None:
    data = _block("ledger-entry")
    assert EXAMPLE.to_bytes() == data
    assert LedgerEntry.from_bytes(data, "doc") == EXAMPLE
    assert leaf_hash(data) == _block("ledger-leaf-hash")
    assert cbor2.dumps(cbor2.loads(data), canonical=True) == data


@pytest.mark.parametrize(
    "value",
    [
        {"type": "medbadge.ledger.v1", "kind": "custody", "at_ns": 1},
        {"type": "medbadge.ledger.v2", "kind": "custody", "at_ns": 1, "body": {}},
        {"type": "medbadge.ledger.v1", "kind": "video", "at_ns": 1, "body": {}},
        {"type": "medbadge.ledger.v1", "kind": "custody", "at_ns": -1, "body": {}},
        {"type": "medbadge.ledger.v1", "kind": "custody", "at_ns": 1, "body": []},
        {"type": "medbadge.ledger.v1", "kind": "custody", "at_ns": 1, "body": {}, "x": 0},
    ],
    ids=["no-body", "other-type", "unknown-kind", "negative-time", "body-not-map", "extra-key"],
)
def test_entries_off_the_format_are_refused(value: dict[str, object]) -> None:
    with pytest.raises(FormatError, match="leaf 9"):
        LedgerEntry.from_bytes(cbor2.dumps(value, canonical=True), "leaf 9")


def test_non_canonical_bytes_and_unknown_kinds_are_refused() -> None:
    data = EXAMPLE.to_bytes()
    with pytest.raises(FormatError, match="not canonical CBOR"):
        LedgerEntry.from_bytes(data + b"\x00", "leaf 1")
    with pytest.raises(LedgerError, match="kind 'video'"):
        LedgerEntry("video", 1).to_bytes()
