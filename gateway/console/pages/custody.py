"""The custody log page: who did what to which evidence, when and why."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway.console.core import Call, Console, handler
from gateway.console.queries import custody_query
from gateway.ledger.custody import CUSTODY_ACTIONS


@handler("custody.read")
def custody_page(console: Console, call: Call) -> Response:
    """The custody log, newest first, filtered by actor, action, subject and date."""
    query = custody_query(call)
    entries = query.search(console.custody)
    filters = {
        key: call.query(key)
        for key in ("subject", "actor", "action", "from", "to")
        if call.query(key)
    }
    return console.page(
        call,
        "custody.html",
        entries=entries,
        filters=filters,
        actions=sorted(CUSTODY_ACTIONS),
        page=query.page,
    )


def routes() -> list[BaseRoute]:
    """The custody routes."""
    return [
        Route("/custody", custody_page),
    ]
