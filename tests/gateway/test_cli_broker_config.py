"""``gateway broker-config`` through the real command line, and a real mosquitto running it."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
from cryptography import x509

from evidence.topics import ALL_BADGES_FILTER, badge_topic
from gateway.broker.config import CONFIG_FILE, SERVER_CERT_FILE
from gateway.broker.dynsec import DYNSEC_FILE, fingerprint
from gateway.cli import main
from gateway.config import GATEWAY_PASSWORD_FILE
from gateway.datadir import GatewayDataDir
from gateway.storage.cutoffs import Cutoff
from tests.enrol import enrol_by_cli
from tests.gateway.generated_broker import (
    GeneratedBroker,
    badge_tls_session,
    current_user,
    tls_session,
    write_config,
)
from tests.mosquitto import HOST, MqttSession

NOT_AUTHORIZED = 0x87


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """An initialised gateway with two badges enrolled through the CLI."""
    root = tmp_path / "gw"
    assert main(["--data", str(root), "init", "--hospital", "City Hospital 4"]) == 0
    for badge in ("er-badge-01", "er-badge-02"):
        bundle = tmp_path / "bundles" / badge
        assert enrol_by_cli(root, badge, bundle) == 0
    return root


def storage_hash(data: Path, badge_id: str) -> str:
    storage = GatewayDataDir(data).storage()
    try:
        return storage.badges.get(badge_id).broker_password_hash
    finally:
        storage.close()


def gateway_password(data: Path) -> str:
    return (data / "keys" / GATEWAY_PASSWORD_FILE).read_text().strip()


def test_enroll_says_no_broker_restart_is_needed(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert enrol_by_cli(data, "icu-badge-01", tmp_path / "b") == 0
    out = capsys.readouterr().out
    assert "no broker restart" in out
    assert "broker-config" not in out


def test_files_accounts_and_the_gateway_password(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    write_config(data, "--hostname", "gateway.hospital.local", "--ip", "10.0.0.5")
    out = capsys.readouterr().out
    broker_dir = data / "broker"
    assert f"mosquitto -c {broker_dir / CONFIG_FILE}" in out
    assert "without one" in out
    password_file = data / "keys" / GATEWAY_PASSWORD_FILE
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    password = gateway_password(data)
    assert len(password) >= 40
    clients = json.loads((broker_dir / DYNSEC_FILE).read_text())["clients"]
    assert [client["username"] for client in clients] == ["er-badge-01", "er-badge-02", "gateway"]
    assert password not in (broker_dir / DYNSEC_FILE).read_text()
    assert clients[-1]["roles"] == [{"rolename": "gateway"}]
    certificate = x509.load_pem_x509_certificate((broker_dir / SERVER_CERT_FILE).read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "gateway.hospital.local"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == [
        "127.0.0.1",
        "10.0.0.5",
    ]
    # a second run keeps the gateway's password and leaves the accounts to the broker
    accounts_before = (broker_dir / DYNSEC_FILE).read_bytes()
    write_config(data)
    assert gateway_password(data) == password
    assert (broker_dir / DYNSEC_FILE).read_bytes() == accounts_before
    assert "kept the broker's accounts" in capsys.readouterr().out
    # --reset-accounts (no broker runs here) writes them again: a fresh salt, same password
    write_config(data, "--reset-accounts")
    again = json.loads((broker_dir / DYNSEC_FILE).read_text())["clients"]
    assert again[-1]["salt"] != clients[-1]["salt"]
    assert "2 badge account(s)" in capsys.readouterr().out


def test_out_directory_and_no_plain_listener_by_default(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "elsewhere"
    args = ["--data", str(data), "broker-config", "--out", str(out)]
    args += ["--broker-user", current_user()]
    assert main(args) == 0
    config = (out / CONFIG_FILE).read_text()
    assert re.findall(r"^listener .*$", config, flags=re.MULTILINE) == ["listener 8883 0.0.0.0"]
    assert not (data / "broker").exists()


def test_broker_config_before_init_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--data", str(tmp_path / "none"), "broker-config"]) == 1
    assert "run 'gateway init' first" in capsys.readouterr().err


def test_generated_config_runs_mosquitto_for_badges_and_the_gateway(
    data: Path, tmp_path: Path
) -> None:
    tls_port, plain_port = write_config(data)
    sessions: list[MqttSession] = []
    with GeneratedBroker(data / "broker", tls_port, plain_port) as broker:
        try:
            gateway = tls_session(broker, "gateway", gateway_password(data), data / "ca" / "ca.crt")
            sessions.append(gateway)
            assert gateway.connack is not None and gateway.connack.value == 0
            assert not gateway.subscribe(ALL_BADGES_FILTER).is_failure
            badge = badge_tls_session(broker, tmp_path / "bundles" / "er-badge-01")
            sessions.append(badge)
            assert badge.connack is not None and badge.connack.value == 0
            badge.publish(badge_topic("er-badge-01", "alert"), b"help")
            assert gateway.wait_for_message(badge_topic("er-badge-01", "alert")).payload == b"help"
            # the ACL from the registry: a badge writes only its own topics
            forged = badge.publish(badge_topic("er-badge-02", "alert"), b"forged")
            assert forged is not None and forged.value == NOT_AUTHORIZED
            wrong = tls_session(broker, "gateway", "not the password", data / "ca" / "ca.crt")
            sessions.append(wrong)
            assert wrong.connack is not None and wrong.connack.is_failure
            plain = MqttSession(HOST, plain_port, "gateway", gateway_password(data))
            sessions.append(plain)
            assert plain.connect().value == 0
        finally:
            for session in sessions:
                session.close()


def test_broker_config_leaves_a_running_brokers_accounts_alone(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tls_port, plain_port = write_config(data)
    broker_dir = data / "broker"
    bundle = tmp_path / "bundles" / "icu-badge-07"
    with GeneratedBroker(broker_dir, tls_port, plain_port) as broker:
        assert enrol_by_cli(data, "icu-badge-07", bundle) == 0
        accounts_before = (broker_dir / DYNSEC_FILE).read_bytes()
        write_config(data, ports=(tls_port, plain_port))
        assert (broker_dir / DYNSEC_FILE).read_bytes() == accounts_before
        # a reset over a running broker is refused, saying why and what to do
        capsys.readouterr()
        args = ["--data", str(data), "broker-config", "--reset-accounts"]
        args += ["--tls-port", str(tls_port), "--plain-port", str(plain_port), "--bind", HOST]
        assert main([*args, "--broker-user", current_user()]) == 1
        err = capsys.readouterr().err
        low, high = sorted((plain_port, tls_port))
        assert f"a broker answers on port {low}, {high}" in err
        assert "systemctl stop mosquitto" in err
        assert (broker_dir / DYNSEC_FILE).read_bytes() == accounts_before
        # stopped, the broker's accounts may be reset from the registry
        broker.stop()
        assert main([*args, "--broker-user", current_user()]) == 0
        assert (broker_dir / DYNSEC_FILE).read_bytes() != accounts_before
        broker.start()
        after = badge_tls_session(broker, bundle)
        after.close()
        assert after.connack is not None and after.connack.value == 0


def test_a_cut_off_badge_is_written_disabled_and_a_revoked_one_not_at_all(data: Path) -> None:
    storage = GatewayDataDir(data).storage()
    try:
        storage.cutoffs.cut_off(Cutoff("er-badge-01", 1, 101, 60 * 10**9, "malformed"))
        storage.badges.revoke("er-badge-02", operator="adam", reason="lost")
    finally:
        storage.close()
    write_config(data)
    clients = json.loads((data / "broker" / DYNSEC_FILE).read_text())["clients"]
    assert [client["textdescription"] for client in clients[:-1]] == [
        fingerprint(storage_hash(data, "er-badge-01"))
    ]
    assert [(client["username"], client["disabled"]) for client in clients] == [
        ("er-badge-01", True),
        ("gateway", False),
    ]
