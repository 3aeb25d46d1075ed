"""The gateway's SQLite database: WAL mode, foreign keys, and schema migrations in order."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from gateway.errors import GatewayError

MIGRATIONS: Sequence[str] = (
    """
    CREATE TABLE badges (
        badge_id TEXT PRIMARY KEY,
        wearer TEXT NOT NULL DEFAULT '',
        location TEXT NOT NULL DEFAULT '',
        key_generation INTEGER NOT NULL,
        broker_password_hash TEXT NOT NULL,
        enrolled_at_ns INTEGER NOT NULL,
        revoked_at_ns INTEGER
    );
    CREATE TABLE badge_keys (
        badge_id TEXT NOT NULL REFERENCES badges(badge_id),
        generation INTEGER NOT NULL,
        public_key BLOB NOT NULL,
        valid_from_ns INTEGER NOT NULL,
        retired_at_ns INTEGER,
        PRIMARY KEY (badge_id, generation)
    );
    CREATE TABLE enrolment_events (
        event_id INTEGER PRIMARY KEY,
        badge_id TEXT NOT NULL REFERENCES badges(badge_id),
        kind TEXT NOT NULL CHECK (kind IN ('enrolled', 'rotated', 'revoked')),
        at_ns INTEGER NOT NULL,
        operator TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    """,
)
"""Each entry moves the schema one version up; never edit one that has shipped."""


class DatabaseError(GatewayError):
    """The gateway database cannot be opened or is newer than this software."""


def open_database(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the gateway database and bring its schema up to date."""
    try:
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("PRAGMA busy_timeout=5000")
        _migrate(connection, path)
    except sqlite3.Error as error:
        raise DatabaseError(f"cannot open gateway database {path}: {error}") from None
    return connection


def _migrate(connection: sqlite3.Connection, path: Path) -> None:
    (version,) = connection.execute("PRAGMA user_version").fetchone()
    if version > len(MIGRATIONS):
        raise DatabaseError(
            f"gateway database {path} has schema version {version}, newer than this "
            f"software ({len(MIGRATIONS)}); upgrade medbadge"
        )
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        connection.execute("BEGIN IMMEDIATE")
        try:
            for statement in script.split(";"):
                if statement.strip():
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version={number}")
            connection.execute("COMMIT")
        except sqlite3.Error:
            connection.execute("ROLLBACK")
            raise
