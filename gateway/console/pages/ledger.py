"""The ledger page: its size, the latest signed checkpoint and its time-stamp."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from evidence.ledger.checkpoint import format_vkey
from gateway.console.core import Call, Console, handler


@handler("ledger.read")
def ledger_page(console: Console, call: Call) -> Response:
    """The ledger: its size, the latest signed checkpoint and its time-stamp."""
    checkpoint = console.ledger.latest_checkpoint()
    return console.page(
        call,
        "ledger.html",
        size=console.ledger.size,
        checkpoint=checkpoint,
        note=checkpoint.note.decode("utf-8", "replace") if checkpoint is not None else "",
        vkey=_vkey(console),
    )


def _vkey(console: Console) -> str:
    return format_vkey(console.ledger.verifier)


def routes() -> list[BaseRoute]:
    """The ledger routes."""
    return [
        Route("/ledger", ledger_page),
    ]
