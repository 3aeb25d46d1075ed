"""Copying a hospital's records and footage from one storage into another, empty one.

``gateway migrate`` (``gateway.migrate``) moves an embedded hospital (SQLite and the vault
directory) into PostgreSQL and an S3 vault with this. The copy runs inside the source's
write transaction, so the gateway's own writers wait and every table is read at one
moment. Tables go in an order that puts each row after the rows it refers to; the target's
identity columns are then moved past the copied values. Every sealed segment goes through
the target vault's ``put``, which hashes what it stores and refuses other bytes, and is then
read back and hashed once more.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from gateway.errors import StorageError, VaultError
from gateway.storage.database import Database
from gateway.storage.postgres import PostgresDatabase
from gateway.storage.vault import Vault

_FIRST = (
    "badges", "badge_keys", "enrolment_events", "incidents", "segments", "alerts",
    "badge_state", "clock_samples", "ledger_leaves", "checkpoints", "receipts",
    "custody_entries", "console_users", "console_sessions", "alert_actions",
)
"""Tables that others refer to come first; any other table follows, by name."""
_BLOCK = 1 << 20

Progress = Callable[[str], None]


@dataclass(frozen=True)
class CopyReport:
    """What was copied."""

    rows: dict[str, int]
    """Rows copied, per table."""
    segments: int
    """Sealed segments copied and read back with their SHA-256."""
    deleted: int
    """Segments the source no longer holds (deleted under retention; their rows stay)."""


def is_empty_vault(vault: Vault) -> bool:
    """True when the vault holds nothing at all (as a migration's target must)."""
    empty = getattr(vault, "is_empty", None)
    if empty is None:
        raise VaultError(f"{type(vault).__name__} cannot say whether it is empty")
    return bool(empty())


def copy_records(source: Database, target: PostgresDatabase, progress: Progress) -> dict[str, int]:
    """Copy every row of every schema table from ``source`` into ``target`` (one target
    transaction; the caller holds the source's)."""
    if not target.is_empty():
        raise StorageError("the target database already holds records; migrate into an empty one")
    tables = [name for (name,) in target.fetch_all(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        " AND table_type = 'BASE TABLE' AND table_name != 'medbadge_schema'"
    )]
    ordered = [name for name in _FIRST if name in tables]
    ordered += sorted(name for name in tables if name not in _FIRST)
    copied: dict[str, int] = {}
    with target.transaction():
        for table in ordered:
            columns = [name for (name,) in target.fetch_all(
                "SELECT column_name FROM information_schema.columns WHERE"
                " table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
                (table,),
            )]
            names = ", ".join(columns)
            rows = source.scan(f"SELECT {names} FROM {table}")  # noqa: S608 - the schema's names
            copied[table] = target.copy_rows(table, columns, rows)
            progress(f"{table}: {copied[table]} rows")
    return copied


def copy_footage(
    source_db: Database, source: Vault, target: Vault, progress: Progress
) -> tuple[int, int]:
    """Copy every sealed segment the records name; return (copied, no longer held)."""
    copied = deleted = 0
    for (value,) in source_db.scan("SELECT DISTINCT sealed_sha256 FROM segments"):
        sha = bytes(value)
        if not source.exists(sha):
            deleted += 1
            continue
        with source.open(sha) as stream:
            target.put(stream, sha)
        digest = hashlib.sha256()
        with target.open(sha) as stream:
            while block := stream.read(_BLOCK):
                digest.update(block)
        if digest.digest() != sha:
            raise VaultError(f"segment {sha.hex()} reads back as {digest.hexdigest()}")
        copied += 1
        if copied % 100 == 0:
            progress(f"{copied} segments")
    progress(f"segments: {copied} copied and read back, {deleted} deleted under retention")
    return copied, deleted


def copy_storage(
    source_db: Database,
    source_vault: Vault,
    target_db: PostgresDatabase,
    target_vault: Vault,
    progress: Progress,
) -> CopyReport:
    """Copy records then footage, holding the source's write lock throughout."""
    if not is_empty_vault(target_vault):
        raise VaultError("the target vault already holds segments; migrate into an empty one")
    with source_db.transaction():
        rows = copy_records(source_db, target_db, progress)
        segments, deleted = copy_footage(source_db, source_vault, target_vault, progress)
    return CopyReport(rows, segments, deleted)
