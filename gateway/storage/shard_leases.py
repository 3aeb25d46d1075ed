"""Leases on shards of the badges: which intake worker reads which badges, until when.

Badges are split into a fixed number of shards by a hash of their id (``shard_of``), so
each badge's messages reach one worker, in order (decision 0701 b). A worker holds a shard
by a lease it renews; a lease that was not renewed before it expired may be taken by
another worker, which is how a dead worker's badges move on within one lease period
(decision 2303). The database's write lock makes each claim one step: two workers never
both hold a shard.
"""

from __future__ import annotations

import hashlib

from gateway.storage.database import Database


def shard_of(badge_id: str, shards: int) -> int:
    """The shard of ``badge_id`` among ``shards``: the same in every process and release."""
    if shards < 1:
        raise ValueError(f"there must be at least one shard, not {shards}")
    digest = hashlib.sha256(badge_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % shards


class ShardLeases:
    """The ``intake_shard_leases`` table."""

    def __init__(self, db: Database) -> None:
        """Use ``db``."""
        self._db = db

    def claim(self, shard: int, holder: str, now_ns: int, ttl_ns: int) -> bool:
        """Take or renew ``shard`` for ``holder`` until ``now_ns + ttl_ns``; True if it now
        holds it (it was free, expired, or already its own), False if another holds it."""
        with self._db.transaction():
            self._db.execute(
                "INSERT INTO intake_shard_leases (shard, holder, expires_ns) VALUES (?, ?, ?)"
                " ON CONFLICT (shard) DO UPDATE SET holder = excluded.holder,"
                " expires_ns = excluded.expires_ns"
                " WHERE intake_shard_leases.holder = excluded.holder"
                " OR intake_shard_leases.expires_ns <= ?",
                (shard, holder, now_ns + ttl_ns, now_ns),
            )
            row = self._db.fetch_one(
                "SELECT holder FROM intake_shard_leases WHERE shard = ?", (shard,)
            )
        return row is not None and row[0] == holder

    def release(self, shard: int, holder: str) -> None:
        """Give ``shard`` up at once, if ``holder`` holds it (a worker stopping cleanly)."""
        self._db.execute(
            "DELETE FROM intake_shard_leases WHERE shard = ? AND holder = ?", (shard, holder)
        )

    def holders(self, now_ns: int) -> dict[int, str]:
        """Every shard whose lease runs past ``now_ns``, and who holds it."""
        rows = self._db.fetch_all(
            "SELECT shard, holder FROM intake_shard_leases WHERE expires_ns > ? ORDER BY shard",
            (now_ns,),
        )
        return {int(shard): str(holder) for shard, holder in rows}
