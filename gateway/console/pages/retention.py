"""The retention page: footage past its keeping time, and deleting it on the record."""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.console.core import Call, Console, handler
from gateway.errors import ConsoleError, RetentionError
from gateway.ledger import retention


@handler("evidence.retention")
def retention_page(console: Console, call: Call) -> Response:
    """The incidents whose footage is past its retention period and not on legal hold."""
    console.index.catch_up()
    due = retention.due_incidents(
        console.storage, console.ledger.now(), console.options.retention_days
    )
    return console.page(
        call,
        "retention.html",
        due=due,
        days=console.options.retention_days,
        csrf=call.session.csrf_token,
        deleted=call.query("deleted"),
    )


@handler("evidence.retention")
def apply_retention(console: Console, call: Call) -> Response:
    """Delete one due incident's footage (custody entry "retention-delete")."""
    console.index.catch_up()
    badge_id, incident_id = call.field("badge"), call.field("incident")
    justification = call.field("justification")
    if not justification:
        raise ConsoleError("say why this footage is deleted; the custody log records it")
    due = retention.due_incidents(
        console.storage, console.ledger.now(), console.options.retention_days
    )
    chosen = [item for item in due if (item.badge_id, item.incident_id) == (badge_id, incident_id)]
    if not chosen:
        raise ConsoleError(
            f"incident {incident_id[:80]} of badge {badge_id[:80]} is not due for deletion "
            "(on legal hold, within its retention period, already deleted or unknown)"
        )
    try:
        retention.delete_incident_footage(
            console.custody,
            chosen[0],
            actor=call.session.username,
            justification=justification,
        )
    except RetentionError as error:
        raise ConsoleError(str(error)) from None
    return RedirectResponse(f"/retention?deleted={incident_id}", status_code=303)


def routes() -> list[BaseRoute]:
    """The retention routes."""
    return [
        Route("/retention", retention_page),
        Route("/retention", apply_retention, methods=["POST"]),
    ]
