"""Badges' broker passwords are derived from the data directory's secret and their key."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gateway.broker.config import hash_broker_password, new_broker_password
from gateway.broker.passwords import SECRET_FILE, BadgePasswords
from gateway.errors import BrokerConfigError
from tests.gateway.badge_messages import make_hospital


def test_the_enrolled_password_is_the_derived_one_and_a_rotation_changes_it(
    tmp_path: Path,
) -> None:
    hospital = make_hospital(tmp_path, ("badge-a",))
    secret = hospital.data_dir.keys / SECRET_FILE
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    passwords = BadgePasswords.of(hospital.data_dir)
    storage = hospital.data_dir.storage()
    try:
        badge = storage.badges.get("badge-a")
    finally:
        storage.close()
    key = badge.public_key.raw
    assert hospital.bundles["badge-a"].broker.password == passwords.password("badge-a", key)
    assert passwords.matches("badge-a", key, badge.broker_password_hash)
    # another key or another id gives another password, which the hash does not match
    other_key = bytes(32)
    assert passwords.password("badge-a", other_key) != passwords.password("badge-a", key)
    assert passwords.password("badge-b", key) != passwords.password("badge-a", key)
    assert not passwords.matches("badge-a", other_key, badge.broker_password_hash)
    # a password made at random before passwords were derived is not claimed
    assert not passwords.matches("badge-a", key, hash_broker_password(new_broker_password()))
    assert not passwords.matches("badge-a", key, "not a hash")
    # the same secret on the next open: the running gateway derives what enrolment did
    assert BadgePasswords.of(hospital.data_dir).password("badge-a", key) == (
        passwords.password("badge-a", key)
    )


def test_another_data_directory_derives_other_passwords(tmp_path: Path) -> None:
    first = BadgePasswords.of(make_hospital(tmp_path / "one", ()).data_dir)
    second = BadgePasswords.of(make_hospital(tmp_path / "two", ()).data_dir)
    assert first.password("badge-a", bytes(32)) != second.password("badge-a", bytes(32))


def test_a_secret_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(BrokerConfigError, match="must be 32 bytes, not 5"):
        BadgePasswords(b"short")
