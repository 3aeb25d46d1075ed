"""The badge pages: presence and health, enrolment by one-time code, revocation,
cut-offs and their lifting."""

from __future__ import annotations

import time

from markupsafe import Markup
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from evidence.errors import EvidenceError
from gateway.console.core import Call, Console, handler
from gateway.console.users import Role
from gateway.enrolment.enrolment import DEFAULT_CODE_SECONDS, IssuedCode, issue_code
from gateway.enrolment.qr import svg_qr
from gateway.errors import ConsoleError, GatewayError


def badges_page(console: Console, call: Call, issued: IssuedCode | None = None) -> Response:
    """Every badge with its presence and health (and a code just issued, if any)."""
    badges = [(badge, console.badge_states.get(badge.badge_id)) for badge in console.registry.all()]
    return console.page(
        call,
        "badges.html",
        badges=badges,
        cutoffs=console.storage.cutoffs.all(),
        lifted=call.query("lifted"),
        csrf=call.session.csrf_token,
        can_manage=call.session.role is Role.ADMIN,
        issued=issued,
        issued_qr=None if issued is None else Markup(svg_qr(issued)),  # noqa: S704 - drawn by segno from the checked code
        code_minutes=DEFAULT_CODE_SECONDS // 60,
        revoked=call.query("revoked"),
        now_ns=time.time_ns(),
        low_battery_percent=console.options.low_battery_percent,
    )


@handler("badges.manage")
def enrol(console: Console, call: Call) -> Response:
    """Issue a one-time code with which the badge enrols its own key (``rotate``: a new one).

    The code is shown on this response only, never in a URL; the badge sends it to the
    enrolment listener (``gateway enroll --serve``) with its public key.
    """
    badge_id = call.field("badge_id").lower()
    try:
        issued = issue_code(
            console.data_dir,
            badge_id,
            wearer=call.field("wearer"),
            location=call.field("location"),
            broker_host=call.field("broker_host") or console.options.broker_host,
            broker_port=_port(call.field("broker_port"), console.options.broker_port),
            operator=call.session.username,
            rotate=call.field("rotate") == "yes",
        )
    except (GatewayError, EvidenceError) as error:
        raise ConsoleError(str(error)) from None
    return badges_page(console, call, issued=issued)


def _port(text: str, default: int) -> int:
    if not text:
        return default
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ConsoleError(f"broker port {text[:10]!r} is not a port number")
    return int(text)


@handler("badges.manage")
def revoke(console: Console, call: Call) -> Response:
    """Revoke a badge: the intake refuses it now, the running gateway's broker at once."""
    badge_id = call.path("badge")
    reason = call.field("reason")
    if not reason:
        raise ConsoleError("say why the badge is revoked (lost, stolen, retired...)")
    console.registry.revoke(badge_id, operator=call.session.username, reason=reason)
    console.custody.record(call.session.username, "revoke", badge_id, reason)
    return RedirectResponse(f"/badges?revoked={badge_id}", status_code=303)


@handler("badges.read")
def badges(console: Console, call: Call) -> Response:
    """The badges page."""
    return badges_page(console, call)


@handler("badges.manage")
def lift(console: Console, call: Call) -> Response:
    """Lift a badge's cut-off: the running gateway lets it log in to the broker again."""
    badge_id = call.path("badge")
    lifted = console.storage.cutoffs.lift(badge_id)
    if lifted is None:
        raise ConsoleError(f"badge {badge_id} is not cut off")
    detail = {"cut_off_at_ns": lifted.cut_off_at_ns}
    console.custody.record(call.session.username, "lift-cut-off", badge_id, detail=detail)
    return RedirectResponse(f"/badges?lifted={badge_id}", status_code=303)


def routes() -> list[BaseRoute]:
    """The badges routes."""
    return [
        Route("/badges", badges),
        Route("/badges/enrol", enrol, methods=["POST"]),
        Route("/badges/{badge}/revoke", revoke, methods=["POST"]),
        Route("/badges/{badge}/lift-cutoff", lift, methods=["POST"]),
    ]
