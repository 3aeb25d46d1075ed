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
from gateway.broker.dynsec import DYNSEC_FILE
from gateway.cli import main
from gateway.config import GATEWAY_PASSWORD_FILE
from gateway.datadir import GatewayDataDir
from gateway.storage.cutoffs import Cutoff
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
        assert main(["--data", str(root), "enroll", badge, "-o", str(bundle)]) == 0
    return root


def gateway_password(data: Path) -> str:
    return (data / "keys" / GATEWAY_PASSWORD_FILE).read_text().strip()


def test_enroll_reminds_to_regenerate_the_broker_config(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["--data", str(data), "enroll", "icu-badge-01", "-o", str(tmp_path / "b")]) == 0
    assert "gateway broker-config" in capsys.readouterr().out


def test_files_accounts_and_the_gateway_password(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    write_config(data, "--hostname", "gateway.hospital.local", "--ip", "10.0.0.5")
    out = capsys.readouterr().out
    broker_dir = data / "broker"
    assert f"mosquitto -c {broker_dir / CONFIG_FILE}" in out
    assert "systemctl restart mosquitto" in out
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
    # a second run keeps the gateway's password (its hash is fresh: a new salt)
    salt_before = clients[-1]["salt"]
    write_config(data)
    assert gateway_password(data) == password
    again = json.loads((broker_dir / DYNSEC_FILE).read_text())["clients"]
    assert again[-1]["salt"] != salt_before


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


def test_a_new_badge_logs_in_after_regenerating_and_a_restart(data: Path, tmp_path: Path) -> None:
    tls_port, plain_port = write_config(data)
    bundle = tmp_path / "bundles" / "icu-badge-07"
    with GeneratedBroker(data / "broker", tls_port, plain_port) as broker:
        assert main(["--data", str(data), "enroll", "icu-badge-07", "-o", str(bundle)]) == 0
        before = badge_tls_session(broker, bundle)
        before.close()
        assert before.connack is not None and before.connack.is_failure
        write_config(data, ports=(tls_port, plain_port))
        broker.stop()  # the dynamic security plugin reads its accounts only at start
        broker.start()
        after = badge_tls_session(broker, bundle)
        after.close()
        assert after.connack is not None and after.connack.value == 0
        old = badge_tls_session(broker, tmp_path / "bundles" / "er-badge-01")
        old.close()
        assert old.connack is not None and old.connack.value == 0


def test_a_cut_off_badge_is_written_disabled_and_a_revoked_one_not_at_all(data: Path) -> None:
    storage = GatewayDataDir(data).storage()
    try:
        storage.cutoffs.cut_off(Cutoff("er-badge-01", 1, 101, 60 * 10**9, "malformed"))
        storage.badges.revoke("er-badge-02", operator="adam", reason="lost")
    finally:
        storage.close()
    write_config(data)
    clients = json.loads((data / "broker" / DYNSEC_FILE).read_text())["clients"]
    assert [(client["username"], client["disabled"]) for client in clients] == [
        ("er-badge-01", True),
        ("gateway", False),
    ]
