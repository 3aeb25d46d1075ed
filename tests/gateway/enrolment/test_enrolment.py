"""Hospital initialisation and badge enrolment, through the real command line."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from evidence.bundle import EnrolmentBundle
from evidence.keys import BadgeIdentity, CustodianPrivateKey, HpkeSuite
from gateway.broker.config import hash_broker_password
from gateway.cli import main
from gateway.datadir import GatewayDataDir
from gateway.enrolment.registry import EnrolmentView
from gateway.errors import EnrolmentError


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def data_dir(tmp_path: Path) -> GatewayDataDir:
    assert main(["--data", str(tmp_path / "gw"), "init", "--hospital", "City Hospital 4"]) == 0
    return GatewayDataDir(tmp_path / "gw")


def test_init_creates_owner_only_keys_and_ca(data_dir: GatewayDataDir) -> None:
    for secret in (
        data_dir.signing_key_path,
        data_dir.custodian_key_path,
        data_dir.ca_dir / "ca.key",
    ):
        assert mode(secret) == 0o600, secret
    assert mode(data_dir.root) == 0o700
    assert data_dir.evidence_ca().hospital_name == "City Hospital 4"
    CustodianPrivateKey.load(data_dir.custodian_key_path)  # not passphrase-protected


def test_init_refuses_to_overwrite(
    data_dir: GatewayDataDir, capsys: pytest.CaptureFixture[str]
) -> None:
    key_before = data_dir.signing_key_path.read_bytes()
    assert main(["--data", str(data_dir.root), "init", "--hospital", "Other"]) == 1
    assert "already initialised" in capsys.readouterr().err
    assert data_dir.signing_key_path.read_bytes() == key_before


def test_init_with_passphrase_and_hybrid_suite(tmp_path: Path) -> None:
    secret = tmp_path / "passphrase"
    secret.write_text("a long custodian passphrase\n")
    root = tmp_path / "gw"
    args = [
        "--data",
        str(root),
        "init",
        "--hospital",
        "H",
        "--suite",
        "mlkem768-x25519",
        "--custodian-passphrase-file",
        str(secret),
    ]
    assert main(args) == 0
    key = CustodianPrivateKey.load(
        GatewayDataDir(root).custodian_key_path, b"a long custodian passphrase"
    )
    assert key.suite is HpkeSuite.MLKEM768_X25519


def test_enroll_writes_a_bundle_the_badge_can_load(
    data_dir: GatewayDataDir, tmp_path: Path
) -> None:
    bundle_dir = tmp_path / "bundle"
    args = [
        "--data",
        str(data_dir.root),
        "enroll",
        "er-badge-01",
        "-o",
        str(bundle_dir),
        "--wearer",
        "Nurse Aigerim",
        "--location",
        "Emergency",
    ]
    assert main(args) == 0
    assert mode(bundle_dir) == 0o700
    assert mode(bundle_dir / "badge.key") == 0o600
    assert mode(bundle_dir / "badge.json") == 0o600
    bundle = EnrolmentBundle.load(bundle_dir)
    assert bundle.identity.badge_id == "er-badge-01"
    assert bundle.hospital == "City Hospital 4"
    assert bundle.gateway_key.raw == data_dir.signing_key().public_key.raw
    assert bundle.custodian_key.pem() == data_dir.custodian_public_key().pem()
    assert bundle.broker.username == "er-badge-01"
    assert len(bundle.broker.password) >= 32
    assert bundle.broker.password not in repr(bundle.broker)
    registered = data_dir.storage().badges.get("er-badge-01")
    assert registered.public_key.raw == bundle.identity.signing_key.public_key.raw
    assert registered.wearer == "Nurse Aigerim"
    assert bundle.broker.password not in registered.broker_password_hash


def test_re_enrolment_needs_rotate_and_is_recorded(
    data_dir: GatewayDataDir, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--data", str(data_dir.root), "enroll", "b1"]
    assert main([*base, "-o", str(tmp_path / "first")]) == 0
    assert main([*base, "-o", str(tmp_path / "second")]) == 1
    assert "already enrolled; use --rotate" in capsys.readouterr().err
    assert not (tmp_path / "second").exists()
    assert main([*base, "-o", str(tmp_path / "third"), "--rotate", "--operator", "admin-k"]) == 0
    registry = data_dir.storage().badges
    assert [event.kind for event in registry.events("b1")] == ["enrolled", "rotated"]
    assert registry.events("b1")[1].operator == "admin-k"
    history = registry.key_history("b1")
    assert [generation for generation, _ in history] == [1, 2]
    first = EnrolmentBundle.load(tmp_path / "first").identity.signing_key.public_key.raw
    third = EnrolmentBundle.load(tmp_path / "third").identity.signing_key.public_key.raw
    assert [key.raw for _, key in history] == [first, third]
    assert registry.get("b1").public_key.raw == third


@pytest.mark.parametrize("bad_id", ["Badge1", "x_y", "a/b", "a+b", "#", ""])
def test_bad_badge_ids_are_refused_clearly(
    data_dir: GatewayDataDir, bad_id: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["--data", str(data_dir.root), "enroll", bad_id, "-o", str(tmp_path / "b")]) == 1
    assert "is not allowed" in capsys.readouterr().err


@pytest.mark.parametrize("reserved", ["gateway", "gateway-intake", "intake-7"])
def test_ids_of_the_gateways_broker_accounts_are_refused(
    data_dir: GatewayDataDir, reserved: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (data_dir.root / "gateway.toml").write_text('[broker]\nusername = "intake-7"\n')
    args = ["--data", str(data_dir.root), "enroll", reserved, "-o", str(tmp_path / "b")]
    assert main(args) == 1
    assert f"badge id {reserved!r} is reserved for the gateway's own broker accounts" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "b").exists()
    storage = data_dir.storage()
    try:
        assert storage.badges.all() == []
    finally:
        storage.close()


def test_a_badge_enrolled_as_the_gateway_before_is_named_by_broker_config(
    data_dir: GatewayDataDir, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = data_dir.storage()
    try:  # as an older gateway allowed
        key = BadgeIdentity.generate("gateway").signing_key.public_key
        storage.badges.enroll(
            "gateway",
            key,
            hash_broker_password("x"),
            wearer="",
            location="",
            operator="t",
            rotate=False,
        )
    finally:
        storage.close()
    assert main(["--data", str(data_dir.root), "broker-config", "--broker-user", "root"]) == 1
    assert "badge 'gateway' has the gateway's broker login name: revoke it" in (
        capsys.readouterr().err
    )


def test_enroll_before_init_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--data", str(tmp_path / "none"), "enroll", "b1", "-o", str(tmp_path / "b")]) == 1
    assert "run 'gateway init' first" in capsys.readouterr().err


def test_the_intake_view_sees_rotation_and_revocation_made_elsewhere(
    data_dir: GatewayDataDir, tmp_path: Path
) -> None:
    """The view remembers enrolments, yet a change committed on any connection shows at once."""
    base = ["--data", str(data_dir.root), "enroll", "b1"]
    assert main([*base, "-o", str(tmp_path / "first")]) == 0
    view = EnrolmentView(data_dir.storage().badges)
    first = view.get("b1")
    assert view.get("b1") is first  # remembered while nothing changed
    with pytest.raises(EnrolmentError, match="b2 is not enrolled"):
        view.get("b2")
    assert main([*base, "-o", str(tmp_path / "second"), "--rotate"]) == 0
    rotated = view.get("b1")
    assert rotated.key_generation == 2
    assert rotated.public_key.raw == (
        EnrolmentBundle.load(tmp_path / "second").identity.signing_key.public_key.raw
    )
    data_dir.storage().badges.revoke("b1", operator="admin", reason="lost")
    assert view.get("b1").revoked_at_ns is not None
