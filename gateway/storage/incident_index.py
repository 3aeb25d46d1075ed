"""The incident list: an indexed table kept up with the intake's rows, searched page by page.

``incident_index`` holds one row per incident (badge, incident id, when the gateway heard of
it, location, wearer, the console's status and legal hold), with an index per filter, each
ending in the listing's order, so a filtered page costs an index range scan however many
incidents and segments are stored. The intake writes alerts and incident records without
knowing of the console; ``catch_up`` copies the rows it added since the last call (by
their arrival numbers, decision 1402) before each read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from gateway.errors import ConsoleError
from gateway.storage.database import Database, Row

IncidentStatus = Literal["open", "acknowledged", "resolved"]
STATUSES: tuple[str, ...] = get_args(IncidentStatus)
PAGE_SIZE = 50
MAX_PAGE = 200

_SUMMARY = "badge_id, incident_id, opened_ns, location, wearer, status, legal_hold"
_SOURCES = {
    "alerts": (
        "INSERT INTO incident_index (badge_id, incident_id, opened_ns, location, wearer)"
        " SELECT a.badge_id, a.incident_id, a.received_wall_ns, a.location,"
        " COALESCE(b.wearer, '') FROM alerts a LEFT JOIN badges b"
        " ON b.badge_id = a.badge_id WHERE a.arrival > ? ORDER BY a.arrival"
        " ON CONFLICT (badge_id, incident_id) DO UPDATE SET opened_ns = CASE"
        " WHEN excluded.opened_ns < incident_index.opened_ns THEN excluded.opened_ns"
        " ELSE incident_index.opened_ns END, location = excluded.location"
    ),
    "incidents": (
        "INSERT INTO incident_index (badge_id, incident_id, opened_ns, location, wearer)"
        " SELECT i.badge_id, i.incident_id, i.received_wall_ns, COALESCE(b.location, ''),"
        " COALESCE(b.wearer, '') FROM incidents i LEFT JOIN badges b"
        " ON b.badge_id = i.badge_id WHERE i.arrival > ? ORDER BY i.arrival"
        " ON CONFLICT (badge_id, incident_id) DO NOTHING"
    ),
}
"""How each table the intake writes is copied into the index, after a watermark."""


@dataclass(frozen=True)
class IncidentSummary:
    """One line of the incident list."""

    badge_id: str
    incident_id: str
    opened_ns: int
    """Gateway time the alert (or, without one, the incident record) arrived."""
    location: str
    wearer: str
    status: str
    legal_hold: bool


@dataclass(frozen=True)
class Cursor:
    """Where the next (older) page starts: after this row of the listing order."""

    opened_ns: int
    badge_id: str
    incident_id: str

    def text(self) -> str:
        """The cursor as a URL parameter."""
        return f"{self.opened_ns}:{self.badge_id}:{self.incident_id}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """A cursor from ``text``; ConsoleError if it is not one."""
        parts = text.split(":", 2)
        if len(parts) != 3 or not parts[0].isdigit():
            raise ConsoleError(f"page cursor {text[:80]!r} is not one this console made")
        return cls(int(parts[0]), parts[1], parts[2])


@dataclass(frozen=True)
class IncidentQuery:
    """The filters of an incident search; None (or empty) leaves a filter out."""

    badge_id: str | None = None
    wearer: str | None = None
    location: str | None = None
    status: str | None = None
    since_ns: int | None = None
    """Inclusive."""
    until_ns: int | None = None
    """Exclusive."""
    incident_prefix: str | None = None
    after: Cursor | None = None
    limit: int = PAGE_SIZE


@dataclass(frozen=True)
class IncidentPage:
    """One page of results, newest first, and the cursor of the next page (None: last)."""

    incidents: tuple[IncidentSummary, ...]
    next_cursor: Cursor | None


class IncidentIndex:
    """Reads and maintains ``incident_index``."""

    def __init__(self, db: Database) -> None:
        """Use ``db``."""
        self._db = db

    def catch_up(self) -> int:
        """Index the alerts and incident records stored since the last call; return how many."""
        added = 0
        for source in _SOURCES:
            highest = self._highest(source)
            if highest is None or highest <= self._watermark(source):
                continue
            with self._db.transaction():
                added += self._copy(source, self._watermark(source))
        return added

    def _highest(self, source: str) -> int | None:
        row = self._db.fetch_one(f"SELECT MAX(arrival) FROM {source}")  # noqa: S608 - a fixed name
        return None if row is None or row[0] is None else int(row[0])

    def _watermark(self, source: str) -> int:
        row = self._db.fetch_one(
            "SELECT last_arrival FROM incident_index_sync WHERE source = ?", (source,)
        )
        return 0 if row is None else int(row[0])

    def _copy(self, source: str, after: int) -> int:
        added = self._db.execute(_SOURCES[source], (after,))
        self._db.execute(
            "INSERT INTO incident_index_sync (source, last_arrival) VALUES (?, ?)"
            " ON CONFLICT (source) DO UPDATE SET last_arrival = excluded.last_arrival",
            (source, self._highest(source) or 0),
        )
        return max(added, 0)

    def search(self, query: IncidentQuery) -> IncidentPage:
        """One page of incidents matching every filter of ``query``, newest first."""
        if not 1 <= query.limit <= MAX_PAGE:
            raise ConsoleError(f"an incident page holds 1 to {MAX_PAGE} incidents")
        if query.status is not None and query.status not in STATUSES:
            raise ConsoleError(f"status {query.status!r} is not one of {', '.join(STATUSES)}")
        clauses: list[str] = []
        values: list[object] = []
        for column, value in (
            ("badge_id", query.badge_id),
            ("wearer", query.wearer),
            ("location", query.location),
            ("status", query.status),
        ):
            if value:
                clauses.append(f"{column} = ?")
                values.append(value)
        if query.since_ns is not None:
            clauses.append("opened_ns >= ?")
            values.append(query.since_ns)
        if query.until_ns is not None:
            clauses.append("opened_ns < ?")
            values.append(query.until_ns)
        if query.incident_prefix:
            clauses.append("incident_id >= ? AND incident_id < ?")
            values += [query.incident_prefix, query.incident_prefix + "\U0010ffff"]
        if query.after is not None:
            clauses.append("(opened_ns, badge_id, incident_id) < (?, ?, ?)")
            values += [query.after.opened_ns, query.after.badge_id, query.after.incident_id]
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db.fetch_all(
            f"SELECT {_SUMMARY} FROM incident_index{where}"  # noqa: S608 - fixed fragments only
            " ORDER BY opened_ns DESC, badge_id DESC, incident_id DESC LIMIT ?",
            (*values, query.limit + 1),
        )
        found = tuple(_summary(row) for row in rows[: query.limit])
        following = None
        if len(rows) > query.limit:
            last = found[-1]
            following = Cursor(last.opened_ns, last.badge_id, last.incident_id)
        return IncidentPage(found, following)

    def get(self, badge_id: str, incident_id: str) -> IncidentSummary | None:
        """The list line of one incident, or None."""
        row = self._db.fetch_one(
            f"SELECT {_SUMMARY} FROM incident_index"  # noqa: S608
            " WHERE badge_id = ? AND incident_id = ?",
            (badge_id, incident_id),
        )
        return None if row is None else _summary(row)

    def require(self, badge_id: str, incident_id: str) -> IncidentSummary:
        """The list line of one incident; ConsoleError if there is no such incident."""
        found = self.get(badge_id, incident_id)
        if found is None:
            raise ConsoleError(f"there is no incident {incident_id[:80]} of badge {badge_id[:80]}")
        return found

    def set_status(self, badge_id: str, incident_id: str, status: IncidentStatus) -> None:
        """Record the console's status of an incident."""
        self._db.execute(
            "UPDATE incident_index SET status = ? WHERE badge_id = ? AND incident_id = ?",
            (status, badge_id, incident_id),
        )

    def set_legal_hold(self, badge_id: str, incident_id: str, held: bool) -> None:
        """Place or release a legal hold on an incident."""
        self._db.execute(
            "UPDATE incident_index SET legal_hold = ? WHERE badge_id = ? AND incident_id = ?",
            (int(held), badge_id, incident_id),
        )

    def choices(self, column: Literal["location", "wearer", "badge_id"]) -> list[str]:
        """The distinct values of ``column`` (for the search form's lists), at most 500."""
        rows = self._db.fetch_all(
            f"SELECT DISTINCT {column} FROM incident_index"  # noqa: S608 - a Literal column
            f" WHERE {column} != '' ORDER BY {column} LIMIT 500"
        )
        return [str(row[0]) for row in rows]


def _summary(row: Row) -> IncidentSummary:
    badge_id, incident_id, opened, location, wearer, status, hold = row
    return IncidentSummary(badge_id, incident_id, opened, location, wearer, status, bool(hold))
