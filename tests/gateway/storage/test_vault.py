"""The directory vault: content-addressed, durable, idempotent, and refusing wrong bytes."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from evidence.hashing import sha256
from gateway.errors import VaultError
from gateway.storage.vault import DirectoryVault, Vault


@pytest.fixture
def vault(tmp_path: Path) -> DirectoryVault:
    return DirectoryVault(tmp_path / "vault")


def stored_file(vault: DirectoryVault, digest: bytes) -> Path:
    """Where the directory backend keeps ``digest``'s bytes, as its module documents."""
    return vault.root / digest.hex()[:2] / f"{digest.hex()}.mbseal"


def read(vault: Vault, digest: bytes) -> bytes:
    with vault.open(digest) as stream:
        return stream.read()


def test_put_stores_under_its_hash_and_reads_back_as_a_stream(vault: DirectoryVault) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)  # more than one copy block
    digest = sha256(data)
    assert not vault.exists(digest)
    vault.put(io.BytesIO(data), digest)
    stored = stored_file(vault, digest)
    assert stored.read_bytes() == data and vault.exists(digest)
    assert read(vault, digest) == data and vault.size(digest) == len(data)
    assert stat.S_IMODE(stored.stat().st_mode) == 0o440
    assert [path.name for path in stored.parent.iterdir()] == [stored.name]  # no temp left


def test_putting_the_same_bytes_again_changes_nothing(vault: DirectoryVault) -> None:
    data = b"sealed segment bytes"
    digest = sha256(data)
    vault.put(io.BytesIO(data), digest)
    before = stored_file(vault, digest).stat()
    vault.put(io.BytesIO(data), digest)
    after = stored_file(vault, digest).stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def test_bytes_that_do_not_match_their_name_are_refused_and_nothing_is_left(
    vault: DirectoryVault,
) -> None:
    claimed = sha256(b"what the chunks declared")
    with pytest.raises(VaultError, match="nothing was stored"):
        vault.put(io.BytesIO(b"something else"), claimed)
    assert not vault.exists(claimed)
    assert [entry for entry in vault.root.rglob("*") if entry.is_file()] == []


def test_missing_bytes_and_bad_keys_are_vault_errors(vault: DirectoryVault) -> None:
    with pytest.raises(VaultError, match="holds no segment"):
        vault.open(sha256(b"never stored"))
    with pytest.raises(VaultError, match="holds no segment"):
        vault.size(sha256(b"never stored"))
    with pytest.raises(VaultError, match="32-byte"):
        vault.exists(b"short")


def test_unwritable_storage_is_a_vault_error(vault: DirectoryVault) -> None:
    data = b"x"
    digest = sha256(data)
    (vault.root / digest.hex()[:2]).write_bytes(b"a file where a directory belongs")
    with pytest.raises(VaultError, match="cannot store"):
        vault.put(io.BytesIO(data), digest)


def test_delete_removes_the_bytes_and_deleting_nothing_is_no_error(
    vault: DirectoryVault,
) -> None:
    kept, gone = b"kept footage", b"footage past retention"
    vault.put(io.BytesIO(kept), sha256(kept))
    vault.put(io.BytesIO(gone), sha256(gone))
    vault.delete(sha256(gone))
    assert not vault.exists(sha256(gone)) and not stored_file(vault, sha256(gone)).exists()
    assert read(vault, sha256(kept)) == kept
    vault.delete(sha256(gone))  # again: nothing to do
    vault.delete(sha256(b"never stored"))


def test_directory_vault_satisfies_the_vault_seam(vault: DirectoryVault) -> None:
    seam: Vault = vault
    data = b"through the seam"
    seam.put(io.BytesIO(data), sha256(data))
    assert read(seam, sha256(data)) == data


def test_take_file_links_the_finished_file_in_without_copying(
    vault: DirectoryVault, tmp_path: Path
) -> None:
    data = os.urandom(2 * 1024 * 1024 + 5)
    source = tmp_path / "3.part"
    source.write_bytes(data)
    digest = sha256(data)
    vault.take_file(source, digest)
    stored = stored_file(vault, digest)
    assert stored.samefile(source)  # one file, two names
    assert stat.S_IMODE(stored.stat().st_mode) == 0o440
    vault.take_file(source, digest)  # again: nothing changes
    source.unlink()  # the caller lets go of its name; the vault keeps the bytes
    assert read(vault, digest) == data
    assert [path.name for path in stored.parent.iterdir()] == [stored.name]


def test_take_file_failures_are_vault_errors(vault: DirectoryVault, tmp_path: Path) -> None:
    with pytest.raises(VaultError, match="cannot store"):
        vault.take_file(tmp_path / "missing.part", sha256(b"y"))
    source = tmp_path / "1.part"
    source.write_bytes(b"x")
    digest = sha256(b"x")
    (vault.root / digest.hex()[:2]).write_bytes(b"a file where a directory belongs")
    with pytest.raises(VaultError, match="cannot store"):
        vault.take_file(source, digest)
    assert not vault.exists(digest)
