"""The badge registry: which badges are enrolled, their public keys over time, and every change."""

from __future__ import annotations

import time
from dataclasses import dataclass

from evidence.identifiers import validate_badge_id
from evidence.keys import SigningPublicKey
from gateway.errors import EnrolmentError
from gateway.storage.database import Database, blob

_BADGE_COLUMNS = (
    "badge_id, wearer, location, key_generation, broker_password_hash, enrolled_at_ns,"
    " revoked_at_ns"
)


@dataclass(frozen=True)
class EnrolledBadge:
    """A badge as the gateway knows it."""

    badge_id: str
    wearer: str
    location: str
    key_generation: int
    public_key: SigningPublicKey
    broker_password_hash: str
    enrolled_at_ns: int
    revoked_at_ns: int | None
    key_origin: str = "gateway-generated"
    """How the current key was made: badge-generated, badge-hardware or gateway-generated."""


@dataclass(frozen=True)
class EnrolmentEvent:
    """One recorded change to a badge's enrolment."""

    badge_id: str
    kind: str
    at_ns: int
    operator: str
    detail: str


@dataclass(frozen=True)
class _BadgeRow:
    badge_id: str
    wearer: str
    location: str
    key_generation: int
    broker_password_hash: str
    enrolled_at_ns: int
    revoked_at_ns: int | None


class BadgeRegistry:
    """Badge enrolments stored in the gateway database."""

    def __init__(self, db: Database) -> None:
        """Use ``db``."""
        self._db = db

    def change_token(self) -> int:
        """A number that changes whenever another connection commits (an enrolment, a
        rotation or a revocation among what it may have changed)."""
        return self._db.change_token()

    def enroll(
        self,
        badge_id: str,
        public_key: SigningPublicKey,
        broker_password_hash: str,
        *,
        wearer: str,
        location: str,
        operator: str,
        rotate: bool,
        key_origin: str,
        tls_certificate: bytes | None = None,
    ) -> EnrolledBadge:
        """Register ``public_key`` for ``badge_id``; an existing id needs ``rotate=True``.

        A rotation retires the previous key (kept, so footage it signed still verifies)
        and is recorded as an enrolment event. ``key_origin`` says how the key was made;
        ``tls_certificate`` is the DER broker certificate issued with it, if any.
        """
        validate_badge_id(badge_id)
        now = time.time_ns()
        with self._db.transaction():
            existing = self._row(badge_id)
            if existing is not None and not rotate:
                raise EnrolmentError(
                    f"badge {badge_id} is already enrolled; use --rotate to issue it a new key"
                )
            generation = 1 if existing is None else existing.key_generation + 1
            if existing is None:
                self._db.execute(
                    "INSERT INTO badges (badge_id, wearer, location, key_generation,"
                    " broker_password_hash, enrolled_at_ns) VALUES (?, ?, ?, ?, ?, ?)",
                    (badge_id, wearer, location, generation, broker_password_hash, now),
                )
            else:
                self._db.execute(
                    "UPDATE badges SET wearer = ?, location = ?, key_generation = ?,"
                    " broker_password_hash = ?, revoked_at_ns = NULL WHERE badge_id = ?",
                    (wearer, location, generation, broker_password_hash, badge_id),
                )
                self._db.execute(
                    "UPDATE badge_keys SET retired_at_ns = ? WHERE badge_id = ?"
                    " AND retired_at_ns IS NULL",
                    (now, badge_id),
                )
            self._db.execute(
                "INSERT INTO badge_keys (badge_id, generation, public_key, valid_from_ns,"
                " origin, tls_certificate) VALUES (?, ?, ?, ?, ?, ?)",
                (badge_id, generation, public_key.raw, now, key_origin, tls_certificate),
            )
            kind = "enrolled" if existing is None else "rotated"
            self._db.execute(
                "INSERT INTO enrolment_events (badge_id, kind, at_ns, operator, detail)"
                " VALUES (?, ?, ?, ?, ?)",
                (badge_id, kind, now, operator, f"key generation {generation}"),
            )
        return self.get(badge_id)

    def revoke(self, badge_id: str, *, operator: str, reason: str) -> EnrolledBadge:
        """Mark ``badge_id`` revoked, recorded as an enrolment event.

        The intake refuses a revoked badge at once, and a running gateway deletes its broker
        account within a poll. Enrolling it again with ``rotate`` issues a new key and lifts
        the revocation.
        """
        now = time.time_ns()
        with self._db.transaction():
            existing = self._row(badge_id)
            if existing is None:
                raise EnrolmentError(f"badge {badge_id} is not enrolled, so it cannot be revoked")
            if existing.revoked_at_ns is not None:
                raise EnrolmentError(f"badge {badge_id} is revoked already")
            self._db.execute(
                "UPDATE badges SET revoked_at_ns = ? WHERE badge_id = ?", (now, badge_id)
            )
            self._db.execute(
                "INSERT INTO enrolment_events (badge_id, kind, at_ns, operator, detail)"
                " VALUES (?, 'revoked', ?, ?, ?)",
                (badge_id, now, operator, reason),
            )
        return self.get(badge_id)

    def _row(self, badge_id: str) -> _BadgeRow | None:
        row = self._db.fetch_one(
            f"SELECT {_BADGE_COLUMNS} FROM badges WHERE badge_id = ?",  # noqa: S608
            (badge_id,),
        )
        return None if row is None else _BadgeRow(*row)

    def get(self, badge_id: str) -> EnrolledBadge:
        """Return the badge's current enrolment; raise EnrolmentError if it has none."""
        row = self._row(badge_id)
        if row is None:
            raise EnrolmentError(f"badge {badge_id} is not enrolled")
        key = self._db.fetch_one(
            "SELECT public_key, origin FROM badge_keys WHERE badge_id = ? AND generation = ?",
            (badge_id, row.key_generation),
        )
        if key is None:
            raise EnrolmentError(
                f"badge {badge_id}'s key generation {row.key_generation} is missing from the "
                "registry; enrol the badge again with --rotate"
            )
        return EnrolledBadge(
            badge_id=row.badge_id,
            wearer=row.wearer,
            location=row.location,
            key_generation=row.key_generation,
            public_key=SigningPublicKey.from_raw(blob(key[0])),
            broker_password_hash=row.broker_password_hash,
            enrolled_at_ns=row.enrolled_at_ns,
            revoked_at_ns=row.revoked_at_ns,
            key_origin=str(key[1]),
        )

    def key_history(self, badge_id: str) -> list[tuple[int, SigningPublicKey]]:
        """Every key the badge has had, oldest first, as (generation, key)."""
        rows = self._db.fetch_all(
            "SELECT generation, public_key FROM badge_keys WHERE badge_id = ? ORDER BY generation",
            (badge_id,),
        )
        return [(generation, SigningPublicKey.from_raw(blob(key))) for generation, key in rows]

    def has_key(self, public_key: SigningPublicKey) -> str | None:
        """The badge that has (or had) ``public_key``, if any: a key belongs to one badge."""
        row = self._db.fetch_one(
            "SELECT badge_id FROM badge_keys WHERE public_key = ?", (public_key.raw,)
        )
        return None if row is None else str(row[0])

    def events(self, badge_id: str) -> list[EnrolmentEvent]:
        """The badge's enrolment events, oldest first."""
        rows = self._db.fetch_all(
            "SELECT badge_id, kind, at_ns, operator, detail FROM enrolment_events"
            " WHERE badge_id = ? ORDER BY event_id",
            (badge_id,),
        )
        return [EnrolmentEvent(*row) for row in rows]

    def count_active(self) -> int:
        """How many badges are enrolled and not revoked."""
        row = self._db.fetch_one("SELECT COUNT(*) FROM badges WHERE revoked_at_ns IS NULL")
        return 0 if row is None else int(row[0])

    def all(self) -> list[EnrolledBadge]:
        """Every enrolled badge, by id."""
        ids = [
            row[0] for row in self._db.fetch_all("SELECT badge_id FROM badges ORDER BY badge_id")
        ]
        return [self.get(badge_id) for badge_id in ids]
