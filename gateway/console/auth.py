"""Console authentication: server-side sessions and CSRF tokens (login limits: ``login_limits``).

A session is a random token in an HttpOnly, SameSite=Strict cookie (Secure under TLS); the
database keeps only its SHA-256, with the user, a per-session CSRF token, and an expiry that
an idle session reaches after ``idle`` and a busy one after ``maximum``. The user's role and
whether the account is disabled are read again on every request, so a change takes effect
at once. Every form carries the CSRF token, compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.console.users import ConsoleUser, Role
from gateway.storage.sessions import ConsoleSessions

SESSION_COOKIE = "medbadge_session"
SECURE_SESSION_COOKIE = "__Host-medbadge_session"
"""Under TLS: the ``__Host-`` prefix makes browsers insist on Secure, Path=/ and no Domain."""
LOGIN_CSRF_COOKIE = "medbadge_login_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
_TOKEN_BYTES = 32
_NS = 1_000_000_000


@dataclass(frozen=True)
class ConsoleSession:
    """A logged-in user's session, as found from its cookie."""

    username: str
    role: Role
    csrf_token: str
    client: str
    created_at_ns: int
    expires_at_ns: int
    second_factor_pending: bool = False
    """Until the user sets up a second factor, the session opens the set-up page only."""


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(_TOKEN_BYTES)


def tokens_match(expected: str, given: str | None) -> bool:
    """True when ``given`` is ``expected``, compared in constant time."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class SessionStore:
    """Console sessions: tokens handed out, found again, extended and ended."""

    def __init__(
        self,
        sessions: ConsoleSessions,
        *,
        idle_s: float,
        maximum_s: float,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        """Sessions end after ``idle_s`` unused, and ``maximum_s`` after they began."""
        self._sessions = sessions
        self._idle_ns = int(idle_s * _NS)
        self._max_ns = int(maximum_s * _NS)
        self._clock = clock

    def open(
        self, user: ConsoleUser, client: str, *, second_factor_pending: bool = False
    ) -> tuple[str, ConsoleSession]:
        """Start a session for ``user``; return its cookie token (never stored) and itself.

        With ``second_factor_pending`` the session may only set up the second factor.
        """
        token, csrf, now = new_token(), new_token(), self._clock()
        expires = now + min(self._idle_ns, self._max_ns)
        self._sessions.add(
            _digest(token), user.username, csrf, client[:200], now, expires, second_factor_pending
        )
        session = ConsoleSession(
            user.username, user.role, csrf, client, now, expires, second_factor_pending
        )
        return token, session

    def find(self, token: str | None) -> ConsoleSession | None:
        """The live session of ``token`` (extending its idle expiry), or None."""
        if not token or len(token) > 200:
            return None
        now = self._clock()
        found = self._sessions.find(_digest(token))
        if found is None:
            return None
        if found.expires_at_ns <= now:
            self.close(token)
            return None
        expires = min(now + self._idle_ns, found.created_at_ns + self._max_ns)
        self._sessions.touch(_digest(token), now, expires)
        return ConsoleSession(
            found.username,
            Role(found.role),
            found.csrf_token,
            found.client,
            found.created_at_ns,
            expires,
            found.second_factor_pending,
        )

    def second_factor_done(self, token: str) -> None:
        """The session's user has set up the second factor: the session may do what the role may."""
        self._sessions.second_factor_done(_digest(token))

    def close(self, token: str) -> None:
        """End the session of ``token`` (logout)."""
        self._sessions.remove(_digest(token))

    def close_all(self, username: str) -> None:
        """End every session of ``username`` (after a password, role or account change)."""
        self._sessions.remove_user(username)

    def sweep(self) -> int:
        """Remove expired sessions; return how many."""
        return self._sessions.remove_expired(self._clock())
