"""Console sessions as stored: the SHA-256 of each session token, never the token itself."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.storage.database import Database


@dataclass(frozen=True)
class SessionRecord:
    """A live session's row, with its user's current role."""

    username: str
    role: str
    csrf_token: str
    client: str
    created_at_ns: int
    expires_at_ns: int
    second_factor_pending: bool = False
    """The user must set up a second factor before the session may do anything else."""


class ConsoleSessions:
    """The ``console_sessions`` table (``gateway.console.auth`` makes and checks tokens)."""

    def __init__(self, db: Database) -> None:
        """Use ``db``."""
        self._db = db

    def add(  # noqa: PLR0917 - the row's columns, in order
        self,
        token_sha256: bytes,
        username: str,
        csrf_token: str,
        client: str,
        created_at_ns: int,
        expires_at_ns: int,
        second_factor_pending: bool = False,
    ) -> None:
        """Add a session, last seen at its creation."""
        self._db.execute(
            "INSERT INTO console_sessions (token_sha256, username, csrf_token, client,"
            " created_at_ns, last_seen_ns, expires_at_ns, second_factor_pending)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                token_sha256,
                username,
                csrf_token,
                client,
                created_at_ns,
                created_at_ns,
                expires_at_ns,
                int(second_factor_pending),
            ),
        )

    def find(self, token_sha256: bytes) -> SessionRecord | None:
        """The session of an enabled account with this token hash, or None."""
        row = self._db.fetch_one(
            "SELECT s.username, u.role, s.csrf_token, s.client, s.created_at_ns, s.expires_at_ns,"
            " s.second_factor_pending"
            " FROM console_sessions s JOIN console_users u ON u.username = s.username"
            " WHERE s.token_sha256 = ? AND u.disabled = 0",
            (token_sha256,),
        )
        if row is None:
            return None
        name, role, csrf, client, created, expires, pending = row
        return SessionRecord(name, role, csrf, client, created, expires, bool(pending))

    def second_factor_done(self, token_sha256: bytes) -> None:
        """The session's user has set up the second factor: it may now do what the role may."""
        self._db.execute(
            "UPDATE console_sessions SET second_factor_pending = 0 WHERE token_sha256 = ?",
            (token_sha256,),
        )

    def touch(self, token_sha256: bytes, seen_ns: int, expires_at_ns: int) -> None:
        """Note that the session was used at ``seen_ns``; it now expires at ``expires_at_ns``."""
        self._db.execute(
            "UPDATE console_sessions SET last_seen_ns = ?, expires_at_ns = ?"
            " WHERE token_sha256 = ?",
            (seen_ns, expires_at_ns, token_sha256),
        )

    def remove(self, token_sha256: bytes) -> None:
        """End one session."""
        self._db.execute("DELETE FROM console_sessions WHERE token_sha256 = ?", (token_sha256,))

    def remove_user(self, username: str) -> None:
        """End every session of ``username``."""
        self._db.execute("DELETE FROM console_sessions WHERE username = ?", (username,))

    def remove_expired(self, now_ns: int) -> int:
        """End every session expired by ``now_ns``; say how many."""
        return self._db.execute("DELETE FROM console_sessions WHERE expires_at_ns <= ?", (now_ns,))
