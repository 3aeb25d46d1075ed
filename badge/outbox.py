"""The durable outbox: alerts and closed incidents waiting for the uplink, surviving reboot.

A SQLite file (WAL, synchronous=FULL): an item is on disk before ``put`` returns, and leaves
only when the uplink says the gateway has acknowledged it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from badge.errors import OutboxError

ItemKind = Literal["alert", "incident"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    item_id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reuse an id: the uplink tracks items
    kind TEXT NOT NULL CHECK (kind IN ('alert', 'incident')),
    key TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_ns INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    UNIQUE (kind, key)
)
"""


@dataclass(frozen=True)
class OutboxItem:
    """One message waiting to be sent."""

    item_id: int
    kind: ItemKind
    key: str
    payload: bytes
    created_ns: int
    attempts: int


class Outbox:
    """A durable first-in, first-out queue; alerts always come out before incidents."""

    def __init__(self, path: Path) -> None:
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
        except sqlite3.Error as error:
            raise OutboxError(f"cannot open outbox {path}: {error}") from None
        self._lock = threading.Lock()

    def put(self, kind: ItemKind, key: str, payload: bytes) -> bool:
        """Queue an item; return False if one of that kind and key is already queued."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO outbox (kind, key, payload, created_ns) VALUES (?, ?, ?, ?)",
                (kind, key, payload, time.time_ns()),
            )
            return cursor.rowcount == 1

    def pending(self) -> list[OutboxItem]:
        """Every queued item: alerts first, then oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT item_id, kind, key, payload, created_ns, attempts FROM outbox"
                " ORDER BY kind = 'alert' DESC, item_id"
            ).fetchall()
        return [OutboxItem(*row) for row in rows]

    def note_attempt(self, item_id: int) -> None:
        """Count one more attempt to send an item."""
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET attempts = attempts + 1 WHERE item_id = ?", (item_id,)
            )

    def done(self, item_id: int) -> None:
        """Remove an item the gateway has acknowledged."""
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE item_id = ?", (item_id,))

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
