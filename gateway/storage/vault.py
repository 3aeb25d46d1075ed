"""The vault: sealed segment bytes stored by their SHA-256, written durably, never rewritten.

``Vault`` is the seam every caller uses, and all it knows: a segment is named by its SHA-256
and read as a stream; nothing outside the vault knows where or how it is kept. The
directory below is the one-box backend; ``gateway.storage.s3_vault`` keeps the same
segments in an S3-compatible store with Object Lock (DESIGN decision 9, decision 2301).

In the directory a stored segment lives at ``<root>/<hex[:2]>/<hex>.mbseal``. A put copies
from a stream in 1 MiB blocks (a segment is never held whole in memory here), hashing as it
goes, into a temporary file beside the target; it is fsynced, renamed into place and the
directory fsynced, so after ``put`` returns the bytes survive a power cut. ``take_file``
stores a file the caller has finished writing and hashed without copying it: fsynced, made
read-only and hard-linked into place (the intake's partial files are on the same disk,
decision 1501), then the directory fsynced. Storing bytes that are already there does
nothing: the name is the content.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Protocol

from evidence.durable import fsync_directory
from evidence.hashing import DIGEST_SIZE
from gateway.errors import VaultError

SUFFIX = ".mbseal"
_BLOCK = 1 << 20
_FILE_MODE = 0o440
"""Stored evidence is read-only, even for the gateway's own account."""


def vault_name(sha256: bytes) -> str:
    """The hex name a segment is stored under; VaultError unless ``sha256`` is a digest."""
    if not isinstance(sha256, bytes) or len(sha256) != DIGEST_SIZE:
        raise VaultError(f"vault keys are {DIGEST_SIZE}-byte SHA-256 digests, got {sha256!r}")
    return sha256.hex()


class Vault(Protocol):
    """Content-addressed storage of sealed segments."""

    def exists(self, sha256: bytes) -> bool:
        """True when bytes with this SHA-256 are stored."""
        ...

    def size(self, sha256: bytes) -> int:
        """How many bytes are stored under this SHA-256; VaultError if none are."""
        ...

    def open(self, sha256: bytes) -> BinaryIO:
        """The stored bytes as a stream to read (and close); VaultError if none are stored."""
        ...

    def put(self, stream: BinaryIO, sha256: bytes) -> None:
        """Store everything ``stream`` yields, refusing it unless its SHA-256 is ``sha256``."""
        ...

    def take_file(self, source: Path, sha256: bytes) -> None:
        """Store a finished local file whose SHA-256 the caller computed, without copying
        if the backend can (else as ``put`` of its bytes).

        Nobody may write to ``source`` afterwards (it may now be the stored file itself).
        """
        ...

    def delete(self, sha256: bytes) -> None:
        """Remove the bytes stored under this SHA-256 (none stored: nothing to do);
        VaultError if they cannot be removed."""
        ...

    def hold(self, sha256: bytes, held: bool) -> None:
        """Place (``held``) or release the store's own legal hold on the segment, where the
        store has one; the database's hold is what retention obeys either way."""
        ...


class DirectoryVault:
    """The vault as a directory tree on the gateway's own disk."""

    def __init__(self, root: Path) -> None:
        """Use (creating if needed, mode 0700) the directory ``root``."""
        self.root = Path(root)
        self._durable_subdirectories: set[str] = set()
        """Subdirectories whose entry in the root this object has fsynced (one fsync each)."""
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as error:
            raise VaultError(f"cannot create vault directory {self.root}: {error}") from None

    def _path(self, sha256: bytes) -> Path:
        """Where bytes with this SHA-256 are (or would be) stored."""
        name = vault_name(sha256)
        return self.root / name[:2] / f"{name}{SUFFIX}"

    def exists(self, sha256: bytes) -> bool:
        """True when bytes with this SHA-256 are stored."""
        return self._path(sha256).is_file()

    def size(self, sha256: bytes) -> int:
        """How many bytes are stored under this SHA-256; VaultError if none are."""
        try:
            return self._path(sha256).stat().st_size
        except FileNotFoundError:
            raise self._missing(sha256) from None
        except OSError as error:
            raise VaultError(
                f"cannot read segment {sha256.hex()} in {self.root}: {error}"
            ) from None

    def open(self, sha256: bytes) -> BinaryIO:
        """The stored bytes as a stream to read (and close); VaultError if none are stored."""
        try:
            return self._path(sha256).open("rb")
        except FileNotFoundError:
            raise self._missing(sha256) from None
        except OSError as error:
            raise VaultError(
                f"cannot read segment {sha256.hex()} in {self.root}: {error}"
            ) from None

    def delete(self, sha256: bytes) -> None:
        """Remove the file of this SHA-256, then make its removal durable; VaultError if it
        cannot be removed."""
        path = self._path(sha256)
        try:
            path.unlink(missing_ok=True)
            if path.parent.is_dir():
                fsync_directory(path.parent)
        except OSError as error:
            raise VaultError(
                f"segment {sha256.hex()} could not be removed from {self.root}: {error}"
            ) from None

    def hold(self, sha256: bytes, held: bool) -> None:
        """Nothing: a directory has no hold of its own (the database's is obeyed)."""

    def _missing(self, sha256: bytes) -> VaultError:
        return VaultError(f"vault {self.root} holds no segment with SHA-256 {sha256.hex()}")

    def take_file(self, source: Path, sha256: bytes) -> None:
        """Store ``source`` as the bytes of ``sha256`` by a hard link, after fsyncing it.

        ``sha256`` is the caller's word: it hashed the bytes as it wrote them. The file
        becomes read-only and must not be written again; the caller may unlink ``source``.
        On a filesystem without hard links to the vault it is copied (and hashed) instead.
        """
        target = self._path(sha256)
        try:
            if not target.is_file():
                self._link(source, sha256)
            # also when it was there: its name may not be durable yet if a put died midway
            fsync_directory(target.parent)
            if target.parent.name not in self._durable_subdirectories:
                fsync_directory(self.root)  # the subdirectory may be new, or not yet durable
                self._durable_subdirectories.add(target.parent.name)
        except OSError as error:
            raise VaultError(
                f"cannot store {source} in {self.root} as segment {sha256.hex()}: {error}"
            ) from None

    def _link(self, source: Path, sha256: bytes) -> None:
        """Fsync ``source``, make it read-only and give it its name in the vault.

        Once on disk its pages leave the page cache: footage is written once and read
        rarely, and on a virtual machine writing into ever-new cache pages (each first
        touched by the host) cost the intake ten times what reusing freed ones does.
        """
        target = self._path(sha256)
        descriptor = os.open(source, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            os.fchmod(descriptor, _FILE_MODE)
            os.fsync(descriptor)
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)  # clean now: dropped
        finally:
            os.close(descriptor)
        target.parent.mkdir(mode=0o700, exist_ok=True)
        try:
            os.link(source, target, follow_symlinks=False)
        except FileExistsError:
            pass  # a concurrent put of the same bytes won: either copy is the content
        except OSError as error:
            if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
            # no hard link to the vault from there: copy, and hash while copying
            with source.open("rb") as stream:
                self.put(stream, sha256)

    def put(self, stream: BinaryIO, sha256: bytes) -> None:
        """Copy ``stream`` into the vault; store nothing unless it hashes to ``sha256``."""
        target = self._path(sha256)
        if target.is_file():
            return
        try:
            target.parent.mkdir(mode=0o700, exist_ok=True)
            temporary = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
            try:
                digest = self._copy(stream, temporary)
                if digest != sha256:
                    raise VaultError(
                        f"bytes offered to the vault as {sha256.hex()} hash to {digest.hex()}; "
                        "nothing was stored"
                    )
                # a concurrent put of the same bytes may have won: either copy is the content
                os.replace(temporary, target)
            finally:
                temporary.unlink(missing_ok=True)
            fsync_directory(target.parent)
            fsync_directory(self.root)
        except OSError as error:
            raise VaultError(
                f"cannot store segment {sha256.hex()} in {self.root}: {error}"
            ) from None

    @staticmethod
    def _copy(stream: BinaryIO, temporary: Path) -> bytes:
        """Write ``stream`` to a new file, fsync it, and return its SHA-256."""
        digest = hashlib.sha256()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
        descriptor = os.open(temporary, flags, _FILE_MODE)
        try:
            while block := stream.read(_BLOCK):
                digest.update(block)
                view = memoryview(block)
                while view:
                    view = view[os.write(descriptor, view) :]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        return digest.digest()
