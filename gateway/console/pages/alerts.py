"""The live alert page: open alerts, acknowledging and resolving them, the alert stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from gateway.alerts.live import LiveItem, Overflow, alert_document
from gateway.console.actions import AlertActionKind
from gateway.console.core import Call, Console, handler, safe_next
from gateway.errors import ConsoleError
from gateway.naming import shown
from gateway.storage.incident_index import IncidentQuery

STREAM_POLL_S = 0.5
"""How long a live stream waits on the channel before checking that its browser is there."""
KEEPALIVE_S = 15.0
"""A comment line this often keeps proxies from closing a quiet stream."""
_stream_threads = anyio.CapacityLimiter(256)


@handler("alerts")
def alerts_page(console: Console, call: Call) -> Response:
    """Open and acknowledged alerts, newest first; new ones arrive over /alerts/stream."""
    console.index.catch_up()
    active = [
        summary
        for status in ("open", "acknowledged")
        for summary in console.index.search(IncidentQuery(status=status, limit=100)).incidents
    ]
    active.sort(key=lambda summary: summary.opened_ns, reverse=True)
    return console.page(call, "alerts.html", alerts=active)


@handler("alerts")
def act_on_alert(console: Console, call: Call) -> Response:
    """Acknowledge or resolve an alert (POST, CSRF-checked), then back to the alerts."""
    action = call.path("action")
    if action not in ("acknowledge", "resolve"):
        raise ConsoleError(f"{action[:40]!r} is not something done to an alert")
    kind: AlertActionKind = "acknowledge" if action == "acknowledge" else "resolve"
    console.index.catch_up()
    console.desk.act(call.session.username, call.path("badge"), call.path("incident"), kind)
    back = safe_next(call.field("next")) or "/alerts"
    return RedirectResponse(back, status_code=303)


@handler("alerts")
def _stream_permission(console: Console, call: Call) -> Response:
    """Only checks that the caller may watch alerts (the stream itself is async)."""
    return Response(status_code=204)


async def alert_stream(request: Request) -> Response:
    """Server-sent events: each new alert as an ``alert`` event with its JSON document."""
    allowed = await _stream_permission(request)
    if allowed.status_code != 204:
        return allowed
    console: Console = request.app.state.console
    subscription = console.channel.subscribe()

    async def events() -> AsyncIterator[str]:
        try:
            yield "retry: 1000\n\n"
            quiet = 0.0
            while not subscription.closed:
                item: LiveItem | None = await anyio.to_thread.run_sync(
                    subscription.get, STREAM_POLL_S, limiter=_stream_threads
                )
                if item is None:
                    quiet += STREAM_POLL_S
                    if await request.is_disconnected():
                        return
                    if quiet >= KEEPALIVE_S:
                        quiet = 0.0
                        yield ": still here\n\n"
                    continue
                quiet = 0.0
                if isinstance(item, Overflow):
                    yield f"event: overflow\ndata: {json.dumps({'lost': item.lost})}\n\n"
                else:
                    data = json.dumps(shown(alert_document(item)), separators=(",", ":"))
                    yield f"event: alert\ndata: {data}\n\n"
        except (asyncio.CancelledError, anyio.get_cancelled_exc_class()):
            raise
        finally:
            subscription.close()

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


def routes() -> list[BaseRoute]:
    """The alerts routes."""
    return [
        Route("/alerts", alerts_page),
        Route("/alerts/stream", alert_stream),
        Route("/alerts/{badge}/{incident}/{action}", act_on_alert, methods=["POST"]),
    ]
