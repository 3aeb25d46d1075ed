"""Console accounts as stored: name, password hash, role, and whether they are disabled."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.storage.database import Database


@dataclass(frozen=True)
class UserRecord:
    """A console account's row, without its password hash."""

    username: str
    role: str
    disabled: bool
    created_at_ns: int
    created_by: str


class ConsoleUsers:
    """The ``console_users`` table (``gateway.console.users`` checks names and passwords)."""

    def __init__(self, db: Database) -> None:
        """Use ``db``."""
        self._db = db

    def add(
        self, username: str, password_hash: str, role: str, created_at_ns: int, created_by: str
    ) -> None:
        """Add an account; DuplicateRecordError if the name is taken."""
        self._db.execute(
            "INSERT INTO console_users (username, password_hash, role, created_at_ns,"
            " created_by) VALUES (?, ?, ?, ?, ?)",
            (username, password_hash, role, created_at_ns, created_by),
        )

    def get(self, username: str) -> UserRecord | None:
        """The account named ``username``, or None."""
        row = self._db.fetch_one(
            "SELECT username, role, disabled, created_at_ns, created_by FROM console_users"
            " WHERE username = ?",
            (username,),
        )
        if row is None:
            return None
        name, role, disabled, created, creator = row
        return UserRecord(name, str(role), bool(disabled), created, creator)

    def names(self) -> list[str]:
        """Every account's name, sorted."""
        return sorted(
            str(row[0]) for row in self._db.fetch_all("SELECT username FROM console_users")
        )

    def password_hash(self, username: str) -> str | None:
        """The account's password hash, or None if there is no such account."""
        row = self._db.fetch_one(
            "SELECT password_hash FROM console_users WHERE username = ?", (username,)
        )
        return None if row is None else str(row[0])

    def set_password_hash(self, username: str, password_hash: str) -> None:
        """Replace the account's password hash."""
        self._db.execute(
            "UPDATE console_users SET password_hash = ? WHERE username = ?",
            (password_hash, username),
        )

    def set_role(self, username: str, role: str) -> None:
        """Give the account another role."""
        self._db.execute("UPDATE console_users SET role = ? WHERE username = ?", (role, username))

    def set_disabled(self, username: str, disabled: bool) -> None:
        """Disable or re-enable the account."""
        self._db.execute(
            "UPDATE console_users SET disabled = ? WHERE username = ?", (int(disabled), username)
        )

    def count_enabled(self, role: str) -> int:
        """How many enabled accounts have ``role``."""
        row = self._db.fetch_one(
            "SELECT COUNT(*) FROM console_users WHERE role = ? AND disabled = 0", (role,)
        )
        return 0 if row is None else int(row[0])
