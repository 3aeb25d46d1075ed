"""The database seam: what a record store needs of a database, and its SQLite backend.

Record stores (``gateway.storage``) write their SQL once, in a dialect PostgreSQL also runs
(``?`` placeholders, ``ON CONFLICT``, ``RETURNING``), against ``Database``. The SQLite
backend below is the one-box default: WAL mode with ``synchronous=FULL`` (a committed
write survives a power cut), foreign keys on, a five-second wait for another process's
write lock, and the schema brought up to date on open. Every PRAGMA, the write lock
(``BEGIN IMMEDIATE``) and every ``sqlite3`` error stay in this module; a failure reaches
callers as a ``StorageError`` that says what failed. Backups copy the database with
``snapshot_database`` (SQLite's online backup API) and read its version with
``schema_version`` without opening it for writing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, closing, contextmanager
from pathlib import Path
from typing import Any, Protocol

from gateway.errors import DuplicateRecordError, StorageError
from gateway.storage.schema import MIGRATIONS

Row = tuple[Any, ...]
"""One result row, its columns in the order the query names them."""

_DURABLE_SYNCHRONOUS = 2  # PRAGMA synchronous: 2 = FULL, 3 = EXTRA
_BUSY_TIMEOUT_MS = 5000
_PAGES_PER_STEP = 1024
"""Pages a snapshot copies per step; between steps the gateway's writers get the lock."""
_DUPLICATE = frozenset({"SQLITE_CONSTRAINT_PRIMARYKEY", "SQLITE_CONSTRAINT_UNIQUE"})


class Database(Protocol):
    """A connection to the gateway database, used by one thread at a time."""

    def execute(self, sql: str, parameters: Sequence[object] = ()) -> int:
        """Run one statement; return how many rows it changed."""
        ...

    def fetch_one(self, sql: str, parameters: Sequence[object] = ()) -> Row | None:
        """The first row a query returns, or None."""
        ...

    def fetch_all(self, sql: str, parameters: Sequence[object] = ()) -> list[Row]:
        """Every row a query returns."""
        ...

    def scan(self, sql: str, parameters: Sequence[object] = ()) -> Iterator[Row]:
        """The rows of a query one at a time, never all held at once."""
        ...

    def transaction(self) -> AbstractContextManager[bool]:
        """One write transaction, taken at once, or the open one joined.

        Yields whether it joined an open transaction (whose owner then commits): that is
        how a row and its ledger entry become durable together or not at all.
        """
        ...

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open on this connection."""
        ...

    def change_token(self) -> int:
        """A number that changes whenever another connection commits a change."""
        ...

    def close(self) -> None:
        """Close the connection."""
        ...


class SqliteDatabase:
    """The gateway database in one SQLite file (WAL mode, ``synchronous=FULL``)."""

    def __init__(self, connection: sqlite3.Connection, where: str = "the gateway database") -> None:
        """Use ``connection`` (autocommit: ``isolation_level=None``); refuse one on which a
        committed write could still be lost. ``where`` names the file in messages."""
        self._db = connection
        self._where = where
        self._require_durable()

    def execute(self, sql: str, parameters: Sequence[object] = ()) -> int:
        """Run one statement; return how many rows it changed."""
        try:
            return self._db.execute(sql, parameters).rowcount
        except sqlite3.IntegrityError as error:
            if error.sqlite_errorname in _DUPLICATE:
                raise DuplicateRecordError(f"{self._where} refused a record: {error}") from None
            raise self._failed(error) from None
        except sqlite3.Error as error:
            raise self._failed(error) from None

    def fetch_one(self, sql: str, parameters: Sequence[object] = ()) -> Row | None:
        """The first row a query returns, or None."""
        try:
            row: Row | None = self._db.execute(sql, parameters).fetchone()
        except sqlite3.Error as error:
            raise self._failed(error) from None
        return row

    def fetch_all(self, sql: str, parameters: Sequence[object] = ()) -> list[Row]:
        """Every row a query returns."""
        try:
            return list(self._db.execute(sql, parameters).fetchall())
        except sqlite3.Error as error:
            raise self._failed(error) from None

    def scan(self, sql: str, parameters: Sequence[object] = ()) -> Iterator[Row]:
        """The rows of a query one at a time, never all held at once."""
        try:
            cursor = self._db.execute(sql, parameters)
            while (row := cursor.fetchone()) is not None:
                yield row
        except sqlite3.Error as error:
            raise self._failed(error) from None

    def transaction(self) -> AbstractContextManager[bool]:
        """One write transaction (``BEGIN IMMEDIATE``: concurrent writers queue, not fail),
        or the open one joined; see ``Database.transaction``."""
        return _write_transaction(self._db, self._failed)

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open on this connection."""
        return self._db.in_transaction

    def change_token(self) -> int:
        """SQLite's ``data_version``: it moves when another connection commits (not this one)."""
        row = self.fetch_one("PRAGMA data_version")
        return 0 if row is None else int(row[0])

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def _failed(self, error: sqlite3.Error) -> StorageError:
        return StorageError(f"{self._where} failed: {error}")

    def _require_durable(self) -> None:
        (mode,) = self._db.execute("PRAGMA journal_mode").fetchone()
        (synchronous,) = self._db.execute("PRAGMA synchronous").fetchone()
        if str(mode).lower() != "wal" or synchronous < _DURABLE_SYNCHRONOUS:
            raise StorageError(
                f"{self._where} must be in WAL mode with synchronous=FULL, not {mode} with "
                f"synchronous={synchronous}, or a committed write could be lost; open it "
                "with gateway.storage.open_storage"
            )


@contextmanager
def _write_transaction(
    connection: sqlite3.Connection,
    failed: Callable[[sqlite3.Error], StorageError] | None = None,
) -> Iterator[bool]:
    """The one place a write transaction begins: ``BEGIN IMMEDIATE ... COMMIT``, or the
    caller's open transaction joined (yielding True)."""
    if connection.in_transaction:
        yield True
        return
    try:
        connection.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as error:
        raise (failed(error) if failed else error) from None
    try:
        yield False
        connection.execute("COMMIT")
    except BaseException as error:
        rollback_failure = _roll_back(connection)
        if isinstance(error, sqlite3.Error) and failed is not None:
            translated = failed(error)
            if rollback_failure is not None:
                translated.add_note(rollback_failure)
            raise translated from None
        if rollback_failure is not None:
            error.add_note(rollback_failure)
        raise


def _roll_back(connection: sqlite3.Connection) -> str | None:
    """Roll back an open transaction; say how the ROLLBACK failed, if it did, so that the
    error that made it necessary (a full disk, say) is the one raised, not this one."""
    if not connection.in_transaction:
        return None
    try:
        connection.execute("ROLLBACK")
    except sqlite3.Error as failure:
        return f"the ROLLBACK after it failed too: {type(failure).__name__}: {failure}"
    return None


def open_database(path: Path) -> SqliteDatabase:
    """Open (creating if needed) the SQLite database at ``path``, its schema up to date."""
    try:
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as error:
        raise StorageError(f"cannot open gateway database {path}: {error}") from None
    # text that is not UTF-8 (put there by hand) still reads, and ``blob`` gets its bytes back
    connection.text_factory = _text
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        _migrate(connection, path)
        return SqliteDatabase(connection, f"gateway database {path}")
    except sqlite3.Error as error:
        connection.close()
        raise StorageError(f"cannot open gateway database {path}: {error}") from None
    except BaseException:
        connection.close()
        raise


def _migrate(connection: sqlite3.Connection, path: Path) -> None:
    (version,) = connection.execute("PRAGMA user_version").fetchone()
    if version > len(MIGRATIONS):
        raise StorageError(
            f"gateway database {path} has schema version {version}, newer than this "
            f"software ({len(MIGRATIONS)}); upgrade medbadge"
        )
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        with _write_transaction(connection):
            for statement in script.split(";"):
                if statement.strip():
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version={number}")


def snapshot_database(source: Path, target: Path) -> None:
    """Copy the live database at ``source`` to the new file ``target`` through SQLite's
    online backup API: one transaction-consistent state, taken while the gateway writes (a
    commit meanwhile makes the copy redo the pages it changed, so it always finishes).
    Then ``seal_copy``. StorageError says what failed (``target`` is then removed)."""
    if target.exists():
        raise StorageError(f"the database copy {target} exists already; choose a new place")
    try:
        with (
            closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as origin,
            closing(sqlite3.connect(target, isolation_level=None)) as copy,
        ):
            origin.backup(copy, pages=_PAGES_PER_STEP)
    except sqlite3.Error as error:
        target.unlink(missing_ok=True)
        raise StorageError(f"cannot copy the gateway database {source}: {error}") from None
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    seal_copy(target)


def seal_copy(path: Path) -> None:
    """Make the database copy at ``path`` one self-contained file (rollback journal, its
    write-ahead log folded in and removed) and check it with ``PRAGMA quick_check``."""
    try:
        with closing(sqlite3.connect(path, isolation_level=None)) as copy:
            copy.execute("PRAGMA journal_mode=DELETE")
            (verdict,) = copy.execute("PRAGMA quick_check").fetchone()
    except sqlite3.Error as error:
        raise StorageError(f"cannot check the database copy {path}: {error}") from None
    if verdict != "ok":
        raise StorageError(f"the database copy {path} fails SQLite's check: {verdict}")


def schema_version(path: Path) -> int:
    """The schema version of the database file at ``path``, read without changing it."""
    if not path.is_file():
        raise StorageError(f"there is no gateway database at {path}")
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
            (version,) = connection.execute("PRAGMA user_version").fetchone()
    except sqlite3.Error as error:
        raise StorageError(f"cannot read the gateway database {path}: {error}") from None
    return int(version)


def blob(value: object) -> bytes:
    """A byte-string column as bytes, whatever was put there by hand: NULL reads as nothing,
    text or a number as its UTF-8 text (SQLite keeps any type in any column)."""
    if value is None:
        return b""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode("utf-8", "surrogateescape")


def _text(data: bytes) -> str:
    """SQLite text as a str; bytes that are not UTF-8 are kept as surrogate escapes."""
    return data.decode("utf-8", "surrogateescape")
