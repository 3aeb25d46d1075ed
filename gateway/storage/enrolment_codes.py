"""One-time enrolment codes: kept as digests, each used once, each outcome remembered."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.storage.database import Database, blob

_COLUMNS = (
    "code_digest, badge_id, rotate, wearer, location, operator, broker_host, broker_port,"
    " issued_at_ns, expires_at_ns, used_at_ns, outcome"
)
MAX_RECENT_CODES = 1000
"""At most this many codes are weighed against one request (the newest)."""


@dataclass(frozen=True)
class EnrolmentCode:
    """An issued code as the gateway keeps it: its digest, never the code itself."""

    digest: bytes
    badge_id: str
    rotate: bool
    wearer: str
    location: str
    operator: str
    broker_host: str
    broker_port: int
    issued_at_ns: int
    expires_at_ns: int
    used_at_ns: int | None = None
    outcome: str | None = None
    """``enrolled``, or why the code was spent without an enrolment."""


class EnrolmentCodes:
    """The enrolment codes in the gateway database."""

    def __init__(self, db: Database) -> None:
        """Use ``db``."""
        self._db = db

    def add(self, code: EnrolmentCode) -> None:
        """Keep a newly issued code."""
        self._db.execute(
            f"INSERT INTO enrolment_codes ({_COLUMNS}) VALUES"  # noqa: S608
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                code.digest,
                code.badge_id,
                int(code.rotate),
                code.wearer,
                code.location,
                code.operator,
                code.broker_host,
                code.broker_port,
                code.issued_at_ns,
                code.expires_at_ns,
                code.used_at_ns,
                code.outcome,
            ),
        )

    def recent(self, since_ns: int) -> list[EnrolmentCode]:
        """The codes issued since ``since_ns``, newest first, at most MAX_RECENT_CODES."""
        rows = self._db.fetch_all(
            f"SELECT {_COLUMNS} FROM enrolment_codes WHERE issued_at_ns >= ?"  # noqa: S608
            " ORDER BY issued_at_ns DESC LIMIT ?",
            (since_ns, MAX_RECENT_CODES),
        )
        return [_code(row) for row in rows]

    def get(self, digest: bytes) -> EnrolmentCode | None:
        """The code with ``digest``, if it was issued."""
        row = self._db.fetch_one(
            f"SELECT {_COLUMNS} FROM enrolment_codes WHERE code_digest = ?",  # noqa: S608
            (digest,),
        )
        return None if row is None else _code(row)

    def spend(self, digest: bytes, at_ns: int, outcome: str) -> bool:
        """Mark the code used with ``outcome``; False if it was used already."""
        changed = self._db.execute(
            "UPDATE enrolment_codes SET used_at_ns = ?, outcome = ?"
            " WHERE code_digest = ? AND used_at_ns IS NULL",
            (at_ns, outcome, digest),
        )
        return changed == 1

    def pending(self, now_ns: int) -> list[EnrolmentCode]:
        """Codes neither used nor expired, oldest first."""
        rows = self._db.fetch_all(
            f"SELECT {_COLUMNS} FROM enrolment_codes"  # noqa: S608
            " WHERE used_at_ns IS NULL AND expires_at_ns > ? ORDER BY issued_at_ns LIMIT ?",
            (now_ns, MAX_RECENT_CODES),
        )
        return [_code(row) for row in rows]


def _code(row: tuple[object, ...]) -> EnrolmentCode:
    (
        digest,
        badge_id,
        rotate,
        wearer,
        location,
        operator,
        host,
        port,
        issued,
        expires,
        used,
        outcome,
    ) = row
    return EnrolmentCode(
        digest=blob(digest),
        badge_id=str(badge_id),
        rotate=bool(rotate),
        wearer=str(wearer),
        location=str(location),
        operator=str(operator),
        broker_host=str(host),
        broker_port=int(str(port)),
        issued_at_ns=int(str(issued)),
        expires_at_ns=int(str(expires)),
        used_at_ns=None if used is None else int(str(used)),
        outcome=None if outcome is None else str(outcome),
    )
