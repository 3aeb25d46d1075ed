"""The console application factory: routes, security headers and error pages, as one ASGI app."""

from __future__ import annotations

import logging
from functools import partial

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.alerts.live import AlertChannel
from gateway.console import api, pages
from gateway.console.core import Console, ConsoleOptions
from gateway.console.headers import SECURITY_HEADERS, TLS_HEADERS
from gateway.console.origin import SameOriginWrites
from gateway.datadir import GatewayDataDir
from gateway.ledger.ledger import open_ledger
from gateway.storage import Storage
from gateway.storage.reserve import DiskReserve

log = logging.getLogger(__name__)


class SecurityHeaders:
    """ASGI middleware adding the security headers to every response (streams untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app``."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Add the headers to ``http.response.start``."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() != b"cache-control" or not scope["path"].startswith("/static")
                ]
                names = {name.lower() for name, _ in headers}
                extra = SECURITY_HEADERS + (TLS_HEADERS if scope.get("scheme") == "https" else ())
                for name, value in extra:
                    if name not in names:
                        headers.append((name, value))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, sending)


def create_app(
    data_dir: GatewayDataDir,
    storage: Storage,
    channel: AlertChannel,
    options: ConsoleOptions | None = None,
) -> Starlette:
    """The console as an ASGI application over the gateway's data directory and storage.

    The console serialises its use of ``storage`` (its own connection) with one lock.
    ``channel`` is the live alert channel the intake publishes to.
    """
    ledger = open_ledger(data_dir, storage, verify=False)
    console = Console(data_dir, ledger, channel, options or ConsoleOptions())
    # every signed-in page shows "disk low" below the reserve (base.html)
    reserve = DiskReserve(data_dir.root, console.options.reserve)
    console.templates.globals["disk_state"] = reserve.state_or_none
    routes: list[BaseRoute] = [*pages.routes(), *api.routes()]

    async def not_found(request: Request, _error: Exception) -> Response:
        return await anyio.to_thread.run_sync(
            partial(console.error_page, request, 404, "Not found", "There is no such page here.")
        )

    async def http_error(request: Request, error: Exception) -> Response:
        status = error.status_code if isinstance(error, HTTPException) else 400
        detail = error.detail if isinstance(error, HTTPException) else str(error)
        return await anyio.to_thread.run_sync(
            partial(console.error_page, request, status, "Request refused", str(detail))
        )

    async def server_error(request: Request, error: Exception) -> Response:
        log.error("console error on %s %s", request.method, request.url.path, exc_info=error)
        message = "The console failed on this request; it is logged. Try again, or ask IT."
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status_code=500)
        return HTMLResponse(
            "<!doctype html><title>Console error</title>"
            '<link rel="stylesheet" href="/static/console.css">'
            f"<main><h1>Something went wrong</h1><p>{message}</p>"
            '<p><a href="/">Back to the console</a></p></main>',
            status_code=500,
        )

    app = Starlette(
        routes=routes,
        exception_handlers={
            404: not_found,
            HTTPException: http_error,
            Exception: server_error,
        },
    )
    app.state.console = console
    app.add_middleware(SameOriginWrites)
    app.add_middleware(SecurityHeaders)
    return app
