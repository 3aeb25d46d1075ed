"""The console's shared state and request pipeline, under every page and API handler.

Every page and API call goes through ``Console.run`` on a worker thread: find the session
(else the login page, or 401 for the API), check the role (else a 403 page naming the role
needed), check the CSRF token of a POST, then run the handler with the database lock held.
A ``ConsoleError`` becomes a 400 page that says what was wrong; anything unexpected becomes
a plain 500 page, logged, never a stack trace.

It is long because that pipeline (session, second factor, role, CSRF, error pages) is one
sequence, read top to bottom in one place.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import anyio.to_thread
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from evidence.errors import EvidenceError
from evidence.keys import CustodianPrivateKey
from gateway.alerts.live import AlertChannel, iso_time
from gateway.config import ReserveSettings
from gateway.console.actions import AlertDesk
from gateway.console.auth import (
    CSRF_FIELD,
    CSRF_HEADER,
    SECURE_SESSION_COOKIE,
    SESSION_COOKIE,
    ConsoleSession,
    SessionStore,
    tokens_match,
)
from gateway.console.login_limits import LoginLimiter
from gateway.console.second_factor import open_second_factor
from gateway.console.users import ROLE_TITLES, Role, UserDirectory
from gateway.datadir import GatewayDataDir
from gateway.errors import (
    ConsoleError,
    CustodyError,
    EnrolmentError,
    InvalidTextError,
    SecondFactorSetupRequiredError,
)
from gateway.ledger.custody import CustodyLog
from gateway.ledger.ledger import Ledger
from gateway.naming import shown
from gateway.storage import Storage

log = logging.getLogger(__name__)

MAX_FORM_BYTES = 64 * 1024
GRANT_SECONDS = 3600.0
"""How long one stated justification lets its viewer play the incident's footage."""
DOWNLOAD_SECONDS = 600.0
"""How long an enrolment bundle waits for its one download."""

PERMISSIONS: dict[str, frozenset[Role]] = {
    "session": frozenset(Role),
    "account": frozenset(Role),
    "alerts": frozenset({Role.OFFICER}),
    "badges.read": frozenset({Role.OFFICER, Role.ADMIN}),
    "badges.manage": frozenset({Role.ADMIN}),
    "incidents.read": frozenset({Role.OFFICER, Role.CUSTODIAN, Role.AUDITOR}),
    "footage.view": frozenset({Role.OFFICER, Role.CUSTODIAN}),
    "evidence.export": frozenset({Role.CUSTODIAN}),
    "evidence.hold": frozenset({Role.CUSTODIAN}),
    "evidence.retention": frozenset({Role.CUSTODIAN}),
    "custody.read": frozenset({Role.AUDITOR}),
    "ledger.read": frozenset({Role.AUDITOR}),
    "users.manage": frozenset({Role.ADMIN}),
}
"""Which roles may do what: each handler names one permission."""

HOME = {
    Role.OFFICER: "/alerts",
    Role.CUSTODIAN: "/incidents",
    Role.AUDITOR: "/custody",
    Role.ADMIN: "/badges",
}
"""Where each role lands after logging in."""
SECOND_FACTOR_SETUP = "/account/second-factor"
"""Where a user whose role needs a second factor, and who has none yet, sets one up."""

@dataclass(frozen=True)
class ConsoleOptions:
    """How the console behaves; ``gateway run`` builds it from ``[console]``."""

    secure_cookies: bool = False
    """Set under TLS: cookies get Secure and the ``__Host-`` prefix."""
    session_idle_s: float = 30 * 60
    session_max_s: float = 12 * 3600
    custodian_passphrase: bytes | None = None
    broker_host: str = "localhost"
    """What enrolment bundles made here tell badges to connect to."""
    broker_port: int = 8883
    retention_days: int = 365
    """Footage last received longer ago than this may be deleted (``[retention] days``)."""
    low_battery_percent: int = 20
    """The badge list warns of a battery charge below this (``[console] low_battery_percent``)."""
    reserve: ReserveSettings | None = None
    """The free-space reserve below which every page warns "disk low" (``[reserve]``)."""


class RoleRefusedError(ConsoleError):
    """The signed-in user's role may not do this; carries the permission that was needed."""

    def __init__(self, permission: str) -> None:
        super().__init__(permission)
        self.permission = permission


class LoginRequiredError(ConsoleError):
    """No live session: the user must log in (again)."""


@dataclass
class _Grant:
    username: str
    badge_id: str
    incident_id: str
    expires: float


@dataclass
class _Download:
    username: str
    filename: str
    data: bytes
    expires: float


@dataclass(frozen=True)
class Call:
    """One authorised request as a handler sees it."""

    request: Request
    session: ConsoleSession
    form: Mapping[str, str] = field(default_factory=dict)

    def path(self, name: str) -> str:
        """A path parameter."""
        return str(self.request.path_params[name])

    def query(self, name: str, default: str = "") -> str:
        """A query parameter, stripped ('' when absent)."""
        return self.request.query_params.get(name, default).strip()

    def field(self, name: str) -> str:
        """A form field, stripped ('' when absent)."""
        return self.form.get(name, "").strip()

    @property
    def client(self) -> str:
        """The client's address."""
        return client_address(self.request)


Handler = Callable[["Console", Call], Response]


class Console:
    """Everything the handlers share: the storage (one lock), the channel, the templates."""

    def __init__(
        self,
        data_dir: GatewayDataDir,
        ledger: Ledger,
        channel: AlertChannel,
        options: ConsoleOptions,
    ) -> None:
        """Serve ``data_dir`` through the storage of ``ledger`` (one connection, one lock)."""
        storage = ledger.storage
        self.data_dir = data_dir
        self.storage = storage
        self.channel = channel
        self.ledger = ledger
        self.custody = CustodyLog(ledger)
        self.options = options
        self.lock = threading.RLock()
        self.users = UserDirectory(storage.users)
        self.sessions = SessionStore(
            storage.sessions, idle_s=options.session_idle_s, maximum_s=options.session_max_s
        )
        self.limiter = LoginLimiter(storage.login_failures)
        self.index = storage.incident_index
        self.desk = AlertDesk(self.custody)
        self.registry = storage.badges
        self.badge_states = storage.badge_states
        self.vault = storage.vault
        self.hospital = data_dir.evidence_ca().hospital_name
        self.second_factor = open_second_factor(storage, data_dir.keys, self.hospital)
        self.templates = Environment(
            loader=PackageLoader("gateway.console", "templates"),
            autoescape=select_autoescape(default=True),
            trim_blocks=True,
            lstrip_blocks=True,
            finalize=shown,  # every printed value, its unsafe characters escaped
        )
        self.templates.filters["when"] = _when
        self._grants: dict[str, _Grant] = {}
        self._downloads: dict[str, _Download] = {}
        self._memo_lock = threading.Lock()
        self.verification_cache: dict[tuple[str, str, int, int], Any] = {}

    @property
    def session_cookie(self) -> str:
        """The session cookie's name."""
        return SECURE_SESSION_COOKIE if self.options.secure_cookies else SESSION_COOKIE

    @contextmanager
    def locked(self) -> Iterator[Storage]:
        """Hold the storage lock (one thread at a time uses its connection)."""
        with self.lock:
            yield self.storage

    # -- the request pipeline ----------------------------------------------------------

    def run(
        self,
        handler: Handler,
        request: Request,
        form: Mapping[str, str],
        permission: str,
        api: bool,
    ) -> Response:
        """Authenticate, authorise, check CSRF and run ``handler``; turn refusals into pages."""
        try:
            with self.lock:
                session = self.sessions.find(request.cookies.get(self.session_cookie))
                if session is None:
                    raise LoginRequiredError("no live session")
                if session.second_factor_pending and permission != "account":
                    raise SecondFactorSetupRequiredError("set up the second factor first")
                if session.role not in PERMISSIONS[permission]:
                    raise RoleRefusedError(permission)
                if request.method == "POST":
                    given = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
                    if not tokens_match(session.csrf_token, given):
                        raise ConsoleError(
                            "the form's security token is missing or stale: reload the page "
                            "and try again"
                        )
                return handler(self, Call(request, session, form))
        except LoginRequiredError:
            if api:
                return JSONResponse({"error": "log in first"}, status_code=401)
            target = request.url.path
            if request.url.query:
                target += "?" + request.url.query
            return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
        except SecondFactorSetupRequiredError:
            if api:
                return JSONResponse({"error": "set up two-step login first"}, status_code=403)
            return RedirectResponse(SECOND_FACTOR_SETUP, status_code=303)
        except RoleRefusedError as refusal:
            return self.forbidden(request, refusal.permission, api)
        except (ConsoleError, EnrolmentError, CustodyError, InvalidTextError) as error:
            return self.error_page(request, 400, "That did not work", str(error), api)

    def forbidden(self, request: Request, permission: str, api: bool) -> Response:
        """The 403 answer: which role is needed."""
        roles = " or ".join(ROLE_TITLES[role] for role in sorted(PERMISSIONS[permission]))
        message = f"This needs the role of {roles}."
        return self.error_page(request, 403, "Not allowed", message, api)

    def error_page(
        self, request: Request, status: int, title: str, message: str, api: bool = False
    ) -> Response:
        """A page (or JSON for the API) that says what went wrong, with ``status``."""
        if api or request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status_code=status)
        user = None
        with self.lock:
            session = self.sessions.find(request.cookies.get(self.session_cookie))
        if session is not None:
            user = session
        body = self.render("error.html", user, title=title, message=message, status=status)
        return HTMLResponse(body, status_code=status)

    def render(self, template: str, session: ConsoleSession | None, **values: Any) -> str:
        """Render a page template with the navigation for ``session``."""
        allowed = set()
        if session is not None:
            allowed = {name for name, roles in PERMISSIONS.items() if session.role in roles}
        return self.templates.get_template(template).render(
            session=session,
            allowed=allowed,
            hospital=self.hospital,
            role_title=ROLE_TITLES.get(session.role, "") if session is not None else "",
            **values,
        )

    def page(self, call: Call, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        """An HTML page for the signed-in user."""
        return HTMLResponse(self.render(template, call.session, **values), status_code=status)

    # -- footage grants and one-time downloads ----------------------------------------

    def grant(self, username: str, badge_id: str, incident_id: str) -> str:
        """A token that lets ``username`` play one incident for GRANT_SECONDS."""
        token = secrets.token_urlsafe(24)
        with self._memo_lock:
            self._sweep()
            self._grants[token] = _Grant(
                username, badge_id, incident_id, time.monotonic() + GRANT_SECONDS
            )
        return token

    def granted(self, token: str, username: str, badge_id: str, incident_id: str) -> bool:
        """True while ``token`` lets ``username`` play this incident."""
        with self._memo_lock:
            self._sweep()
            grant = self._grants.get(token)
        return (
            grant is not None
            and tokens_match(grant.username, username)
            and (grant.badge_id, grant.incident_id) == (badge_id, incident_id)
        )

    def offer_download(self, username: str, filename: str, data: bytes) -> str:
        """Keep ``data`` for one download by ``username``; return its token."""
        token = secrets.token_urlsafe(24)
        with self._memo_lock:
            self._sweep()
            self._downloads[token] = _Download(
                username, filename, data, time.monotonic() + DOWNLOAD_SECONDS
            )
        return token

    def take_download(self, token: str, username: str) -> tuple[str, bytes] | None:
        """The file behind ``token``, removed as it is taken (a second try finds nothing)."""
        with self._memo_lock:
            self._sweep()
            download = self._downloads.get(token)
            if download is None or download.username != username:
                return None
            del self._downloads[token]
        return download.filename, download.data

    def _sweep(self) -> None:
        now = time.monotonic()
        for store in (self._grants, self._downloads):
            for token in [key for key, item in store.items() if item.expires <= now]:
                del store[token]

    def custodian_key(self) -> CustodianPrivateKey:
        """The custodian private key, for playback and export; ConsoleError if it is locked."""
        try:
            return CustodianPrivateKey.load(
                self.data_dir.custodian_key_path, self.options.custodian_passphrase
            )
        except (EvidenceError, ValueError, TypeError, OSError) as error:
            raise ConsoleError(
                f"the custodian key {self.data_dir.custodian_key_path} cannot be opened "
                f"({error}); if it is protected, set console.custodian_passphrase_file"
            ) from None


def safe_next(target: str) -> str:
    """``target`` if it is a local path, else '' (a redirect never leaves the console)."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return ""


def client_address(request: Request) -> str:
    """The peer's address as the server saw it (no proxy headers are trusted)."""
    return request.client.host if request.client is not None else "unknown"


def _when(wall_ns: int | None) -> str:
    """Template filter: gateway time as ISO 8601 UTC to the second."""
    if wall_ns is None:
        return ""
    text = iso_time(int(wall_ns))
    return text[:19] + "Z" if len(text) > 19 else text


def handler(
    permission: str, *, api: bool = False
) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """Make a Starlette endpoint of a sync handler that needs ``permission``."""

    def wrap(function: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            console: Console = request.app.state.console
            form = await read_form(request) if request.method == "POST" else {}
            work = partial(console.run, function, request, form, permission, api)
            return await anyio.to_thread.run_sync(work)

        endpoint.__name__ = function.__name__
        endpoint.__doc__ = function.__doc__
        return endpoint

    return wrap


async def read_form(request: Request) -> dict[str, str]:
    """A URL-encoded form body (at most MAX_FORM_BYTES), as a dict of its first values."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, "the form is too large")
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind not in ("application/x-www-form-urlencoded", ""):
        raise HTTPException(415, "send the form URL-encoded")
    fields: dict[str, str] = {}
    for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        fields.setdefault(key, value)
    return fields


def static_directory() -> Path:
    """Where the console's CSS and JavaScript are (served at /static)."""
    return Path(__file__).with_name("static")
