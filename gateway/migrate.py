"""``gateway migrate``: move an embedded hospital into PostgreSQL and an S3 vault.

The data directory's own storage (the SQLite file and the vault directory) is copied into
an empty PostgreSQL database and an empty S3 bucket with Object Lock (``storage.copy``).
Afterwards the target's ledger is checked against its last signed checkpoint, every leaf
rehashed, and its size and root compared with the source's; every segment was read back
and hashed as it was copied. Only then is it safe to name the new storage in gateway.toml
(``[database] url``, ``[vault] url``); until then the hospital runs on the old one. The
gateway must be stopped: the copy holds the source's write lock.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.datadir import GatewayDataDir
from gateway.errors import LedgerIntegrityError, StorageError
from gateway.ledger.ledger import Ledger, open_ledger
from gateway.storage import Storage
from gateway.storage.copy import CopyReport, copy_storage
from gateway.storage.database import open_database
from gateway.storage.postgres import PostgresDatabase, open_postgres
from gateway.storage.s3_vault import connect
from gateway.storage.s3_vault_settings import S3VaultSettings
from gateway.storage.vault import DirectoryVault


@dataclass(frozen=True)
class MigrationResult:
    """What was moved and what the check found."""

    copied: CopyReport
    ledger_size: int
    checkpoint_size: int | None
    """The size of the last signed checkpoint the target's ledger verified against."""


def migrate_hospital(
    data_dir: GatewayDataDir,
    database_url: str,
    vault: S3VaultSettings,
    progress: Callable[[str], None] = lambda _line: None,
) -> MigrationResult:
    """Copy the data directory's SQLite file and vault directory into ``database_url`` and
    ``vault`` (both empty), then check the copy; StorageError, VaultError or
    LedgerIntegrityError say what is wrong."""
    data_dir.require_initialised()
    source = Storage(open_database(data_dir.database_path), DirectoryVault(data_dir.vault_dir))
    try:
        source_ledger = open_ledger(data_dir, source)  # the source must verify first
        target_db = open_postgres(database_url)
        try:
            target = Storage(target_db, connect(vault))
            copied = copy_storage(source.database, source.vault, target_db, target.vault, progress)
            return _check(data_dir, source_ledger, target, copied)
        finally:
            target_db.close()
    finally:
        source.close()


def _check(
    data_dir: GatewayDataDir, source: Ledger, target: Storage, copied: CopyReport
) -> MigrationResult:
    if not isinstance(target.database, PostgresDatabase):
        raise StorageError("the migration's target must be PostgreSQL")
    ledger = Ledger(target, data_dir.signing_key(), source.origin)
    last = ledger.verify_against_last_checkpoint()
    if ledger.size != source.size or not hmac.compare_digest(ledger.root(), source.root()):
        raise LedgerIntegrityError(
            f"the copied ledger (size {ledger.size}) differs from the source's (size "
            f"{source.size}); do not switch to the new storage"
        )
    return MigrationResult(copied, ledger.size, None if last is None else last.size)


def vault_settings(
    url: str, endpoint: str, credentials: Path, retention_days: int
) -> S3VaultSettings:
    """``s3://bucket`` with its endpoint and keys file, as the S3 vault takes them."""
    if not url.startswith("s3://") or not url[5:] or "/" in url[5:].rstrip("/"):
        raise StorageError(f"--to-vault {url!r} must be s3://bucket")
    return S3VaultSettings(url[5:].rstrip("/"), endpoint, credentials, retention_days)
