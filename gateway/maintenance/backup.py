"""``gateway backup --to DIR``: a consistent snapshot of a running gateway.

What is copied, in this order:

1. the database, through SQLite's online backup API (``gateway.storage.snapshot``): one
   consistent state, taken while the intake writes;
2. the vault's sealed segments, each checked against its name (its SHA-256) as it is read:
   they are never rewritten, so those the snapshot names are there unless retention deleted
   them meanwhile, which the backup then says (run it again);
3. the keys (``keys/``), the evidence CA (``ca/``) and the files at the top of the data
   directory (``gateway.toml``, secrets it names there). The custodian's private key only
   with ``include_custodian_key``: its offline copy belongs elsewhere (docs/deployment.md).

Left out, because the gateway remakes them: partial segments (badges resend), the
quarantine (diagnosis only), the broker's generated files and the console's certificate.
``MANIFEST.json`` is written last, after ``SHA256SUMS`` and ``checkpoint.note``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from evidence.durable import write_durably
from gateway.datadir import GatewayDataDir
from gateway.errors import BackupError, GatewayError
from gateway.ledger.ledger import SignedCheckpoint, open_ledger
from gateway.maintenance.manifest import (
    CHECKPOINT_FILE,
    MANIFEST_FILE,
    SUMS_FILE,
    FileEntry,
    Manifest,
    copy_hashed,
    hash_file,
    sync_tree,
)
from gateway.storage import Storage, open_storage
from gateway.storage.database import schema_version, seal_copy, snapshot_database
from gateway.storage.stores import StorageSettings
from gateway.storage.vault import SUFFIX

DATABASE_FILE = "gateway.db"
KEPT_DIRECTORIES = ("keys", "ca")
"""Directories copied whole (dot-files aside)."""
_SKIPPED = frozenset({DATABASE_FILE, f"{DATABASE_FILE}-wal", f"{DATABASE_FILE}-shm"})


@dataclass(frozen=True)
class BackupResult:
    """What a backup holds."""

    directory: Path
    manifest: Manifest
    checkpoint: SignedCheckpoint | None
    """The last checkpoint in the snapshot: record it outside the data directory."""

    @property
    def bytes(self) -> int:
        """The bytes copied."""
        return sum(entry.size for entry in self.manifest.files)


def software_version() -> str:
    """This software's name and version, as the manifest records it."""
    try:
        return f"medbadge {metadata.version('medbadge')}"
    except metadata.PackageNotFoundError:
        return "medbadge (not installed)"


def take_backup(
    data_dir: GatewayDataDir, target: Path, *, include_custodian_key: bool = False
) -> BackupResult:
    """Copy ``data_dir`` into the new or empty directory ``target``; BackupError says why not."""
    data_dir.require_initialised()
    _prepare(target)
    files: list[FileEntry] = []
    try:
        database = target / DATABASE_FILE
        snapshot_database(data_dir.database_path, database)
        files.extend(_copy_vault(data_dir, target))
        for relative in _key_files(data_dir, include_custodian_key):
            files.append(_copy(data_dir.root / relative, target / relative, relative))
        checkpoint, ledger_size = _check_copy(data_dir, target)
        seal_copy(database)
        files.append(_entry(database, DATABASE_FILE))
    except (GatewayError, OSError) as error:
        raise BackupError(f"the backup in {target} is incomplete: {error}") from None
    manifest = Manifest(
        hospital=data_dir.evidence_ca().hospital_name,
        created_at_ns=time.time_ns(),
        software=software_version(),
        schema_version=schema_version(database),
        custodian_private_key=include_custodian_key,
        ledger_size=ledger_size,
        checkpoint_size=0 if checkpoint is None else checkpoint.size,
        files=tuple(sorted(files, key=lambda entry: entry.path)),
    )
    sync_tree(target)  # every copied file is durable before the manifest names it
    if checkpoint is not None:
        write_durably(target / CHECKPOINT_FILE, checkpoint.note, 0o644, replace=False)
    write_durably(target / SUMS_FILE, manifest.sums(), 0o644, replace=False)
    write_durably(target / MANIFEST_FILE, manifest.to_json(), 0o644, replace=False)
    return BackupResult(target, manifest, checkpoint)


def _prepare(target: Path) -> None:
    """Create ``target`` (0700), or take it if it is an empty directory."""
    try:
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
        if any(target.iterdir()):
            raise BackupError(f"{target} is not empty: back up into a new or empty directory")
        os.chmod(target, 0o700)
    except OSError as error:
        raise BackupError(f"cannot create the backup directory {target}: {error}") from None


def _copy(source: Path, target: Path, relative: str) -> FileEntry:
    """Copy one file, keeping its permission bits; its entry in the manifest."""
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with source.open("rb") as stream:
        mode = os.fstat(stream.fileno()).st_mode & 0o777
        size, digest = copy_hashed(stream, target, mode)
    return FileEntry(relative, size, digest, mode)


def _entry(path: Path, relative: str) -> FileEntry:
    """The manifest entry of a file already written."""
    size, digest = hash_file(path)
    return FileEntry(relative, size, digest, path.stat().st_mode & 0o777)


def _copy_vault(data_dir: GatewayDataDir, target: Path) -> Iterator[FileEntry]:
    """Copy every sealed segment, refusing one whose bytes no longer match its name."""
    vault = data_dir.vault_dir
    for folder in sorted(vault.iterdir()) if vault.is_dir() else ():
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        for path in sorted(folder.iterdir()):
            if not path.name.endswith(SUFFIX) or path.name.startswith("."):
                continue  # a put still under way leaves a dot-file: not stored yet
            relative = f"vault/{folder.name}/{path.name}"
            try:
                entry = _copy(path, target / relative, relative)
            except FileNotFoundError:
                continue  # deleted by retention since it was listed
            if entry.sha256 != path.name.removesuffix(SUFFIX):
                raise BackupError(
                    f"vault file {path} hashes to {entry.sha256}, not its name: the stored "
                    "segment was altered or damaged; nothing else is backed up"
                )
            yield entry


def _key_files(data_dir: GatewayDataDir, include_custodian_key: bool) -> Iterator[str]:
    """The key, CA and top-level files to copy, as paths inside the data directory."""
    custodian = data_dir.custodian_key_path.relative_to(data_dir.root).as_posix()
    for directory in KEPT_DIRECTORIES:
        for path in sorted((data_dir.root / directory).iterdir()):
            relative = f"{directory}/{path.name}"
            if path.name.startswith(".") or not path.is_file():
                continue
            if relative == custodian and not include_custodian_key:
                continue
            yield relative
    for path in sorted(data_dir.root.iterdir()):
        if path.is_file() and not path.name.startswith(".") and path.name not in _SKIPPED:
            yield path.name


def _check_copy(data_dir: GatewayDataDir, target: Path) -> tuple[SignedCheckpoint | None, int]:
    """Check the copied database: its ledger against its last checkpoint (with the live
    directory's keys), and every segment it names in the copied vault. Return that last
    checkpoint and the ledger's size; ``seal_copy`` then folds back what opening it wrote."""
    storage = open_storage(StorageSettings(target / DATABASE_FILE, target / "vault"))
    try:
        ledger = open_ledger(data_dir, storage)
        checkpoint = ledger.latest_checkpoint()
        size = ledger.size
        missing = missing_footage(storage)
    finally:
        storage.close()
    if missing:
        raise BackupError(
            f"{len(missing)} segment(s) the database names are not in the vault (first: "
            f"{missing[0]}); if retention deleted footage during the backup, run it again"
        )
    return checkpoint, size


def missing_footage(storage: Storage) -> list[str]:
    """The SHA-256 (hex) of each segment ``storage`` names that its vault does not hold."""
    return [
        digest.hex()
        for digest in storage.retention.footage_kept()
        if not storage.vault.exists(digest)
    ]
