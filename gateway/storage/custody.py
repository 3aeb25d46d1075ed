"""The custody log's search rows: one per custody ledger entry, found by who, what and when."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.storage.database import Database, blob


@dataclass(frozen=True)
class CustodyRow:
    """A custody entry's search row, with the bytes of the ledger leaf it names."""

    entry_id: int
    ledger_index: int
    actor: str
    action: str
    subject: str
    justification: str
    at_ns: int
    leaf: bytes


@dataclass(frozen=True)
class CustodyFilter:
    """Which custody rows a search wants; None leaves a filter out."""

    subject: str | None = None
    actor: str | None = None
    action: str | None = None
    since_ns: int | None = None
    """Inclusive."""
    until_ns: int | None = None
    """Exclusive."""


_COLUMNS = (
    "c.entry_id, c.ledger_index, c.actor, c.action, c.subject, c.justification, c.at_ns, l.leaf"
)


class CustodyEntries:
    """The ``custody_entries`` table (``gateway.ledger.custody`` writes it with each leaf)."""

    def __init__(self, db: Database) -> None:
        """Use ``db``."""
        self._db = db

    def add(  # noqa: PLR0917 - the row's columns, in order
        self,
        ledger_index: int,
        actor: str,
        action: str,
        subject: str,
        justification: str,
        at_ns: int,
    ) -> int:
        """Add the search row of the custody entry at ``ledger_index``; return its number."""
        row = self._db.fetch_one(
            "INSERT INTO custody_entries (ledger_index, actor, action, subject, justification,"
            " at_ns) VALUES (?, ?, ?, ?, ?, ?) RETURNING entry_id",
            (ledger_index, actor, action, subject, justification, at_ns),
        )
        if row is None:
            raise AssertionError("an INSERT ... RETURNING returns its row")
        return int(row[0])

    def find(
        self, where: CustodyFilter, *, limit: int, offset: int, newest_first: bool
    ) -> list[CustodyRow]:
        """The rows matching every filter of ``where``, in entry order, a page at a time."""
        clauses: list[str] = []
        values: list[object] = []
        for column, value in (
            ("c.subject", where.subject),
            ("c.actor", where.actor),
            ("c.action", where.action),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                values.append(value)
        if where.since_ns is not None:
            clauses.append("c.at_ns >= ?")
            values.append(where.since_ns)
        if where.until_ns is not None:
            clauses.append("c.at_ns < ?")
            values.append(where.until_ns)
        condition = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        order = "DESC" if newest_first else "ASC"
        rows = self._db.fetch_all(
            f"SELECT {_COLUMNS} FROM custody_entries c"  # noqa: S608 - fixed fragments only
            f" JOIN ledger_leaves l ON l.leaf_index = c.ledger_index{condition}"
            f" ORDER BY c.entry_id {order} LIMIT ? OFFSET ?",
            (*values, limit, offset),
        )
        return [
            CustodyRow(entry, index, actor, action, subject, why, at_ns, blob(leaf))
            for entry, index, actor, action, subject, why, at_ns, leaf in rows
        ]
