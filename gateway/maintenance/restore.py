"""``gateway restore --from DIR``: a backup made into a fresh data directory, or refused.

Nothing takes its place in the data directory until everything checks (a refused restore
removes what it staged):

1. the manifest is read and every file it lists is copied into a staging directory (inside
   the target, or beside it when it is still to be made), each checked against its size
   and SHA-256 as it is copied;
2. the staged directory opens as a gateway data directory (its schema migrated forward if
   the backup came from an earlier release) and its ledger checks against its own last
   checkpoint; every segment its database names is in its vault;
3. with ``expected_checkpoint`` (a signed checkpoint note the operator kept outside the
   data directory, or one witnesses published), the restored ledger must contain it: signed
   by this gateway's key, for this log, with at least its size and the same root at that
   size. A ledger smaller than it is a rollback, a different root a fork; both are refused;
4. the restore is recorded in the restored ledger's custody log (``restore``: which backup,
   the checkpoint it was checked against, and with ``accept_loss`` how many entries the
   backup lacks), then the staged files are renamed into place.

The target must not exist, or be an empty directory (``lost+found`` aside, for a file system
of its own; the staging directory is then made inside it): a populated one is never
overwritten.
"""

from __future__ import annotations

import hmac
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from evidence.canonical import CanonicalValue
from evidence.durable import fsync_directory
from evidence.errors import EvidenceError
from evidence.ledger.checkpoint import Checkpoint, open_note, parse_checkpoint
from gateway.datadir import GatewayDataDir
from gateway.errors import BackupError, GatewayError
from gateway.ledger.custody import CustodyLog
from gateway.ledger.ledger import Ledger, SignedCheckpoint, open_ledger
from gateway.maintenance.backup import missing_footage
from gateway.maintenance.manifest import Manifest, copy_hashed, sync_tree

MAX_NOTE_BYTES = 64 * 1024
"""A checkpoint note is a few hundred bytes; a file beyond this is not one."""
_IGNORED = frozenset({"lost+found"})
"""What a fresh file system holds and a fresh data directory may too."""
_SAFE_MODE = 0o744
"""Restored files keep their owner's bits; nobody else may write them."""


@dataclass(frozen=True)
class AcceptedLoss:
    """An operator's word that a backup older than the recorded checkpoint is to be
    restored all the same: the loss is then recorded in the restored ledger."""

    operator: str
    justification: str


@dataclass(frozen=True)
class RestoreResult:
    """What was restored."""

    data_dir: GatewayDataDir
    manifest: Manifest
    ledger_size: int
    checkpoint: SignedCheckpoint | None
    """The restored ledger's last checkpoint."""
    expected: Checkpoint | None
    """The checkpoint it was checked against, if one was given."""
    lost_entries: int = 0
    """Entries the recorded checkpoint signed that the backup lacks (accepted losses only)."""


def restore_backup(
    source: Path,
    target: Path,
    *,
    expected_checkpoint: Path | None = None,
    accept_loss: AcceptedLoss | None = None,
) -> RestoreResult:
    """Restore the backup in ``source`` as the data directory ``target``; BackupError if the
    backup is damaged, older than ``expected_checkpoint``, or ``target`` is populated.

    Every restore is a custody entry ``restore`` in the restored ledger. With
    ``accept_loss`` a backup older than ``expected_checkpoint`` is restored, and that entry
    says how many entries were lost; it is still refused if it is not that ledger at all."""
    if accept_loss is not None and expected_checkpoint is None:
        raise BackupError("accepting a loss needs the recorded checkpoint it is measured against")
    manifest = Manifest.read(source)
    _require_fresh(target)
    note = None if expected_checkpoint is None else _read_note(expected_checkpoint)
    # inside an existing (empty) target, so that a target that is a file system of its own
    # is filled by renames within it; beside a target still to be made
    token = secrets.token_hex(4)
    inside = target.is_dir()
    staging = (
        target / f".restoring-{token}"
        if inside
        else target.with_name(f".{target.name}.restoring-{token}")
    )
    try:
        staging.mkdir(mode=0o700, parents=True)
        _copy_files(source, staging, manifest)
        restored = GatewayDataDir(staging)
        checked = _check(restored, manifest, note, expected_checkpoint, accept_loss)
        _move_into_place(staging, target, inside=inside)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    ledger_size, checkpoint, expected, lost = checked
    return RestoreResult(GatewayDataDir(target), manifest, ledger_size, checkpoint, expected, lost)


def _require_fresh(target: Path) -> None:
    if target.is_dir() and any(entry.name not in _IGNORED for entry in target.iterdir()):
        raise BackupError(
            f"{target} holds files already: restore only into a new or empty directory, "
            "never over a gateway's data (move it aside first if it is to be replaced)"
        )
    if target.exists() and not target.is_dir():
        raise BackupError(f"{target} exists and is not a directory")


def _read_note(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_NOTE_BYTES:
            raise BackupError(f"{path} is larger than a checkpoint note can be")
        return path.read_bytes()
    except OSError as error:
        raise BackupError(f"the expected checkpoint {path} cannot be read: {error}") from None


def _copy_files(source: Path, staging: Path, manifest: Manifest) -> None:
    """Copy every listed file, checking each against its size and SHA-256."""
    root = source.resolve()
    for entry in manifest.files:
        path = source / entry.path
        if path.is_symlink() or not path.resolve().is_relative_to(root):
            raise BackupError(
                f"{path} is a symbolic link or leads outside the backup: nothing was restored"
            )
        target = staging / entry.path
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            with path.open("rb") as stream:
                size, digest = copy_hashed(stream, target, entry.mode & _SAFE_MODE)
        except FileNotFoundError:
            raise BackupError(
                f"the backup in {source} lacks {entry.path}, which its manifest lists"
            ) from None
        except OSError as error:
            raise BackupError(f"cannot restore {entry.path}: {error}") from None
        if size != entry.size or not hmac.compare_digest(digest, entry.sha256):
            raise BackupError(
                f"{source / entry.path} is not the file the manifest lists ({size} bytes, "
                f"SHA-256 {digest}; expected {entry.size} bytes, {entry.sha256}): the backup "
                "is damaged or was altered; nothing was restored"
            )
    sync_tree(staging)


def _check(
    restored: GatewayDataDir,
    manifest: Manifest,
    note: bytes | None,
    note_path: Path | None,
    accept_loss: AcceptedLoss | None,
) -> tuple[int, SignedCheckpoint | None, Checkpoint | None, int]:
    """Open the staged directory, check its ledger, footage and the expected checkpoint,
    and record the restore in its custody log."""
    if not restored.is_initialised():
        raise BackupError("the backup holds no gateway signing key: it cannot be restored")
    try:
        storage = restored.storage()  # migrates a backup of an earlier release forward
    except GatewayError as error:
        raise BackupError(f"the backup's database cannot be opened: {error}") from None
    try:
        try:
            ledger = open_ledger(restored, storage)
        except GatewayError as error:
            raise BackupError(
                f"the backup's ledger does not check against its last checkpoint: {error}"
            ) from None
        checkpoint = ledger.latest_checkpoint()
        size = ledger.size
        if size != manifest.ledger_size:
            raise BackupError(
                f"the backup's ledger holds {size} entries, its manifest says "
                f"{manifest.ledger_size}: the backup was altered"
            )
        expected, lost = None, 0
        if note is not None and note_path is not None:
            expected, lost = _require_contains(ledger, note, note_path, accept_loss is not None)
        missing = missing_footage(storage)
        if missing:
            raise BackupError(
                f"{len(missing)} segment(s) the backup's database names are not in it (first: "
                f"{missing[0]})"
            )
        _record(CustodyLog(ledger), manifest, expected, lost, accept_loss)
    finally:
        storage.close()
    return size, checkpoint, expected, lost


def _record(
    custody: CustodyLog,
    manifest: Manifest,
    expected: Checkpoint | None,
    lost: int,
    accept_loss: AcceptedLoss | None,
) -> None:
    """The restore's custody entry: which backup, checked against what, and what was lost."""
    detail: dict[str, CanonicalValue] = {
        "backup_created_at_ns": manifest.created_at_ns,
        "backup_software": manifest.software,
        "restored_entries": manifest.ledger_size,
        "recorded_entries": None if expected is None else expected.size,
        "recorded_root": None if expected is None else expected.root,
        "lost_entries": lost,
    }
    actor = accept_loss.operator if accept_loss is not None else "gateway restore"
    justification = accept_loss.justification if accept_loss is not None else ""
    custody.record(actor, "restore", "ledger", justification, detail=detail)


def _require_contains(
    ledger: Ledger, note: bytes, note_path: Path, accept_loss: bool
) -> tuple[Checkpoint, int]:
    """The expected checkpoint, refused unless the restored ledger contains it (or, with
    ``accept_loss``, is older than it); and how many of its entries the ledger lacks."""
    try:
        text, _signers = open_note(note, [ledger.verifier])
        expected = parse_checkpoint(text)
    except EvidenceError as error:
        raise BackupError(
            f"the expected checkpoint {note_path} is not a checkpoint signed by this backup's "
            f"gateway key: {error}. A backup of another gateway, or one whose keys were "
            "replaced, is refused"
        ) from None
    if expected.origin != ledger.origin:
        raise BackupError(
            f"the expected checkpoint {note_path} is for the log {expected.origin!r}, the "
            f"backup's is {ledger.origin!r}"
        )
    if ledger.size < expected.size:
        if accept_loss:
            return expected, expected.size - ledger.size
        raise BackupError(
            f"refused: rollback. The backup's ledger holds {ledger.size} entries, but the "
            f"checkpoint recorded in {note_path} already signed {expected.size}: this backup "
            f"is older than what was recorded, and {expected.size - ledger.size} entries "
            "(incidents, receipts, custody records) would be lost. Restore a newer backup; "
            "if there is none, --accept-loss restores this one and records the loss"
        )
    if not hmac.compare_digest(ledger.root(expected.size), expected.root):
        raise BackupError(
            f"refused: the backup's ledger differs from the checkpoint recorded in "
            f"{note_path} within its first {expected.size} entries: this is not the ledger "
            "that checkpoint signed"
        )
    return expected, 0


def _move_into_place(staging: Path, target: Path, *, inside: bool) -> None:
    """Give the staged files their place: each renamed into the target it was staged in,
    or the staging directory renamed to be the target."""
    if inside:
        for entry in sorted(staging.iterdir()):
            os.rename(entry, target / entry.name)
        staging.rmdir()
        os.chmod(target, 0o700)
        fsync_directory(target)
    else:
        os.rename(staging, target)
    fsync_directory(target.parent)
