"""The console's pages: login, live alerts, badges, incidents, playback, custody, ledger, users."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import tarfile
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from evidence.errors import EvidenceError
from evidence.ledger.checkpoint import format_vkey
from gateway.alerts.live import LiveItem, Overflow, alert_document
from gateway.console import casefile, court
from gateway.console.actions import AlertActionKind
from gateway.console.auth import CSRF_FIELD, LOGIN_CSRF_COOKIE, new_token, tokens_match
from gateway.console.core import (
    HOME,
    Call,
    Console,
    client_address,
    handler,
    read_form,
    static_directory,
)
from gateway.console.playback import CONTENT_TYPE, fragmented_mp4
from gateway.console.users import MAX_PASSWORD, ROLE_TITLES, Role, parse_role
from gateway.enrolment.enrolment import enroll_badge
from gateway.errors import ConsoleError, GatewayError, PlaybackError, RetentionError
from gateway.ledger import retention
from gateway.ledger.custody import CUSTODY_ACTIONS, MAX_PAGE
from gateway.storage.incident_index import Cursor, IncidentQuery

log = logging.getLogger(__name__)

STREAM_POLL_S = 0.5
"""How long a live stream waits on the channel before checking that its browser is there."""
KEEPALIVE_S = 15.0
"""A comment line this often keeps proxies from closing a quiet stream."""
_stream_threads = anyio.CapacityLimiter(256)


# -- login -----------------------------------------------------------------------------


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
        next=_safe_next(request.query_params.get("next", "")),
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
    wait = console.limiter.retry_after(username, client)
    if wait > 0:
        log.warning("console login for %r from %s refused: too many failures", username, client)
        minutes = max(1, round(wait / 60))
        message = f"Too many failed logins. Try again in about {minutes} minute(s)."
        return _login_form(console, request, message, 429)
    user = console.users.authenticate(username, password) if username else None
    with console.lock:
        if user is None:
            console.limiter.failed(username, client)
            if username:
                console.custody.record(
                    username, "login", username, detail={"outcome": "refused", "client": client}
                )
            return _login_form(console, request, "Wrong user name or password.", 401)
        console.limiter.succeeded(username)
        console.custody.record(
            username, "login", username, detail={"outcome": "accepted", "client": client}
        )
        token, session = console.sessions.open(user, client)
    target = _safe_next(form.get("next", "")) or HOME[session.role]
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


def _safe_next(target: str) -> str:
    """Only a local path may be a redirect target (no open redirects)."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return ""


async def logout(request: Request) -> Response:
    """End the session (CSRF-checked) and go back to the login page."""
    console: Console = request.app.state.console
    form = await read_form(request)
    return await anyio.to_thread.run_sync(partial(_logout, console, request, form))


def _logout(console: Console, request: Request, form: dict[str, str]) -> Response:
    token = request.cookies.get(console.session_cookie, "")
    with console.lock:
        session = console.sessions.find(token)
        if session is not None and tokens_match(session.csrf_token, form.get(CSRF_FIELD)):
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


# -- live alerts -----------------------------------------------------------------------


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
    back = _safe_next(call.field("next")) or "/alerts"
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
                    data = json.dumps(alert_document(item), separators=(",", ":"))
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


# -- badges ----------------------------------------------------------------------------


@handler("badges.read")
def badges_page(console: Console, call: Call) -> Response:
    """Every badge with its presence and health."""
    badges = [(badge, console.badge_states.get(badge.badge_id)) for badge in console.registry.all()]
    return console.page(
        call,
        "badges.html",
        badges=badges,
        csrf=call.session.csrf_token,
        can_manage=call.session.role is Role.ADMIN,
        download=call.query("download"),
        enrolled=call.query("enrolled"),
        revoked=call.query("revoked"),
        now_ns=time.time_ns(),
    )


@handler("badges.manage")
def enrol(console: Console, call: Call) -> Response:
    """Enrol (or, with ``rotate``, re-key) a badge; offer its bundle once, as a tar.gz."""
    badge_id = call.field("badge_id").lower()
    with tempfile.TemporaryDirectory(prefix="medbadge-bundle-") as scratch:
        bundle_dir = Path(scratch) / badge_id
        try:
            enrolled = enroll_badge(
                console.data_dir,
                badge_id,
                bundle_dir,
                wearer=call.field("wearer"),
                location=call.field("location"),
                broker_host=call.field("broker_host") or console.options.broker_host,
                broker_port=_port(call.field("broker_port"), console.options.broker_port),
                operator=call.session.username,
                rotate=call.field("rotate") == "yes",
            )
        except (GatewayError, EvidenceError) as error:
            raise ConsoleError(str(error)) from None
        data = _tar_gz(bundle_dir, badge_id)
    token = console.offer_download(
        call.session.username, f"{badge_id}-bundle-gen{enrolled.key_generation}.tar.gz", data
    )
    return RedirectResponse(f"/badges?enrolled={badge_id}&download={token}", status_code=303)


def _port(text: str, default: int) -> int:
    if not text:
        return default
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ConsoleError(f"broker port {text[:10]!r} is not a port number")
    return int(text)


def _tar_gz(directory: Path, name: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(directory, arcname=name)
    return buffer.getvalue()


@handler("badges.manage")
def bundle_download(console: Console, call: Call) -> Response:
    """The enrolment bundle, once: it holds the badge's private key."""
    taken = console.take_download(call.path("token"), call.session.username)
    if taken is None:
        raise ConsoleError(
            "this bundle was downloaded already or has expired; enrol the badge again with "
            "'rotate' to make a new one"
        )
    filename, data = taken
    return Response(
        data,
        media_type="application/gzip",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


@handler("badges.manage")
def revoke(console: Console, call: Call) -> Response:
    """Revoke a badge: the intake refuses it now, the broker at the next broker-config."""
    badge_id = call.path("badge")
    reason = call.field("reason")
    if not reason:
        raise ConsoleError("say why the badge is revoked (lost, stolen, retired...)")
    console.registry.revoke(badge_id, operator=call.session.username, reason=reason)
    console.custody.record(call.session.username, "revoke", badge_id, reason)
    return RedirectResponse(f"/badges?revoked={badge_id}", status_code=303)


# -- incidents -------------------------------------------------------------------------


def incident_query(call: Call) -> IncidentQuery:
    """The search form's filters as a query."""
    after = call.query("after")
    limit = call.query("limit")
    return IncidentQuery(
        badge_id=call.query("badge") or None,
        wearer=call.query("wearer") or None,
        location=call.query("location") or None,
        status=call.query("status") or None,
        since_ns=_date_ns(call.query("from"), "from"),
        until_ns=_date_ns(call.query("to"), "to", end_of_day=True),
        incident_prefix=call.query("q") or None,
        after=Cursor.parse(after) if after else None,
        limit=int(limit) if limit.isdigit() else 50,
    )


def _date_ns(text: str, what: str, *, end_of_day: bool = False) -> int | None:
    """A YYYY-MM-DD (UTC) date as ns: its start, or the next day's start for ``to``."""
    if not text:
        return None
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ConsoleError(f"the {what} date {text[:20]!r} is not YYYY-MM-DD") from None
    seconds = int(day.timestamp()) + (86_400 if end_of_day else 0)
    return seconds * 1_000_000_000


@handler("incidents.read")
def incidents_page(console: Console, call: Call) -> Response:
    """Search incidents by badge, wearer, location, status and date, one page at a time."""
    console.index.catch_up()
    query = incident_query(call)
    page = console.index.search(query)
    params = {
        key: call.query(key)
        for key in ("badge", "wearer", "location", "status", "from", "to", "q")
        if call.query(key)
    }
    return console.page(
        call,
        "incidents.html",
        page=page,
        filters=params,
        paged=bool(call.query("after")),
        locations=console.index.choices("location"),
        wearers=console.index.choices("wearer"),
        badges=console.index.choices("badge_id"),
    )


@handler("incidents.read")
def incident_page(console: Console, call: Call) -> Response:
    """One incident: timeline, verification, playback (after a justification), export, hold."""
    console.index.catch_up()
    summary = console.index.require(call.path("badge"), call.path("incident"))
    stored = casefile.gather(console.ledger, summary)
    actions = [
        (action.action, action.username, action.at_ns)
        for action in console.desk.actions(summary.badge_id, summary.incident_id)
    ]
    custody = console.custody.entries(subject=summary.incident_id, limit=MAX_PAGE)
    grant = call.query("grant")
    playable = bool(grant) and console.granted(
        grant, call.session.username, summary.badge_id, summary.incident_id
    )
    return console.page(
        call,
        "incident.html",
        summary=summary,
        stored=stored,
        timeline=casefile.timeline(stored, actions, custody),
        verification=_verification(console, stored),
        csrf=call.session.csrf_token,
        grant=grant if playable else "",
        can_view=call.session.role in (Role.OFFICER, Role.CUSTODIAN),
        can_export=call.session.role is Role.CUSTODIAN,
        exported=call.query("exported"),
    )


def _verification(console: Console, stored: casefile.CaseFile) -> casefile.StoreCheck:
    """The incident's verification, remembered until a segment or checkpoint is added."""
    number = stored.checkpoint.number if stored.checkpoint is not None else 0
    key = (stored.summary.badge_id, stored.summary.incident_id, len(stored.segments), number)
    cached = console.verification_cache.get(key)
    if isinstance(cached, casefile.StoreCheck):
        return cached
    result = casefile.check_store(stored, console.registry, console.vault, console.ledger)
    if len(console.verification_cache) > 1000:
        console.verification_cache.clear()
    console.verification_cache[key] = result
    return result


@handler("footage.view")
def view_footage(console: Console, call: Call) -> Response:
    """Record why the viewer looks (custody entry "view"), then let them play the incident."""
    summary = console.index.require(call.path("badge"), call.path("incident"))
    justification = call.field("justification")
    if not justification:
        raise ConsoleError("say why you need to see this footage; the custody log records it")
    console.custody.record(
        call.session.username,
        "view",
        summary.incident_id,
        justification,
        detail={"badge": summary.badge_id, "client": call.client},
    )
    grant = console.grant(call.session.username, summary.badge_id, summary.incident_id)
    return RedirectResponse(
        f"/incidents/{summary.badge_id}/{summary.incident_id}?grant={grant}#player",
        status_code=303,
    )


@handler("footage.view")
def footage(console: Console, call: Call) -> Response:
    """The incident's footage as fragmented MP4, decrypted and remuxed as it streams."""
    badge_id, incident_id = call.path("badge"), call.path("incident")
    if not console.granted(call.path("grant"), call.session.username, badge_id, incident_id):
        raise ConsoleError("state why you view this footage first (the grant has expired)")
    incident = console.index.require(badge_id, incident_id)
    deleted = retention.deletion_notice(console.storage, badge_id, incident_id)
    if deleted is not None:
        raise ConsoleError(f"{deleted}; it cannot be played")
    stored = casefile.gather(console.ledger, incident)
    if not stored.segments:
        raise ConsoleError(f"no segment of incident {incident_id} has arrived yet")
    key = console.custodian_key()
    where = f"incident {incident_id} of badge {badge_id}"
    chunks = fragmented_mp4(casefile.plaintexts(stored.segments, console.vault, key), where)
    first = _first_chunk(chunks, where)
    return StreamingResponse(
        _resume(first, chunks, where),
        media_type=CONTENT_TYPE,
        headers={"cache-control": "no-store"},
    )


def _first_chunk(chunks: Iterator[bytes], where: str) -> bytes:
    """The first MP4 bytes, so a recording that cannot play is an error page, not a bad video."""
    try:
        return next(chunks)
    except StopIteration:
        raise ConsoleError(f"{where} produced no video") from None
    except PlaybackError as error:
        raise ConsoleError(str(error)) from None


def _resume(first: bytes, rest: Iterator[bytes], where: str) -> Iterator[bytes]:
    yield first
    try:
        yield from rest
    except PlaybackError:
        log.exception("playback of %s stopped part way", where)


@handler("evidence.export")
def export(console: Console, call: Call) -> Response:
    """Export the incident for court (custody entry "export"): the evidence package."""
    summary = console.index.require(call.path("badge"), call.path("incident"))
    justification = call.field("justification")
    if not justification:
        raise ConsoleError("say why the evidence is exported (a case or request number)")
    filename, data = court.export_incident(console, call.session.username, summary, justification)
    token = console.offer_download(call.session.username, filename, data)
    return RedirectResponse(
        f"/incidents/{summary.badge_id}/{summary.incident_id}?exported={token}", status_code=303
    )


@handler("evidence.export")
def export_download(console: Console, call: Call) -> Response:
    """The evidence package, once."""
    taken = console.take_download(call.path("token"), call.session.username)
    if taken is None:
        raise ConsoleError("this package was downloaded already or has expired; export again")
    filename, data = taken
    return Response(
        data,
        media_type="application/zip",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


@handler("evidence.hold")
def legal_hold(console: Console, call: Call) -> Response:
    """Place or release a legal hold (custody entry "legal-hold" or "release-hold")."""
    held = call.request.url.path.endswith("/hold")
    badge_id, incident_id = call.path("badge"), call.path("incident")
    console.desk.hold(call.session.username, badge_id, incident_id, held, call.field("reason"))
    return RedirectResponse(f"/incidents/{badge_id}/{incident_id}", status_code=303)


# -- retention -------------------------------------------------------------------------


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


# -- custody log and ledger ------------------------------------------------------------


@handler("custody.read")
def custody_page(console: Console, call: Call) -> Response:
    """The custody log, newest first, filtered by actor, action, subject and date."""
    action = call.custody_action()
    page = int(call.query("page")) if call.query("page").isdigit() else 0
    entries = console.custody.entries(
        subject=call.query("subject") or None,
        actor=call.query("actor") or None,
        action=action,
        since_ns=_date_ns(call.query("from"), "from"),
        until_ns=_date_ns(call.query("to"), "to", end_of_day=True),
        limit=100,
        offset=page * 100,
        newest_first=True,
    )
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
        page=page,
    )


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


# -- users -----------------------------------------------------------------------------


@handler("users.manage")
def users_page(console: Console, call: Call) -> Response:
    """Console users: add, change role, disable, reset password."""
    return console.page(
        call,
        "users.html",
        users=console.users.all(),
        roles=[(role.value, ROLE_TITLES[role]) for role in Role],
        csrf=call.session.csrf_token,
    )


@handler("users.manage")
def add_user(console: Console, call: Call) -> Response:
    """Create a user (custody entry "user-change")."""
    username = call.field("username").lower()
    role = parse_role(call.field("role"))
    console.users.create(
        username, call.form.get("password", ""), role, created_by=call.session.username
    )
    console.custody.record(
        call.session.username, "user-change", username, detail={"change": "created", "role": role}
    )
    return RedirectResponse("/users", status_code=303)


@handler("users.manage")
def change_user(console: Console, call: Call) -> Response:
    """Change a user's role, disable or enable them, or set a new password."""
    username = call.path("username")
    change = call.field("change")
    target = console.users.require(username)
    detail: dict[str, str] = {"change": change}
    leaves_admin = target.role is Role.ADMIN and not target.disabled
    if change == "role":
        role = parse_role(call.field("role"))
        if leaves_admin and role is not Role.ADMIN and console.users.active_admins() <= 1:
            raise ConsoleError("the last administrator cannot be given another role")
        console.users.set_role(username, role)
        detail["role"] = role.value
    elif change in ("disable", "enable"):
        if change == "disable" and leaves_admin and console.users.active_admins() <= 1:
            raise ConsoleError("the last administrator cannot be disabled")
        console.users.set_disabled(username, change == "disable")
    elif change == "password":
        console.users.set_password(username, call.form.get("password", ""))
    else:
        raise ConsoleError(f"{change[:40]!r} is not a change to a user")
    console.sessions.close_all(username)
    console.custody.record(call.session.username, "user-change", username, detail=detail)
    return RedirectResponse("/users", status_code=303)


def routes() -> list[BaseRoute]:
    """Every page route, and the static files."""
    incident = "/incidents/{badge}/{incident}"
    return [
        Route("/", root),
        Route("/home", home),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/alerts", alerts_page),
        Route("/alerts/stream", alert_stream),
        Route("/alerts/{badge}/{incident}/{action}", act_on_alert, methods=["POST"]),
        Route("/badges", badges_page),
        Route("/badges/enrol", enrol, methods=["POST"]),
        Route("/badges/bundle/{token}", bundle_download),
        Route("/badges/{badge}/revoke", revoke, methods=["POST"]),
        Route("/incidents", incidents_page),
        Route(incident, incident_page),
        Route(incident + "/view", view_footage, methods=["POST"]),
        Route(incident + "/video/{grant}", footage),
        Route(incident + "/export", export, methods=["POST"]),
        Route(incident + "/export/{token}", export_download),
        Route(incident + "/hold", legal_hold, methods=["POST"]),
        Route(incident + "/release", legal_hold, methods=["POST"]),
        Route("/retention", retention_page),
        Route("/retention", apply_retention, methods=["POST"]),
        Route("/custody", custody_page),
        Route("/ledger", ledger_page),
        Route("/users", users_page),
        Route("/users", add_user, methods=["POST"]),
        Route("/users/{username}", change_user, methods=["POST"]),
        Mount("/static", StaticFiles(directory=static_directory()), name="static"),
    ]
