"""The database seam: one transaction helper, errors of our own, migrations, arrival order;
the SQLite backend's durable settings (the shared tests run on PostgreSQL too)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from evidence.incident import Press
from evidence.keys import SigningKey
from gateway.errors import DuplicateRecordError, StorageError
from gateway.storage import StorageSettings, open_storage
from gateway.storage.catalogue import NewAlert
from gateway.storage.database import SqliteDatabase
from gateway.storage.schema import MIGRATIONS
from tests.storage_backends import DatabaseFactory


def settings(root: Path) -> StorageSettings:
    return StorageSettings(root / "gateway.db", root / "vault")


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def alert(incident_id: str, received_ns: int) -> NewAlert:
    return NewAlert("badge-a", incident_id, b"signed", bytes(32), Press(1, 2, 3), "", received_ns)


def test_a_joined_transaction_commits_or_rolls_back_with_its_owner(
    tmp_path: Path, database_factory: DatabaseFactory
) -> None:
    storage = open_storage(StorageSettings(database_factory(tmp_path).location, tmp_path / "v"))
    try:
        with pytest.raises(RuntimeError), storage.transaction() as joined:
            assert joined is False and storage.in_transaction
            with storage.transaction() as inner:
                assert inner is True
                storage.checkpoints.add(1, bytes(32), b"note", 5)
            raise RuntimeError("the owner gives up")
        assert storage.checkpoints.latest() is None and not storage.in_transaction
        with storage.transaction(), storage.transaction():
            storage.checkpoints.add(1, bytes(32), b"note", 5)
        latest = storage.checkpoints.latest()
        assert latest is not None and (latest.size, latest.note) == (1, b"note")
    finally:
        storage.close()


def test_database_failures_reach_callers_as_storage_errors(tmp_path: Path) -> None:
    storage = open_storage(settings(tmp_path))
    try:
        storage.users.add("olga", "hash", "officer", 1, "test")
        with pytest.raises(DuplicateRecordError, match="refused a record"):
            storage.users.add("olga", "other hash", "admin", 2, "test")
        with pytest.raises(StorageError, match="FOREIGN KEY") as refused:
            storage.catalogue.add_alert(alert("inc-1", 1))  # no such badge
        assert not isinstance(refused.value, DuplicateRecordError)
        editor = sqlite3.connect(tmp_path / "gateway.db")
        editor.execute("DROP TABLE console_sessions")
        editor.commit()
        editor.close()
        with pytest.raises(StorageError, match="no such table: console_sessions"):
            storage.sessions.remove_user("olga")
    finally:
        storage.close()


def test_a_database_newer_than_the_software_is_refused(tmp_path: Path) -> None:
    open_storage(settings(tmp_path)).close()
    editor = sqlite3.connect(tmp_path / "gateway.db")
    editor.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    editor.close()
    with pytest.raises(StorageError, match="newer than this software"):
        open_storage(settings(tmp_path))


def test_new_alerts_arrive_in_order_and_the_index_catches_up_by_arrival(
    tmp_path: Path, database_factory: DatabaseFactory
) -> None:
    database = database_factory(tmp_path)
    storage = open_storage(StorageSettings(database.location, tmp_path / "vault"))
    try:
        key = SigningKey.generate().public_key
        storage.badges.enroll(
            "badge-a",
            key,
            "x",
            wearer="",
            location="",
            operator="test",
            rotate=False,
            key_origin="badge-generated",
        )
        assert storage.catalogue.add_alert(alert("inc-1", 300))
        assert not storage.catalogue.add_alert(alert("inc-1", 400))  # stored once
        assert storage.catalogue.add_alert(alert("inc-2", 100))  # an older clock, a later arrival
        arrivals = database.rows("SELECT incident_id, arrival FROM alerts")
        assert sorted(arrivals) == [("inc-1", 1), ("inc-2", 2)]
        assert storage.incident_index.catch_up() == 2
        assert storage.incident_index.catch_up() == 0  # nothing new since
        assert storage.catalogue.add_alert(alert("inc-3", 200))
        assert storage.incident_index.catch_up() == 1
        found = storage.incident_index.get("badge-a", "inc-2")
        assert found is not None and found.opened_ns == 100
    finally:
        storage.close()


def test_the_arrival_migration_numbers_existing_rows_and_reindexes_them(tmp_path: Path) -> None:
    """A database from before arrival numbers: its rows get them, the index catches up."""
    path = tmp_path / "gateway.db"
    old = sqlite3.connect(path, isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:5], start=1):
        old.executescript(script)
        old.execute(f"PRAGMA user_version={number}")
    old.execute(
        "INSERT INTO badges (badge_id, key_generation, broker_password_hash, enrolled_at_ns)"
        " VALUES ('badge-a', 1, 'x', 0)"
    )
    for incident_id, received in (("inc-b", 20), ("inc-a", 10)):
        old.execute(
            "INSERT INTO alerts (badge_id, incident_id, signed_alert, alert_sha256, press_boot,"
            " press_mono_ns, press_wall_ns, location, received_wall_ns)"
            " VALUES ('badge-a', ?, x'00', x'00', 1, 0, 0, 'ER', ?)",
            (incident_id, received),
        )
    old.execute("INSERT INTO incident_index_sync (source, last_rowid) VALUES ('alerts', 1)")
    old.close()
    storage = open_storage(settings(tmp_path))
    try:
        assert sorted(rows(path, "SELECT incident_id, arrival FROM alerts")) == [
            ("inc-a", 1),
            ("inc-b", 2),
        ]
        assert storage.incident_index.catch_up() == 2  # the old watermark is not trusted
        assert storage.catalogue.add_alert(alert("inc-c", 30))
        assert ("inc-c", 3) in rows(path, "SELECT incident_id, arrival FROM alerts")
    finally:
        storage.close()


class CommitAndRollbackFail(sqlite3.Connection):
    """A real SQLite connection whose COMMIT reports a full disk and whose ROLLBACK fails
    after it, as SQLite may once it has rolled the transaction back itself."""

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        if sql == "COMMIT":
            raise sqlite3.OperationalError("database or disk is full")
        if sql == "ROLLBACK":
            raise sqlite3.OperationalError("cannot rollback - no transaction is active")
        return super().execute(sql, parameters)


def test_a_failing_rollback_does_not_hide_the_error_that_caused_it(tmp_path: Path) -> None:
    connection = sqlite3.connect(
        tmp_path / "t.db", isolation_level=None, factory=CommitAndRollbackFail
    )
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("CREATE TABLE t (x INTEGER)")
    database = SqliteDatabase(connection, "test database")
    try:
        with (
            pytest.raises(StorageError, match="database or disk is full") as raised,
            database.transaction(),
        ):
            database.execute("INSERT INTO t VALUES (1)")
        notes = getattr(raised.value, "__notes__", [])
        assert any("cannot rollback" in note for note in notes)
        sqlite3.Connection.execute(connection, "ROLLBACK")  # what the failed one left open
        with pytest.raises(KeyError) as other, database.transaction():  # the caller's error
            raise KeyError("the caller's")
        assert any("cannot rollback" in note for note in getattr(other.value, "__notes__", []))
    finally:
        sqlite3.Connection.execute(connection, "ROLLBACK")
        connection.close()
