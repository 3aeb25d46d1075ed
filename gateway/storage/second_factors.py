"""Console users' second factor as stored: the sealed TOTP secret (never the secret in the
clear), the last time step used, and the SHA-256 of each recovery code."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.storage.database import Database


@dataclass(frozen=True)
class SecondFactorRecord:
    """A user's second factor: sealed secrets, the last step used, when it was set up."""

    username: str
    secret: bytes | None
    """The sealed TOTP secret in use, or None when the user has none."""
    pending: bytes | None
    """A sealed secret being set up, not yet confirmed by a code."""
    last_step: int
    enrolled_at_ns: int | None


class SecondFactors:
    """TOTP columns of ``console_users`` and the ``console_recovery_codes`` table."""

    def __init__(self, db: Database) -> None:
        """Use ``db``."""
        self._db = db

    def get(self, username: str) -> SecondFactorRecord | None:
        """The second factor of ``username``, or None if there is no such user."""
        row = self._db.fetch_one(
            "SELECT username, totp_secret, totp_pending, totp_last_step, totp_enrolled_at_ns"
            " FROM console_users WHERE username = ?",
            (username,),
        )
        if row is None:
            return None
        name, secret, pending, step, enrolled = row
        return SecondFactorRecord(
            name,
            None if secret is None else bytes(secret),
            None if pending is None else bytes(pending),
            int(step),
            enrolled,
        )

    def set_pending(self, username: str, sealed: bytes) -> None:
        """Keep ``sealed`` as the secret being set up (replacing one set up before)."""
        self._db.execute(
            "UPDATE console_users SET totp_pending = ? WHERE username = ?", (sealed, username)
        )

    def enrol(
        self, username: str, sealed: bytes, last_step: int, at_ns: int, codes: list[bytes]
    ) -> None:
        """Make ``sealed`` the user's secret, ``last_step`` used, with these recovery codes."""
        with self._db.transaction():
            self._db.execute(
                "UPDATE console_users SET totp_secret = ?, totp_pending = NULL,"
                " totp_last_step = ?, totp_enrolled_at_ns = ? WHERE username = ?",
                (sealed, last_step, at_ns, username),
            )
            self._replace_codes(username, codes)

    def use_step(self, username: str, step: int) -> bool:
        """Record ``step`` as used; False if it (or a later one) was used already."""
        return (
            self._db.execute(
                "UPDATE console_users SET totp_last_step = ?"
                " WHERE username = ? AND totp_last_step < ?",
                (step, username, step),
            )
            == 1
        )

    def replace_recovery_codes(self, username: str, codes: list[bytes]) -> None:
        """Replace every recovery code of ``username`` by ``codes`` (their SHA-256)."""
        with self._db.transaction():
            self._replace_codes(username, codes)

    def use_recovery_code(self, username: str, code_sha256: bytes, at_ns: int) -> bool:
        """Spend one recovery code; False if it is not one of the user's unused codes."""
        return (
            self._db.execute(
                "UPDATE console_recovery_codes SET used_at_ns = ?"
                " WHERE username = ? AND code_sha256 = ? AND used_at_ns IS NULL",
                (at_ns, username, code_sha256),
            )
            == 1
        )

    def recovery_codes_left(self, username: str) -> int:
        """How many unused recovery codes ``username`` has."""
        row = self._db.fetch_one(
            "SELECT COUNT(*) FROM console_recovery_codes WHERE username = ? AND used_at_ns IS NULL",
            (username,),
        )
        return 0 if row is None else int(row[0])

    def clear(self, username: str) -> None:
        """Remove the user's second factor and recovery codes (an administrator's reset)."""
        with self._db.transaction():
            self._db.execute(
                "UPDATE console_users SET totp_secret = NULL, totp_pending = NULL,"
                " totp_last_step = 0, totp_enrolled_at_ns = NULL WHERE username = ?",
                (username,),
            )
            self._db.execute("DELETE FROM console_recovery_codes WHERE username = ?", (username,))

    def _replace_codes(self, username: str, codes: list[bytes]) -> None:
        self._db.execute("DELETE FROM console_recovery_codes WHERE username = ?", (username,))
        for code in codes:
            self._db.execute(
                "INSERT INTO console_recovery_codes (username, code_sha256) VALUES (?, ?)",
                (username, code),
            )
