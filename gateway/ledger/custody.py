"""The custody log: who did what to which evidence, when and why, each entry in the ledger.

Every login, view, export, legal hold, retention deletion, key change, alert acknowledgement
or resolution and console user change is a ledger entry
of kind ``custody`` (so it is covered by the signed, time-stamped checkpoints) and a row in
``custody_entries`` (so it can be searched). Both are written in one transaction. Viewing
or exporting footage without a stated reason is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

from evidence.canonical import CanonicalValue, encode
from evidence.errors import EncodingError
from gateway.errors import CustodyError, InvalidTextError, LedgerIntegrityError
from gateway.ledger.ledger import Ledger, LedgerEntry
from gateway.naming import check_justification, check_name
from gateway.storage import Storage
from gateway.storage.custody import CustodyFilter, CustodyRow

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
    "cut-off",
    "lift-cut-off",
    "acknowledge",
    "resolve",
    "user-change",
    "restore",
]
"""What a custody entry records someone doing."""
CUSTODY_ACTIONS: frozenset[str] = frozenset(get_args(CustodyAction))
JUSTIFIED_ACTIONS: frozenset[str] = frozenset({"view", "export"})
"""Actions on footage that are refused without a justification."""
DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAX_TEXT = 2000
"""Longest actor, subject or justification accepted, in characters (a leaf stays small)."""

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

    def __init__(self, ledger: Ledger) -> None:
        """Record into ``ledger``, each search row in its storage with the entry's leaf."""
        self._ledger = ledger
        self._storage = ledger.storage

    @property
    def ledger(self) -> Ledger:
        """The ledger the entries are recorded in."""
        return self._ledger

    @property
    def storage(self) -> Storage:
        """The storage of the ledger and of the search rows (write both in one transaction)."""
        return self._storage

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
        with self._storage.transaction():
            index = self._ledger.append("custody", body, at_ns=at_ns)
            entry_id = self._storage.custody.add(
                index, actor, action, subject, justification, at_ns
            )
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
        where = CustodyFilter(subject, actor, action, since_ns, until_ns)
        rows = self._storage.custody.find(
            where, limit=limit, offset=offset, newest_first=newest_first
        )
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
    try:
        check_name(actor, "actor", limit=MAX_TEXT)
        check_name(subject, "subject", limit=MAX_TEXT)
        if action in JUSTIFIED_ACTIONS:
            check_justification(justification)
        else:
            check_name(justification, "reason", limit=MAX_TEXT)
    except InvalidTextError as error:
        raise CustodyError(str(error)) from None


def _entry(row: CustodyRow) -> CustodyEntry:
    """A CustodyEntry from its row and ledger leaf; LedgerIntegrityError if they disagree."""
    entry_id, index, actor, action = row.entry_id, row.ledger_index, row.actor, row.action
    subject, justification, at_ns, leaf = row.subject, row.justification, row.at_ns, row.leaf
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
