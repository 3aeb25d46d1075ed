"""Failed console logins as stored: one row per (user name, client address) pair.

Kept in the database, not in memory, so that a restart does not forget them, the command
line (``gateway user list``, ``gateway user unlock``) sees and clears what the console
counts, and a console in its own process shares the counts with every other one.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.storage.database import Database


@dataclass(frozen=True)
class LoginFailureRecord:
    """How often a name failed to log in from one address, and when it last did."""

    username: str
    client: str
    failures: int
    last_failure_ns: int


class LoginFailures:
    """The ``console_login_failures`` table (``gateway.console.login_limits`` decides delays)."""

    def __init__(self, db: Database) -> None:
        """Use ``db``."""
        self._db = db

    def get(self, username: str, client: str) -> LoginFailureRecord | None:
        """The failures of ``username`` from ``client``, or None."""
        row = self._db.fetch_one(
            "SELECT username, client, failures, last_failure_ns FROM console_login_failures"
            " WHERE username = ? AND client = ?",
            (username, client),
        )
        return None if row is None else LoginFailureRecord(*row)

    def put(self, record: LoginFailureRecord) -> None:
        """Store ``record``, replacing the pair's earlier count."""
        self._db.execute(
            "INSERT INTO console_login_failures (username, client, failures, last_failure_ns)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (username, client) DO UPDATE SET"
            " failures = excluded.failures, last_failure_ns = excluded.last_failure_ns",
            (record.username, record.client, record.failures, record.last_failure_ns),
        )

    def of_user(self, username: str) -> list[LoginFailureRecord]:
        """Every address ``username`` failed from, the latest first."""
        rows = self._db.fetch_all(
            "SELECT username, client, failures, last_failure_ns FROM console_login_failures"
            " WHERE username = ? ORDER BY last_failure_ns DESC, client",
            (username,),
        )
        return [LoginFailureRecord(*row) for row in rows]

    def forget(self, username: str, client: str) -> None:
        """Forget the failures of one pair (after a good login)."""
        self._db.execute(
            "DELETE FROM console_login_failures WHERE username = ? AND client = ?",
            (username, client),
        )

    def forget_user(self, username: str) -> int:
        """Forget every failure of ``username`` (an unlock); say how many addresses."""
        return self._db.execute(
            "DELETE FROM console_login_failures WHERE username = ?", (username,)
        )

    def prune(self, before_ns: int, keep: int) -> int:
        """Drop pairs that last failed before ``before_ns``, then all but the ``keep`` latest."""
        dropped = self._db.execute(
            "DELETE FROM console_login_failures WHERE last_failure_ns < ?", (before_ns,)
        )
        if keep <= 0:
            return dropped + self._db.execute("DELETE FROM console_login_failures")
        # the keep-th latest failure time: everything quieter than it goes (ties stay)
        row = self._db.fetch_one(
            "SELECT last_failure_ns FROM console_login_failures"
            " ORDER BY last_failure_ns DESC LIMIT 1 OFFSET ?",
            (keep - 1,),
        )
        if row is not None:
            dropped += self._db.execute(
                "DELETE FROM console_login_failures WHERE last_failure_ns < ?", (int(row[0]),)
            )
        return dropped
