"""Key files on disk: private keys written 0600 atomically, refused when others can read them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from evidence.durable import write_durably
from evidence.errors import KeyFileError

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644


def _write_key_file(path: Path, data: bytes, mode: int) -> None:
    try:
        write_durably(path, data, mode)
    except OSError as error:
        raise KeyFileError(f"cannot write key file {path}: {error.strerror}") from None


def write_secret_file(path: Path, data: bytes) -> None:
    """Write a private key or credential readable by its owner only (mode 0600)."""
    _write_key_file(path, data, SECRET_MODE)


def write_public_file(path: Path, data: bytes) -> None:
    """Write a public key or certificate (mode 0644)."""
    _write_key_file(path, data, PUBLIC_MODE)


def read_secret_file(path: Path) -> bytes:
    """Read a secret file, refusing one that its group or others can read or write.

    The file is opened first and the open file's mode is checked, so the bytes read are
    those of the file whose mode was checked, even if the path is replaced meanwhile.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        with os.fdopen(descriptor, "rb") as handle:
            mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
            if mode & 0o077:
                raise KeyFileError(
                    f"key file {path} has mode {mode:04o}, so others can read it; "
                    f"run 'chmod 600 {path}' if it has not leaked, else rotate the key"
                )
            return handle.read()
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
