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


def test_put_file_stores_under_its_hash_and_get_finds_it(
    vault: DirectoryVault, tmp_path: Path
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)  # more than one copy block
    source = tmp_path / "segment.part"
    source.write_bytes(data)
    digest = sha256(data)
    assert not vault.has(digest)
    vault.put_file(source, digest)
    stored = vault.get(digest)
    assert stored == vault.root / digest.hex()[:2] / f"{digest.hex()}.mbseal"
    assert stored.read_bytes() == data and vault.has(digest)
    assert stat.S_IMODE(stored.stat().st_mode) == 0o440
    assert source.read_bytes() == data  # the source is copied, not taken
    assert [path.name for path in stored.parent.iterdir()] == [stored.name]  # no temp left


def test_putting_the_same_bytes_again_changes_nothing(vault: DirectoryVault) -> None:
    data = b"sealed segment bytes"
    digest = sha256(data)
    vault.put_stream(io.BytesIO(data), digest)
    before = vault.get(digest).stat()
    vault.put_stream(io.BytesIO(data), digest)
    after = vault.get(digest).stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def test_bytes_that_do_not_match_their_name_are_refused_and_nothing_is_left(
    vault: DirectoryVault,
) -> None:
    claimed = sha256(b"what the chunks declared")
    with pytest.raises(VaultError, match="nothing was stored"):
        vault.put_stream(io.BytesIO(b"something else"), claimed)
    assert not vault.has(claimed)
    assert list(vault.root.rglob("*.mbseal")) == []
    assert [entry for entry in vault.root.rglob("*") if entry.is_file()] == []


def test_missing_bytes_and_bad_keys_are_vault_errors(vault: DirectoryVault) -> None:
    with pytest.raises(VaultError, match="holds no segment"):
        vault.get(sha256(b"never stored"))
    with pytest.raises(VaultError, match="32-byte"):
        vault.has(b"short")


def test_unwritable_storage_is_a_vault_error(vault: DirectoryVault, tmp_path: Path) -> None:
    data = b"x"
    digest = sha256(data)
    (vault.root / digest.hex()[:2]).write_bytes(b"a file where a directory belongs")
    with pytest.raises(VaultError, match="cannot store"):
        vault.put_stream(io.BytesIO(data), digest)
    with pytest.raises(VaultError, match="cannot read"):
        vault.put_file(tmp_path / "missing.part", sha256(b"y"))


def test_directory_vault_satisfies_the_vault_seam(vault: DirectoryVault) -> None:
    seam: Vault = vault
    data = b"through the seam"
    seam.put_stream(io.BytesIO(data), sha256(data))
    assert seam.get(sha256(data)).read_bytes() == data


def test_take_file_links_the_finished_file_in_without_copying(
    vault: DirectoryVault, tmp_path: Path
) -> None:
    data = os.urandom(2 * 1024 * 1024 + 5)
    source = tmp_path / "3.part"
    source.write_bytes(data)
    digest = sha256(data)
    vault.take_file(source, digest)
    stored = vault.get(digest)
    assert stored == vault.path_for(digest) and stored.samefile(source)  # one file, two names
    assert stat.S_IMODE(stored.stat().st_mode) == 0o440
    vault.take_file(source, digest)  # again: nothing changes
    source.unlink()  # the caller lets go of its name; the vault keeps the bytes
    assert vault.get(digest).read_bytes() == data
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
    assert not vault.has(digest)
