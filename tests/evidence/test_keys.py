"""Key files: modes, passphrases, kinds, and clear errors."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from evidence.errors import KeyFileError, PassphraseError
from evidence.keyfiles import read_secret_file, write_secret_file
from evidence.keys import CustodianPrivateKey, CustodianPublicKey, HpkeSuite, SigningKey

INFO = b"test info"


def test_signing_key_file_is_owner_only_and_round_trips(tmp_path: Path) -> None:
    key = SigningKey.generate()
    path = tmp_path / "badge.key"
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = SigningKey.load(path)
    signature = loaded.sign("ctx", b"payload")
    key.public_key.verify(signature, "ctx", b"payload", "test")


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "badge.key"
    SigningKey.generate().save(path)
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        SigningKey.load(path)


def test_the_mode_checked_is_the_mode_of_the_file_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file swapped in after the check must not be what is read (no check-then-read race)."""
    path = tmp_path / "secret"
    write_secret_file(path, b"the real secret")
    planted = tmp_path / "planted"
    planted.write_bytes(b"what someone else put there")
    planted.chmod(0o644)
    checked = os.fstat

    def swap_after_the_open(descriptor: int) -> os.stat_result:
        os.replace(planted, path)  # the path now names another, world-readable file
        return checked(descriptor)

    monkeypatch.setattr(os, "fstat", swap_after_the_open)
    assert read_secret_file(path) == b"the real secret"
    monkeypatch.undo()
    with pytest.raises(KeyFileError, match="has mode 0644"):
        read_secret_file(path)


@pytest.mark.parametrize("suite", list(HpkeSuite))
def test_custodian_key_with_passphrase(tmp_path: Path, suite: HpkeSuite) -> None:
    key = CustodianPrivateKey.generate(suite)
    path = tmp_path / "custodian.key"
    key.save(path, passphrase=b"correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
    with pytest.raises(PassphraseError, match="passphrase-protected"):
        CustodianPrivateKey.load(path)
    with pytest.raises(PassphraseError, match="does not unlock"):
        CustodianPrivateKey.load(path, passphrase=b"wrong")
    loaded = CustodianPrivateKey.load(path, passphrase=b"correct horse")
    assert loaded.suite is suite
    public_path = tmp_path / "custodian.pub"
    key.public_key.save(public_path)
    public = CustodianPublicKey.load(public_path)
    assert public.suite is suite
    sealed = public.encrypt(b"footage", INFO)
    assert loaded.decrypt(sealed, INFO, "test") == b"footage"


def test_wrong_kind_of_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "custodian.key"
    SigningKey.generate().save(path)
    with pytest.raises(KeyFileError, match="X25519"):
        CustodianPrivateKey.load(path)
    custodian_path = tmp_path / "c.key"
    CustodianPrivateKey.generate().save(custodian_path)
    with pytest.raises(KeyFileError, match="Ed25519"):
        SigningKey.load(custodian_path)


@pytest.mark.parametrize(
    "content", [b"", b"not a key", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"]
)
def test_malformed_key_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.pub"
    path.write_bytes(content)
    with pytest.raises(KeyFileError):
        CustodianPublicKey.load(path)


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        SigningKey.load(tmp_path / "absent.key")
