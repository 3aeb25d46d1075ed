"""The custody log: who did what to which evidence, when and why, each entry in the ledger.

Every login, view, export, legal hold, retention deletion, key change, alert acknowledgement
or resolution and console user change is a ledger entry
of kind ``custody`` (so it is covered by the signed, time-stamped checkpoints) and a row in
``custody_entries`` (so it can be searched). Both are written in one transaction. Viewing
or exporting footage without a stated reason is refused.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

from evidence.canonical import CanonicalValue, encode
from evidence.errors import EncodingError
from gateway.errors import CustodyError, LedgerIntegrityError
from gateway.ledger.ledger import Ledger, LedgerEntry, write_transaction

CustodyAction = Literal[
    "login",
    "view",
    "export",
    "legal-hold",
    "release-hold",
    "retention-delete",
    "key-rotation",
    "enrol",
    "revoke",
    "acknowledge",
    "resolve",
    "user-change",
]
"""What a custody entry records someone doing."""
CUSTODY_ACTIONS: frozenset[str] = frozenset(get_args(CustodyAction))
JUSTIFIED_ACTIONS: frozenset[str] = frozenset({"view", "export"})
"""Actions on footage that are refused without a justification."""
DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAX_TEXT = 2000
"""Longest actor, subject or justification accepted, in characters (a leaf stays small)."""

_COLUMNS = (
    "c.entry_id, c.ledger_index, c.actor, c.action, c.subject, c.justification, c.at_ns, l.leaf"
)


@dataclass(frozen=True)
class CustodyEntry:
    """One custody record, with the index of the ledger leaf that holds it."""

    entry_id: int
    ledger_index: int
    actor: str
    action: str
    subject: str
    """What the action was about: an incident id, a badge id or a user name."""
    justification: str
    at_ns: int
    """Gateway time of the action, in ns."""
    detail: Mapping[str, CanonicalValue] = field(default_factory=dict)


class CustodyLog:
    """Records custody entries into the ledger and finds them again."""

    def __init__(self, ledger: Ledger, connection: sqlite3.Connection) -> None:
        """Record into ``ledger``; ``connection`` must be the ledger's own (one transaction)."""
        if connection is not ledger.connection:
            raise CustodyError(
                "the custody log must use the ledger's database connection, so that an entry "
                "and its ledger leaf are written in one transaction"
            )
        self._ledger = ledger
        self._db = connection

    def record(
        self,
        actor: str,
        action: CustodyAction,
        subject: str,
        justification: str = "",
        detail: Mapping[str, CanonicalValue] | None = None,
    ) -> CustodyEntry:
        """Append one custody entry to the ledger and the search table; return it.

        CustodyError if ``actor`` or ``subject`` is empty, ``action`` is unknown, a view or
        export has no justification, or ``detail`` cannot be encoded canonically.
        """
        justification = justification.strip()
        _check(actor, action, subject, justification)
        details: dict[str, CanonicalValue] = dict(detail or {})
        body: dict[str, CanonicalValue] = {
            "actor": actor,
            "action": action,
            "subject": subject,
            "justification": justification,
            "detail": details,
        }
        try:
            encode(body)
        except EncodingError as error:
            raise CustodyError(f"custody detail for {action} of {subject!r}: {error}") from None
        at_ns = self._ledger.now()
        with write_transaction(self._db):
            index = self._ledger.append("custody", body, at_ns=at_ns)
            cursor = self._db.execute(
                "INSERT INTO custody_entries (ledger_index, actor, action, subject,"
                " justification, at_ns) VALUES (?, ?, ?, ?, ?, ?)",
                (index, actor, action, subject, justification, at_ns),
            )
        entry_id = int(cursor.lastrowid or 0)
        return CustodyEntry(entry_id, index, actor, action, subject, justification, at_ns, details)

    def entries(
        self,
        *,
        subject: str | None = None,
        actor: str | None = None,
        action: CustodyAction | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        limit: int = DEFAULT_PAGE,
        offset: int = 0,
        newest_first: bool = False,
    ) -> list[CustodyEntry]:
        """Entries matching every filter given, oldest first unless ``newest_first``.

        ``since_ns`` is inclusive and ``until_ns`` exclusive; ``limit`` is at most MAX_PAGE.
        Each entry is read back from its ledger leaf, which must agree with its row.
        """
        if not 0 <= limit <= MAX_PAGE or offset < 0:
            raise CustodyError(
                f"a custody search takes 0..{MAX_PAGE} entries from offset 0 or more, not "
                f"{limit} from {offset}"
            )
        clauses, values = _filters(subject, actor, action, since_ns, until_ns)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        order = "DESC" if newest_first else "ASC"
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM custody_entries c"  # noqa: S608 - fixed fragments only
            f" JOIN ledger_leaves l ON l.leaf_index = c.ledger_index{where}"
            f" ORDER BY c.entry_id {order} LIMIT ? OFFSET ?",
            (*values, limit, offset),
        ).fetchall()
        return [_entry(row) for row in rows]


def _check(actor: str, action: str, subject: str, justification: str) -> None:
    if action not in CUSTODY_ACTIONS:
        raise CustodyError(
            f"custody action {action!r} is not one of {', '.join(sorted(CUSTODY_ACTIONS))}"
        )
    if not actor.strip() or not subject.strip():
        raise CustodyError(f"a custody entry for {action} needs who acted and on what")
    if action in JUSTIFIED_ACTIONS and not justification:
        raise CustodyError(f"{actor} may not {action} {subject} without a justification; state why")
    for what, text in (("actor", actor), ("subject", subject), ("justification", justification)):
        if len(text) > MAX_TEXT:
            raise CustodyError(f"the custody {what} is longer than {MAX_TEXT} characters")


def _filters(
    subject: str | None,
    actor: str | None,
    action: str | None,
    since_ns: int | None,
    until_ns: int | None,
) -> tuple[list[str], list[object]]:
    clauses: list[str] = []
    values: list[object] = []
    for column, value in (("c.subject", subject), ("c.actor", actor), ("c.action", action)):
        if value is not None:
            clauses.append(f"{column} = ?")
            values.append(value)
    if since_ns is not None:
        clauses.append("c.at_ns >= ?")
        values.append(since_ns)
    if until_ns is not None:
        clauses.append("c.at_ns < ?")
        values.append(until_ns)
    return clauses, values


def _entry(row: tuple[int, int, str, str, str, str, int, bytes]) -> CustodyEntry:
    """A CustodyEntry from its row and ledger leaf; LedgerIntegrityError if they disagree."""
    entry_id, index, actor, action, subject, justification, at_ns, leaf = row
    where = f"custody entry {entry_id} (ledger leaf {index})"
    recorded = LedgerEntry.from_bytes(leaf, where)
    body = recorded.body
    detail = body.get("detail")
    if (
        recorded.kind != "custody"
        or recorded.at_ns != at_ns
        or (body.get("actor"), body.get("action"), body.get("subject")) != (actor, action, subject)
        or body.get("justification") != justification
        or not isinstance(detail, dict)
    ):
        raise LedgerIntegrityError(f"{where}: the search row differs from the ledger leaf")
    return CustodyEntry(entry_id, index, actor, action, subject, justification, at_ns, detail)
