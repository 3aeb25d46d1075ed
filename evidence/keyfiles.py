"""Key files on disk: private keys written 0600 atomically, refused when others can read them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from evidence.errors import KeyFileError

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644


def write_file_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` via a temp file created with ``mode``, fsync and rename.

    The temp file is created with its final mode, so a secret is never readable by others,
    not even for an instant.
    """
    temp = path.with_name(f".{path.name}.tmp")
    try:
        temp.unlink(missing_ok=True)
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp, mode)  # the umask may have narrowed it; make it exact
        os.replace(temp, path)
    except OSError as error:
        raise KeyFileError(f"cannot write key file {path}: {error.strerror}") from None


def write_secret_file(path: Path, data: bytes) -> None:
    """Write a private key or credential readable by its owner only (mode 0600)."""
    write_file_atomically(path, data, SECRET_MODE)


def write_public_file(path: Path, data: bytes) -> None:
    """Write a public key or certificate (mode 0644)."""
    write_file_atomically(path, data, PUBLIC_MODE)


def read_secret_file(path: Path) -> bytes:
    """Read a secret file, refusing one that its group or others can read or write."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise KeyFileError(
                f"key file {path} has mode {mode:04o}, so others can read it; "
                f"run 'chmod 600 {path}' if it has not leaked, else rotate the key"
            )
        return path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist") from None
    except OSError as error:
        raise KeyFileError(f"cannot read key file {path}: {error.strerror}") from None


def read_public_file(path: Path) -> bytes:
    """Read a public key or certificate file."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist") from None
    except OSError as error:
        raise KeyFileError(f"cannot read key file {path}: {error.strerror}") from None
