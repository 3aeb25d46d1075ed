"""The ledger's leaves as stored: each leaf's bytes and hash under its index, in order."""

from __future__ import annotations

from collections.abc import Iterator

from gateway.storage.database import Database, blob


class Leaves:
    """The ``ledger_leaves`` table (the Merkle log in ``gateway.ledger`` reads and appends)."""

    def __init__(self, db: Database) -> None:
        """Use ``db``."""
        self._db = db

    def size(self) -> int:
        """One past the highest stored leaf index (a gap is found by verification, not here)."""
        row = self._db.fetch_one("SELECT MAX(leaf_index) FROM ledger_leaves")
        return 0 if row is None or row[0] is None else int(row[0]) + 1

    def append(self, index: int, leaf: bytes, leaf_hash: bytes, at_ns: int) -> None:
        """Store leaf ``index`` (inside the caller's transaction)."""
        self._db.execute(
            "INSERT INTO ledger_leaves (leaf_index, leaf, leaf_hash, appended_at_ns)"
            " VALUES (?, ?, ?, ?)",
            (index, leaf, leaf_hash, at_ns),
        )

    def leaf(self, index: int) -> bytes | None:
        """The bytes of leaf ``index``, or None when there is none."""
        row = self._db.fetch_one("SELECT leaf FROM ledger_leaves WHERE leaf_index = ?", (index,))
        return None if row is None else blob(row[0])

    def hashes(self, start: int, stop: int) -> list[bytes]:
        """The stored hashes of leaves ``[start, stop)`` in order (fewer if some are missing)."""
        rows = self._db.fetch_all(
            "SELECT leaf_hash FROM ledger_leaves WHERE leaf_index >= ? AND leaf_index < ?"
            " ORDER BY leaf_index",
            (start, stop),
        )
        return [blob(row[0]) for row in rows]

    def scan(self) -> Iterator[tuple[int, bytes, bytes]]:
        """Every leaf as (index, bytes, stored hash), in index order, one at a time."""
        for index, leaf, leaf_hash in self._db.scan(
            "SELECT leaf_index, leaf, leaf_hash FROM ledger_leaves ORDER BY leaf_index"
        ):
            yield int(index), blob(leaf), blob(leaf_hash)

    def below(self, size: int) -> Iterator[bytes]:
        """The bytes of leaves ``0..size-1``, in index order, one at a time."""
        for (leaf,) in self._db.scan(
            "SELECT leaf FROM ledger_leaves WHERE leaf_index < ? ORDER BY leaf_index", (size,)
        ):
            yield blob(leaf)
