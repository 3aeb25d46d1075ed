"""The login and logout pages, and where each role starts."""

from __future__ import annotations

import logging
import math
from functools import partial

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from evidence.text import escape_unsafe
from gateway.console.auth import CSRF_FIELD, LOGIN_CSRF_COOKIE, new_token, tokens_match
from gateway.console.core import (
    HOME,
    SECOND_FACTOR_SETUP,
    Call,
    Console,
    client_address,
    handler,
    read_form,
    safe_next,
)
from gateway.console.users import MAX_PASSWORD

log = logging.getLogger(__name__)


async def login_page(request: Request) -> Response:
    """The login form, with a fresh double-submit CSRF cookie."""
    console: Console = request.app.state.console
    return _login_form(console, request, "", 200)


def _login_form(console: Console, request: Request, message: str, status: int) -> Response:
    token = new_token()
    body = console.render(
        "login.html",
        None,
        csrf=token,
        message=message,
        next=safe_next(request.query_params.get("next", "")),
    )
    response = HTMLResponse(body, status_code=status)
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=console.options.secure_cookies,
        path="/login",
    )
    return response


async def login(request: Request) -> Response:
    """Check the password (rate-limited), record the login in the custody log, start a session."""
    console: Console = request.app.state.console
    form = await read_form(request)
    return await anyio.to_thread.run_sync(partial(_login, console, request, form))


def _login(console: Console, request: Request, form: dict[str, str]) -> Response:
    if not tokens_match(request.cookies.get(LOGIN_CSRF_COOKIE, ""), form.get(CSRF_FIELD)):
        return _login_form(console, request, "The login form expired; please try again.", 400)
    username = form.get("username", "").strip().lower()[:64]
    password = form.get("password", "")[:MAX_PASSWORD]
    client = client_address(request)
    with console.lock:
        wait = console.limiter.retry_after(username, client)
        if wait <= 0:
            # counted before the password is checked, so that tries sent at once cannot all
            # pass the delay; a good login clears the count again
            console.limiter.failed(username, client)
    if wait > 0:
        log.warning("console login for %r from %s delayed: recent failures", username, client)
        seconds = max(1, math.ceil(wait))
        message = f"Too many failed logins from here. Try again in {seconds} second(s)."
        response = _login_form(console, request, message, 429)
        response.headers["retry-after"] = str(seconds)
        return response
    user = console.users.authenticate(username, password) if username else None
    with console.lock:
        factor = "none"
        if user is not None and console.second_factor.enrolled(user.username):
            factor = console.second_factor.verify(user.username, form.get("code", "")) or ""
            if not factor:
                user = None
        if user is None:
            if username:
                named = escape_unsafe(username)  # whatever was typed, shown safely
                console.custody.record(
                    named, "login", named, detail={"outcome": "refused", "client": client}
                )
            message = "Wrong user name, password or one-time code."
            return _login_form(console, request, message, 401)
        setup = factor == "none" and console.second_factor.required(user.role)
        console.limiter.succeeded(username, client)
        detail = {"outcome": "accepted", "client": client, "second_factor": factor}
        if setup:
            detail["second_factor"] = "to be set up"
        console.custody.record(username, "login", username, detail=detail)
        token, session = console.sessions.open(user, client, second_factor_pending=setup)
    target = safe_next(form.get("next", "")) or HOME[session.role]
    if setup:
        target = SECOND_FACTOR_SETUP
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        console.session_cookie,
        token,
        max_age=int(console.options.session_max_s),
        httponly=True,
        samesite="strict",
        secure=console.options.secure_cookies,
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


async def logout(request: Request) -> Response:
    """End the session the cookie names, server-side, and go back to the login page.

    The session ends whether or not the form's CSRF token is right (decision 1762): a forged
    logout can do no more than log someone out, and a logout that left the session valid
    behind a cleared cookie would leave a stolen cookie working.
    """
    console: Console = request.app.state.console
    await read_form(request)
    return await anyio.to_thread.run_sync(partial(_logout, console, request))


def _logout(console: Console, request: Request) -> Response:
    token = request.cookies.get(console.session_cookie, "")
    if token:
        with console.lock:
            console.sessions.close(token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(console.session_cookie, path="/")
    return response


@handler("session")
def home(console: Console, call: Call) -> Response:
    """Where the signed-in user's role starts."""
    return RedirectResponse(HOME[call.session.role], status_code=303)


async def root(request: Request) -> Response:
    """``/``: the role's start page, or the login page."""
    console: Console = request.app.state.console

    def find() -> Response:
        with console.lock:
            session = console.sessions.find(request.cookies.get(console.session_cookie))
        target = "/login" if session is None else HOME[session.role]
        return RedirectResponse(target, status_code=303)

    return await anyio.to_thread.run_sync(find)


def routes() -> list[BaseRoute]:
    """The login routes."""
    return [
        Route("/", root),
        Route("/home", home),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]
