"""The console's search forms read once, for the pages and the API alike."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from gateway.console.core import Call
from gateway.errors import ConsoleError
from gateway.ledger.custody import CUSTODY_ACTIONS, CustodyAction, CustodyEntry, CustodyLog
from gateway.storage.incident_index import Cursor, IncidentQuery

CUSTODY_PAGE = 100
"""Custody entries per page, on the page and in the API."""


def incident_query(call: Call) -> IncidentQuery:
    """The search form's filters as a query."""
    after = call.query("after")
    limit = call.query("limit")
    return IncidentQuery(
        badge_id=call.query("badge") or None,
        wearer=call.query("wearer") or None,
        location=call.query("location") or None,
        status=call.query("status") or None,
        since_ns=date_ns(call.query("from"), "from"),
        until_ns=date_ns(call.query("to"), "to", end_of_day=True),
        incident_prefix=call.query("q") or None,
        after=Cursor.parse(after) if after else None,
        limit=int(limit) if limit.isdigit() else 50,
    )


def date_ns(text: str, what: str, *, end_of_day: bool = False) -> int | None:
    """A YYYY-MM-DD (UTC) date as ns: its start, or the next day's start for ``to``."""
    if not text:
        return None
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ConsoleError(f"the {what} date {text[:20]!r} is not YYYY-MM-DD") from None
    seconds = int(day.timestamp()) + (86_400 if end_of_day else 0)
    return seconds * 1_000_000_000


@dataclass(frozen=True)
class CustodyQuery:
    """The filters and page of a custody log search; None leaves a filter out."""

    subject: str | None
    actor: str | None
    action: CustodyAction | None
    since_ns: int | None
    until_ns: int | None
    offset: int
    """How many entries, newest first, come before the page."""

    @property
    def page(self) -> int:
        """Which page of CUSTODY_PAGE entries this is, from 0."""
        return self.offset // CUSTODY_PAGE

    def search(self, custody: CustodyLog) -> list[CustodyEntry]:
        """The page of entries this query asks for, newest first."""
        return custody.entries(
            subject=self.subject,
            actor=self.actor,
            action=self.action,
            since_ns=self.since_ns,
            until_ns=self.until_ns,
            limit=CUSTODY_PAGE,
            offset=self.offset,
            newest_first=True,
        )


def custody_query(call: Call) -> CustodyQuery:
    """The custody search's filters (subject, actor, action, from, to) and where its page
    starts (``offset`` entries, or ``page`` pages); ConsoleError for an unknown action or a
    bad number."""
    offset = _whole_number(call.query("offset"), "offset")
    page = _whole_number(call.query("page"), "page")
    return CustodyQuery(
        subject=call.query("subject") or None,
        actor=call.query("actor") or None,
        action=_custody_action(call.query("action")),
        since_ns=date_ns(call.query("from"), "from"),
        until_ns=date_ns(call.query("to"), "to", end_of_day=True),
        offset=offset or page * CUSTODY_PAGE,
    )


def _custody_action(text: str) -> CustodyAction | None:
    if not text:
        return None
    if text not in CUSTODY_ACTIONS:
        raise ConsoleError(f"{text[:40]!r} is not a custody action")
    return cast(CustodyAction, text)


def _whole_number(text: str, what: str) -> int:
    if not text:
        return 0
    if not text.isdigit() or len(text) > 9:
        raise ConsoleError(f"the {what} {text[:20]!r} is not a whole number")
    return int(text)
