"""The console's pages, one module per area of the console."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from gateway.console.core import static_directory
from gateway.console.pages import (
    account,
    alerts,
    badges,
    custody,
    footage,
    incidents,
    ledger,
    login,
    retention,
    users,
)

__all__ = ["routes"]


def routes() -> list[BaseRoute]:
    """Every page route, and the static files."""
    return [
        *login.routes(),
        *account.routes(),
        *alerts.routes(),
        *badges.routes(),
        *incidents.routes(),
        *footage.routes(),
        *retention.routes(),
        *custody.routes(),
        *ledger.routes(),
        *users.routes(),
        Mount("/static", StaticFiles(directory=static_directory()), name="static"),
    ]
