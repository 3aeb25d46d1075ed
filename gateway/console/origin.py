"""Same-origin check on every state-changing request, beside the CSRF token.

A POST (or PUT, PATCH, DELETE) whose ``Origin`` header names another origin than the one
the request was sent to (its scheme and ``Host``) is refused with 403 before any handler
runs. ``Origin: null`` (an opaque origin: a sandboxed frame, a ``data:`` page, or a
cross-origin request under our ``Referrer-Policy: same-origin``) is refused too. Without an
``Origin`` header the ``Referer``, if any, must be of this origin; a request carrying
neither (a script, not a browser) still needs the session's CSRF token (decision 1763).
"""

from __future__ import annotations

import html
import logging
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of ``url`` in lower case, default ports left out; None if
    ``url`` has no scheme and host."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    scheme = parts.scheme.lower()
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}:{port}"
    return f"{scheme}://{host}"


def cross_origin_reason(scheme: str, headers: Headers) -> str | None:
    """Why a state-changing request with these headers is cross-origin, or None if it is not."""
    own = origin_of(f"{scheme}://{headers.get('host', '')}")
    origin = headers.get("origin")
    if origin is not None:
        if origin.strip().lower() == "null":
            return "it comes from an opaque origin (Origin: null)"
        if own is None or origin_of(origin) != own:
            return f"it comes from {origin[:100]!r}, not from this console ({own})"
        return None
    referer = headers.get("referer")
    if referer is not None and (own is None or origin_of(referer) != own):
        return f"it was sent from a page of {origin_of(referer)!r}, not of this console ({own})"
    return None


class SameOriginWrites:
    """ASGI middleware refusing cross-origin state-changing requests with a clear 403."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app``."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a cross-origin write; pass everything else on."""
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            reason = cross_origin_reason(scope.get("scheme", "http"), Headers(scope=scope))
            if reason is not None:
                method, path = scope["method"], scope["path"]
                log.warning("console refused a cross-origin %s %s: %s", method, path, reason)
                await _refusal(scope["path"], reason)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _refusal(path: str, reason: str) -> Response:
    message = f"Refused: this request did not come from a page of this console; {reason}."
    if path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=403)
    return HTMLResponse(
        "<!doctype html><title>Request refused</title>"
        '<link rel="stylesheet" href="/static/console.css">'
        f"<main><h1>Request refused</h1><p>{html.escape(message)}</p>"
        '<p><a href="/">Back to the console</a></p></main>',
        status_code=403,
    )
