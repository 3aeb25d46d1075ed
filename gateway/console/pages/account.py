"""The signed-in user's two-step login: set up TOTP, replace recovery codes.

A user whose role needs a second factor and who has none is sent here straight after the
password, and the session opens nothing else until a code from the new secret confirms it
(decision 1761).
"""

from __future__ import annotations

from markupsafe import Markup
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway.console.core import HOME, Call, Console, handler
from gateway.console.users import ROLE_TITLES
from gateway.errors import ConsoleError


@handler("account")
def second_factor_page(console: Console, call: Call) -> Response:
    """The user's two-step login: its state, and how to set it up or renew recovery codes."""
    username = call.session.username
    return console.page(
        call,
        "account.html",
        step="state",
        state=console.second_factor.state(username, call.session.role),
        pending=call.session.second_factor_pending,
        role_needs=ROLE_TITLES[call.session.role],
        csrf=call.session.csrf_token,
    )


@handler("account")
def begin(console: Console, call: Call) -> Response:
    """A new secret to scan or type into an authenticator app, and the form to confirm it."""
    if console.second_factor.enrolled(call.session.username):
        raise ConsoleError(
            "two-step login is set up already; an administrator can reset it if the phone is lost"
        )
    enrolment = console.second_factor.begin(call.session.username)
    return console.page(
        call,
        "account.html",
        step="scan",
        secret=enrolment.secret,
        uri=enrolment.uri,
        qr=Markup(enrolment.qr_svg()),  # noqa: S704 - segno's SVG of our own URI
        csrf=call.session.csrf_token,
    )


@handler("account")
def confirm(console: Console, call: Call) -> Response:
    """Confirm the new secret with its current code; show the recovery codes once."""
    username = call.session.username
    codes = console.second_factor.confirm(username, call.field("code"))
    console.sessions.second_factor_done(call.request.cookies.get(console.session_cookie, ""))
    console.custody.record(
        username, "user-change", username, detail={"change": "second factor set up"}
    )
    return console.page(
        call, "account.html", step="codes", codes=codes, home=HOME[call.session.role]
    )


@handler("account")
def renew_recovery_codes(console: Console, call: Call) -> Response:
    """New recovery codes (the old ones stop working), after a current one-time code."""
    username = call.session.username
    if console.limiter.retry_after(username, call.client) > 0:
        raise ConsoleError("too many wrong codes from here; wait a minute and try again")
    if console.second_factor.verify(username, call.field("code")) != "totp":
        console.limiter.failed(username, call.client)  # a wrong code counts as at the login
        raise ConsoleError("type the current six-digit code of your authenticator app")
    codes = console.second_factor.new_recovery_codes(username)
    console.custody.record(
        username, "user-change", username, detail={"change": "recovery codes replaced"}
    )
    return console.page(
        call, "account.html", step="codes", codes=codes, home=HOME[call.session.role]
    )


def routes() -> list[BaseRoute]:
    """The account routes."""
    return [
        Route("/account/second-factor", second_factor_page),
        Route("/account/second-factor/begin", begin, methods=["POST"]),
        Route("/account/second-factor/confirm", confirm, methods=["POST"]),
        Route("/account/recovery-codes", renew_recovery_codes, methods=["POST"]),
    ]
