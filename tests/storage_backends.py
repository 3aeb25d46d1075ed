"""The database backends a storage test runs on: the SQLite file and a PostgreSQL database of
its own on the run's PostgreSQL server (tests/postgres.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg

from gateway.storage.postgres import translate

BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class TestDatabase:
    """Where one test's gateway database is, and a way in that bypasses the gateway."""

    __test__ = False

    backend: str
    location: Path | str
    """The SQLite file, or the PostgreSQL URL (``StorageSettings.database``)."""

    def edit(self, sql: str, *args: object) -> None:
        """Change the database as an intruder with direct access would (no gateway code);
        ``sql`` in the stores' dialect (``?`` placeholders)."""
        if isinstance(self.location, Path):
            connection = sqlite3.connect(self.location)
            try:
                connection.execute(sql, args)
                connection.commit()
            finally:
                connection.close()
            return
        with psycopg.connect(self.location, autocommit=True) as editor:
            editor.execute(translate(sql), args)

    def rows(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        """What a query returns, read directly."""
        if isinstance(self.location, Path):
            connection = sqlite3.connect(self.location)
            try:
                return connection.execute(sql, args).fetchall()
            finally:
                connection.close()
        with psycopg.connect(self.location, autocommit=True) as reader:
            return reader.execute(translate(sql), args).fetchall()


    def gateway_toml(self, root: Path) -> str:
        """The ``[database]`` table a data directory's gateway.toml needs for this database
        (nothing for SQLite, the default); its password goes in a 0600 passfile in ``root``."""
        if isinstance(self.location, Path):
            return ""
        parts = urlsplit(self.location)
        root.mkdir(parents=True, exist_ok=True)
        passfile = root / "pgpass"
        passfile.touch(mode=0o600)
        passfile.write_text(f"*:*:*:*:{parts.password}\n")
        without_password = self.location.replace(f":{parts.password}@", "@", 1)
        return f'[database]\nurl = "{without_password}&passfile={passfile}"\n'


DatabaseFactory = Callable[[Path], TestDatabase]
"""Given a test's directory, a new, empty gateway database on the backend under test."""
