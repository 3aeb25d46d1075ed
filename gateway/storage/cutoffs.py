"""Badges cut off at the broker for sending too many refused messages, until lifted."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.storage.database import Database, blob

_COLUMNS = "badge_id, cut_off_at_ns, refusals, window_ns, detail"


@dataclass(frozen=True)
class Cutoff:
    """One badge's cut-off: when, after how many refusals within how long, and the last one."""

    badge_id: str
    cut_off_at_ns: int
    refusals: int
    window_ns: int
    detail: str


@dataclass(frozen=True)
class BrokerStanding:
    """What the broker should hold for one enrolled badge."""

    badge_id: str
    state: str
    """``"revoked"``, ``"cut-off"`` or ``"enrolled"``."""
    password_hash: str
    """The registry's hash of the badge's broker password (it changes with a rotation)."""
    public_key: bytes
    """The badge's current signing key, raw."""


class BadgeCutoffs:
    """The ``badge_cutoffs`` table: one row per badge cut off now."""

    def __init__(self, db: Database) -> None:
        """Use ``db``."""
        self._db = db

    def cut_off(self, cutoff: Cutoff) -> bool:
        """Record ``cutoff``; False if the badge is cut off already (the first one stays)."""
        with self._db.transaction():
            if self.get(cutoff.badge_id) is not None:
                return False
            self._db.execute(
                f"INSERT INTO badge_cutoffs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?)",  # noqa: S608
                (
                    cutoff.badge_id,
                    cutoff.cut_off_at_ns,
                    cutoff.refusals,
                    cutoff.window_ns,
                    cutoff.detail,
                ),
            )
        return True

    def lift(self, badge_id: str) -> Cutoff | None:
        """Lift the badge's cut-off; return it, or None if the badge was not cut off."""
        with self._db.transaction():
            found = self.get(badge_id)
            if found is not None:
                self._db.execute("DELETE FROM badge_cutoffs WHERE badge_id = ?", (badge_id,))
        return found

    def get(self, badge_id: str) -> Cutoff | None:
        """The badge's cut-off, or None."""
        row = self._db.fetch_one(
            f"SELECT {_COLUMNS} FROM badge_cutoffs WHERE badge_id = ?",  # noqa: S608
            (badge_id,),
        )
        return None if row is None else Cutoff(*row)

    def standing(self) -> dict[str, str]:
        """Every enrolled badge's standing at the broker, in one query: ``"revoked"``,
        ``"cut-off"`` or ``"enrolled"``, by id."""
        rows = self._db.fetch_all(
            "SELECT badges.badge_id, badges.revoked_at_ns, badge_cutoffs.badge_id"
            " FROM badges LEFT JOIN badge_cutoffs ON badge_cutoffs.badge_id = badges.badge_id"
            " ORDER BY badges.badge_id"
        )
        return {
            badge_id: "revoked" if revoked is not None else "cut-off" if cut else "enrolled"
            for badge_id, revoked, cut in rows
        }

    def accounts(self) -> list[BrokerStanding]:
        """Every enrolled badge's standing with its password hash and current key, by id, in
        one query."""
        rows = self._db.fetch_all(
            "SELECT badges.badge_id, badges.revoked_at_ns, badge_cutoffs.badge_id,"
            " badges.broker_password_hash, badge_keys.public_key FROM badges"
            " JOIN badge_keys ON badge_keys.badge_id = badges.badge_id"
            " AND badge_keys.generation = badges.key_generation"
            " LEFT JOIN badge_cutoffs ON badge_cutoffs.badge_id = badges.badge_id"
            " ORDER BY badges.badge_id"
        )
        return [
            BrokerStanding(
                badge_id,
                "revoked" if revoked is not None else "cut-off" if cut else "enrolled",
                password_hash,
                blob(key),
            )
            for badge_id, revoked, cut, password_hash, key in rows
        ]

    def all(self) -> dict[str, Cutoff]:
        """Every badge cut off now, by id."""
        rows = self._db.fetch_all(
            f"SELECT {_COLUMNS} FROM badge_cutoffs ORDER BY badge_id"  # noqa: S608
        )
        return {row[0]: Cutoff(*row) for row in rows}
