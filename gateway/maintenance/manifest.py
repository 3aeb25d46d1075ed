"""A backup's manifest: what it holds, each file's size and SHA-256, and the ledger it saw.

A backup directory holds the copied files under their paths in the data directory, plus::

    MANIFEST.json     format, hospital, software and schema version, the ledger's size and
                      last checkpoint, whether the custodian key is inside, and every file
                      with its size and SHA-256; written last: a backup without it is not one
    SHA256SUMS        the same digests for ``sha256sum -c SHA256SUMS``, run inside DIR
    checkpoint.note   the last signed checkpoint the backup holds (a C2SP signed note)
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from evidence.durable import fsync_directory
from gateway.errors import BackupError

FORMAT = "medbadge-gateway-backup/1"
MANIFEST_FILE = "MANIFEST.json"
SUMS_FILE = "SHA256SUMS"
CHECKPOINT_FILE = "checkpoint.note"
RESERVED = frozenset({MANIFEST_FILE, SUMS_FILE, CHECKPOINT_FILE})
"""Names of the backup's own files, never those of a copied file."""
MAX_MANIFEST_BYTES = 256 << 20
"""A manifest beyond this is refused unread (a vault of millions of segments fits)."""
_BLOCK = 1 << 20
SYNC_THREADS = 8
"""Fsyncs in flight at once when a copy is made durable."""


@dataclass(frozen=True)
class FileEntry:
    """One copied file: its path inside the data directory, size, SHA-256 and mode."""

    path: str
    size: int
    sha256: str
    mode: int


@dataclass(frozen=True)
class Manifest:
    """What ``MANIFEST.json`` says."""

    hospital: str
    created_at_ns: int
    software: str
    schema_version: int
    custodian_private_key: bool
    ledger_size: int
    checkpoint_size: int
    """Leaves the backup's last checkpoint covers (0: none yet)."""
    files: tuple[FileEntry, ...]

    def to_json(self) -> bytes:
        """The manifest as written: sorted keys, one file per line."""
        document: dict[str, Any] = {
            "format": FORMAT,
            "hospital": self.hospital,
            "created_at_ns": self.created_at_ns,
            "software": self.software,
            "schema_version": self.schema_version,
            "custodian_private_key": self.custodian_private_key,
            "ledger": {"size": self.ledger_size, "checkpoint_size": self.checkpoint_size},
            "files": [
                {"path": f.path, "size": f.size, "sha256": f.sha256, "mode": f"{f.mode:04o}"}
                for f in self.files
            ],
        }
        return json.dumps(document, indent=1, sort_keys=True).encode() + b"\n"

    def sums(self) -> bytes:
        """``SHA256SUMS``: one ``<hex>  <path>`` line per file, as sha256sum writes them."""
        return "".join(f"{f.sha256}  {f.path}\n" for f in self.files).encode()

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        """The manifest of the backup in ``directory``; BackupError says what is wrong."""
        path = directory / MANIFEST_FILE
        try:
            if path.stat().st_size > MAX_MANIFEST_BYTES:
                raise BackupError(f"{path} is larger than {MAX_MANIFEST_BYTES} bytes")
            document = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise BackupError(
                f"{directory} holds no {MANIFEST_FILE}: it is not a backup, or one that did "
                "not finish"
            ) from None
        except (OSError, ValueError) as error:
            raise BackupError(f"{path} cannot be read: {error}") from None
        try:
            return cls._from_document(document)
        except (KeyError, TypeError, ValueError) as error:
            raise BackupError(f"{path} is not a backup manifest: {error!r}") from None

    @classmethod
    def _from_document(cls, document: Any) -> Manifest:
        if document["format"] != FORMAT:
            raise ValueError(f"format {document['format']!r}, this software reads {FORMAT!r}")
        files = tuple(
            FileEntry(
                safe_path(str(item["path"])),
                _natural(item["size"]),
                _hex_digest(item["sha256"]),
                int(item["mode"], 8) & 0o777,
            )
            for item in document["files"]
        )
        if len({entry.path for entry in files}) != len(files):
            raise ValueError("a file is listed twice")
        return cls(
            hospital=str(document["hospital"]),
            created_at_ns=_natural(document["created_at_ns"]),
            software=str(document["software"]),
            schema_version=_natural(document["schema_version"]),
            custodian_private_key=bool(document["custodian_private_key"]),
            ledger_size=_natural(document["ledger"]["size"]),
            checkpoint_size=_natural(document["ledger"]["checkpoint_size"]),
            files=files,
        )


def safe_path(path: str) -> str:
    """``path`` if it is a plain relative path inside a directory; ValueError otherwise."""
    pure = PurePosixPath(path)
    if (
        not path
        or pure.is_absolute()
        or any(part in ("", ".", "..") for part in path.split("/"))
        or "\\" in path
        or "\x00" in path
        or path in RESERVED
    ):
        raise ValueError(f"file path {path!r} is not a plain path inside the data directory")
    return path


def _natural(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r} is not a whole number")
    return value


def _hex_digest(value: Any) -> str:
    text = str(value)
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError(f"{text!r} is not a SHA-256 in lowercase hex")
    return text


def copy_hashed(source: BinaryIO, target: Path, mode: int) -> tuple[int, str]:
    """Write ``source`` to the new file ``target`` (``mode``); return its size and SHA-256
    in hex. Not fsynced: ``sync_tree`` makes a whole copy durable at once, which lets the
    kernel write every file back while the next is being read."""
    digest = hashlib.sha256()
    size = 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    descriptor = os.open(target, flags, 0o600)
    try:
        while block := source.read(_BLOCK):
            digest.update(block)
            size += len(block)
            view = memoryview(block)
            while view:
                view = view[os.write(descriptor, view) :]
        os.fchmod(descriptor, mode)
    finally:
        os.close(descriptor)
    return size, digest.hexdigest()


def sync_tree(root: Path) -> None:
    """Fsync every file under ``root``, then every directory: the copy is durable.

    The fsyncs run ``SYNC_THREADS`` at a time (each lets go of the GIL), so the disk sees a
    queue of them rather than one after another.
    """
    folders: list[Path] = []
    files: list[Path] = []
    for folder, _subfolders, names in os.walk(root):
        folders.append(Path(folder))
        files.extend(Path(folder) / name for name in names)
    with ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="backup-sync") as pool:
        list(pool.map(_fsync_file, files))
        list(pool.map(fsync_directory, reversed(folders)))


def _fsync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def hash_file(path: Path) -> tuple[int, str]:
    """The size and SHA-256 (hex) of the file at ``path``."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as stream:
        while block := stream.read(_BLOCK):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()
