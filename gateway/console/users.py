"""Console users: a name, an argon2id password hash, one role, and whether they are disabled."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.errors import ConsoleError, DuplicateRecordError
from gateway.storage.users import ConsoleUsers, UserRecord

MIN_PASSWORD = 12
"""Shortest password accepted, in characters."""
MAX_PASSWORD = 1024
_USERNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_")
_MAX_USERNAME = 64


class Role(enum.StrEnum):
    """What a console user is there to do; each user has exactly one role."""

    OFFICER = "officer"
    """Security officer: answers alerts, follows incidents, views footage with a reason."""
    CUSTODIAN = "custodian"
    """Evidence custodian: exports for court, places and releases legal holds."""
    AUDITOR = "auditor"
    """Auditor: reads the custody log and the ledger, checks verification."""
    ADMIN = "admin"
    """Administrator: console users, badges, enrolment and revocation."""


ROLE_TITLES = {
    Role.OFFICER: "security officer",
    Role.CUSTODIAN: "evidence custodian",
    Role.AUDITOR: "auditor",
    Role.ADMIN: "administrator",
}
"""How each role is named on the pages."""


@dataclass(frozen=True)
class ConsoleUser:
    """A console account (its password hash stays in the database)."""

    username: str
    role: Role
    disabled: bool
    created_at_ns: int
    created_by: str


_HASHER = PasswordHasher()  # argon2id with the library's current recommended cost
_DUMMY_HASH = _HASHER.hash("a password nobody has, to spend the same time on unknown names")


def validate_username(username: str) -> str:
    """Return ``username`` if it is 1-64 lowercase letters, digits, '.', '-' or '_'."""
    if not 0 < len(username) <= _MAX_USERNAME or not set(username) <= _USERNAME_CHARS:
        raise ConsoleError(
            f"user name {username[:80]!r} must be 1-{_MAX_USERNAME} lowercase letters, digits, "
            "'.', '-' or '_'"
        )
    return username


def validate_password(password: str) -> str:
    """Return ``password`` if it is long enough (and not absurdly long)."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ConsoleError(
            f"a console password must have {MIN_PASSWORD} to {MAX_PASSWORD} characters"
        )
    return password


def parse_role(text: str) -> Role:
    """The Role named ``text``; ConsoleError listing the roles otherwise."""
    try:
        return Role(text)
    except ValueError:
        raise ConsoleError(
            f"role {text[:40]!r} is not one of {', '.join(role.value for role in Role)}"
        ) from None


class UserDirectory:
    """Console users: names and passwords checked, passwords kept only as argon2id hashes."""

    def __init__(self, users: ConsoleUsers) -> None:
        """Keep the accounts in ``users``."""
        self._users = users

    def create(self, username: str, password: str, role: Role, *, created_by: str) -> ConsoleUser:
        """Add a user; ConsoleError if the name is taken or the name or password is unusable."""
        validate_username(username)
        digest = _HASHER.hash(validate_password(password))
        try:
            self._users.add(username, digest, role.value, time.time_ns(), created_by)
        except DuplicateRecordError:
            raise ConsoleError(f"console user {username} exists already") from None
        return self.require(username)

    def get(self, username: str) -> ConsoleUser | None:
        """The user named ``username``, or None."""
        record = self._users.get(username)
        return None if record is None else _user(record)

    def require(self, username: str) -> ConsoleUser:
        """The user named ``username``; ConsoleError if there is none."""
        user = self.get(username)
        if user is None:
            raise ConsoleError(f"there is no console user {username[:80]!r}")
        return user

    def all(self) -> list[ConsoleUser]:
        """Every user, by name."""
        return [self.require(name) for name in self._users.names()]

    def authenticate(self, username: str, password: str) -> ConsoleUser | None:
        """The user if ``password`` is theirs and the account is enabled, else None.

        An unknown name costs the same hashing time as a wrong password, so response
        times do not tell which names exist.
        """
        stored = self._users.password_hash(username)
        digest = _DUMMY_HASH if stored is None else stored
        try:
            _HASHER.verify(digest, password[:MAX_PASSWORD])
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        user = self.get(username) if stored is not None else None
        if user is None or user.disabled:
            return None
        if _HASHER.check_needs_rehash(digest):
            self._set_hash(username, _HASHER.hash(password))
        return user

    def set_password(self, username: str, password: str) -> None:
        """Give ``username`` a new password."""
        self.require(username)
        self._set_hash(username, _HASHER.hash(validate_password(password)))

    def set_role(self, username: str, role: Role) -> ConsoleUser:
        """Give ``username`` another role."""
        self.require(username)
        self._users.set_role(username, role.value)
        return self.require(username)

    def set_disabled(self, username: str, disabled: bool) -> ConsoleUser:
        """Disable (no more logins) or re-enable ``username``."""
        self.require(username)
        self._users.set_disabled(username, disabled)
        return self.require(username)

    def active_admins(self) -> int:
        """How many enabled administrators there are (the last one may not be removed)."""
        return self._users.count_enabled(Role.ADMIN.value)

    def _set_hash(self, username: str, digest: str) -> None:
        self._users.set_password_hash(username, digest)


def _user(record: UserRecord) -> ConsoleUser:
    return ConsoleUser(
        record.username, Role(record.role), record.disabled, record.created_at_ns, record.created_by
    )
