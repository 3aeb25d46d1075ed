"""The ledger's checkpoints as stored: tree size, root, signed note and RFC 3161 token."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.storage.database import Database, Row, blob


@dataclass(frozen=True)
class CheckpointRow:
    """A checkpoint's row, not yet checked against its note (``gateway.ledger`` does that)."""

    number: int
    size: int
    root: bytes
    note: bytes
    timestamp_token: bytes | None
    created_at_ns: int


class Checkpoints:
    """The ``checkpoints`` table."""

    def __init__(self, db: Database) -> None:
        """Use ``db``."""
        self._db = db

    def add(self, size: int, root: bytes, note: bytes, created_at_ns: int) -> int:
        """Store a signed checkpoint without a token; return its number (higher than any
        before it)."""
        row = self._db.fetch_one(
            "INSERT INTO checkpoints (size, root, note, created_at_ns) VALUES (?, ?, ?, ?)"
            " RETURNING checkpoint_id",
            (size, root, note, created_at_ns),
        )
        if row is None:
            raise AssertionError("an INSERT ... RETURNING returns its row")
        return int(row[0])

    def set_token(self, number: int, token: bytes) -> None:
        """Give checkpoint ``number`` its time-stamp token, unless it has one already."""
        self._db.execute(
            "UPDATE checkpoints SET timestamp_token = ? WHERE checkpoint_id = ?"
            " AND timestamp_token IS NULL",
            (token, number),
        )

    def latest(self) -> CheckpointRow | None:
        """The most recent checkpoint's row, or None before the first."""
        row = self._db.fetch_one(
            "SELECT checkpoint_id, size, root, note, timestamp_token, created_at_ns"
            " FROM checkpoints ORDER BY checkpoint_id DESC LIMIT 1"
        )
        return None if row is None else _checkpoint(row)

    def roots(self, up_to_size: int) -> list[tuple[int, bytes]]:
        """Each distinct (size, root) of the checkpoints of at most ``up_to_size`` leaves,
        smallest first."""
        rows = self._db.fetch_all(
            "SELECT DISTINCT size, root FROM checkpoints WHERE size <= ? ORDER BY size",
            (up_to_size,),
        )
        return [(int(size), blob(root)) for size, root in rows]


def _checkpoint(row: Row) -> CheckpointRow:
    number, size, root, note, token, created = row
    return CheckpointRow(
        int(number),
        int(size),
        blob(root),
        blob(note),
        None if token is None else blob(token),
        int(created),
    )
