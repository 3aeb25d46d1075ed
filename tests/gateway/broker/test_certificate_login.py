"""Broker access by certificate: a real mosquitto from ``broker-config --badge-auth
certificate``; badges and the gateway log in with the evidence CA's certificates alone."""

from __future__ import annotations

import ssl
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from evidence.topics import ALL_BADGES_FILTER, badge_topic
from gateway.broker.certificates import gateway_certificate_files
from gateway.broker.config import CONFIG_FILE
from gateway.cli import main
from gateway.config import GatewayConfig
from gateway.daemon import GatewayDaemon
from gateway.datadir import GatewayDataDir
from gateway.intake.service import IntakeService
from tests.enrol import enrol_by_cli
from tests.gateway.generated_broker import GeneratedBroker, write_config
from tests.mosquitto import TLS_HOSTNAME, MqttSession

NOT_AUTHORIZED = 0x87


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """An initialised gateway with two badges enrolled (each with its CSR)."""
    root = tmp_path / "gw"
    assert main(["--data", str(root), "init", "--hospital", "City Hospital 4"]) == 0
    for badge in ("er-badge-01", "er-badge-02"):
        assert enrol_by_cli(root, badge, tmp_path / "bundles" / badge) == 0
    return root


def badge_session(
    broker: GeneratedBroker, bundle: Path, username: str | None = None
) -> MqttSession:
    """The badge's session with its certificate and no password at all."""
    session = MqttSession(
        TLS_HOSTNAME,
        broker.tls_port,
        username,
        None,
        tls_ca=bundle / "evidence-ca.crt",
        tls_client=(bundle / "tls.crt", bundle / "tls.key"),
    )
    session.connect()
    return session


def never_connected(session: MqttSession) -> bool:
    """Whether the broker refused ``session``: a failed handshake, a connection dropped
    before CONNACK (TLS 1.3 checks the client's certificate after the client's side is
    done), or a refusing CONNACK."""
    try:
        code = session.connect(timeout=5)
    except (ssl.SSLError, OSError, AssertionError):
        return True
    finally:
        session.close()
    return code.is_failure


def test_certificates_alone_log_badges_and_the_gateway_in(data: Path, tmp_path: Path) -> None:
    tls_port, plain_port = write_config(data, "--badge-auth", "certificate")
    broker_dir = data / "broker"
    config = (broker_dir / CONFIG_FILE).read_text()
    assert "require_certificate true" in config and "use_identity_as_username true" in config
    own = gateway_certificate_files(GatewayDataDir(data))
    assert own is not None
    sessions: list[MqttSession] = []
    with GeneratedBroker(broker_dir, tls_port, plain_port) as broker:
        try:
            gateway = MqttSession(
                TLS_HOSTNAME, tls_port, None, None, tls_ca=data / "ca" / "ca.crt", tls_client=own
            )
            sessions.append(gateway)
            assert gateway.connect().value == 0
            assert not gateway.subscribe(ALL_BADGES_FILTER).is_failure
            badge = badge_session(broker, tmp_path / "bundles" / "er-badge-01")
            sessions.append(badge)
            assert badge.connack is not None and badge.connack.value == 0
            badge.publish(badge_topic("er-badge-01", "alert"), b"help")
            assert gateway.wait_for_message(badge_topic("er-badge-01", "alert")).payload == b"help"
            # the certificate is the name: claiming another badge's name changes nothing
            posing = badge_session(broker, tmp_path / "bundles" / "er-badge-01", "er-badge-02")
            sessions.append(posing)
            forged = posing.publish(badge_topic("er-badge-02", "alert"), b"forged")
            assert forged is not None and forged.value == NOT_AUTHORIZED
            # no certificate, no connection (the TLS handshake itself fails)
            bare = MqttSession(
                TLS_HOSTNAME, tls_port, "er-badge-01", "guess", tls_ca=data / "ca" / "ca.crt"
            )
            assert never_connected(bare)
        finally:
            for session in sessions:
                session.close()


def test_a_revoked_badge_may_do_nothing_once_the_broker_has_its_new_accounts(
    data: Path, tmp_path: Path
) -> None:
    tls_port, plain_port = write_config(data, "--badge-auth", "certificate")
    bundle = tmp_path / "bundles" / "er-badge-02"
    with GeneratedBroker(data / "broker", tls_port, plain_port) as broker:
        before = badge_session(broker, bundle)
        allowed = before.publish(badge_topic("er-badge-02", "heartbeat"), b"beat")
        before.close()
        assert allowed is not None and not allowed.is_failure  # (no subscriber yet: 0x10)
        storage = GatewayDataDir(data).storage()
        try:
            storage.badges.revoke("er-badge-02", operator="admin", reason="lost")
        finally:
            storage.close()
        broker.stop()
        write_config(data, "--badge-auth", "certificate", ports=(tls_port, plain_port))
        broker.start()
        after = badge_session(broker, bundle)
        if after.connack is not None and not after.connack.is_failure:
            answer = after.publish(badge_topic("er-badge-02", "heartbeat"), b"beat")
            assert answer is not None and answer.value == NOT_AUTHORIZED
        after.close()


def test_the_gateway_intake_logs_in_by_its_certificate_and_a_foreign_one_is_refused(
    data: Path, tmp_path: Path
) -> None:
    tls_port, plain_port = write_config(data, "--badge-auth", "certificate")
    data_dir = GatewayDataDir(data)
    with GeneratedBroker(data / "broker", tls_port, plain_port) as broker:
        # the password is wrong on purpose: the certificate alone is what counts
        service = IntakeService(data_dir, TLS_HOSTNAME, tls_port, "gateway", "x", broker.ca_file)
        service.start()
        try:
            assert service.wait_connected(15.0)
        finally:
            service.stop()
        # a certificate for the right name from a CA the broker does not trust
        foreign = tmp_path / "foreign"
        foreign.mkdir()
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "er-badge-01")])
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256())
        )
        (foreign / "tls.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        (foreign / "tls.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        impostor = MqttSession(
            TLS_HOSTNAME,
            tls_port,
            None,
            None,
            tls_ca=broker.ca_file,
            tls_client=(foreign / "tls.crt", foreign / "tls.key"),
        )
        assert never_connected(impostor)


def test_a_revoked_badge_is_off_the_broker_at_once_with_certificates_too(
    data: Path, tmp_path: Path
) -> None:
    """The running gateway's revocation (dynamic security) reaches a certificate login."""
    tls_port, plain_port = write_config(data, "--badge-auth", "certificate")
    (data / "gateway.toml").write_text(
        f"[broker]\nport = {plain_port}\ntls = false\n[console]\nenabled = false\n"
    )
    bundle = tmp_path / "bundles" / "er-badge-01"
    with GeneratedBroker(data / "broker", tls_port, plain_port) as broker:
        daemon = GatewayDaemon(GatewayDataDir(data), GatewayConfig.load(data))
        daemon.start()
        try:
            deadline = time.monotonic() + 20
            while not daemon.connected:
                assert time.monotonic() < deadline, "the gateway did not connect"
                time.sleep(0.02)
            badge = badge_session(broker, bundle)
            assert badge.connack is not None and badge.connack.value == 0
            revoke = ["--data", str(data), "revoke", "er-badge-01", "--reason", "stolen"]
            assert main(revoke) == 0
            revoked_at = time.monotonic()
            badge.wait_disconnected(1.0)
            assert time.monotonic() - revoked_at < 1.0
            badge.close()
            # its certificate is still valid, so the handshake may succeed; but the account
            # it names is gone, and with it every grant
            again = badge_session(broker, bundle)
            try:
                if again.connack is not None and not again.connack.is_failure:
                    answer = again.publish(badge_topic("er-badge-01", "alert"), b"x")
                    assert answer is not None and answer.value == NOT_AUTHORIZED
            finally:
                again.close()
        finally:
            daemon.stop()
