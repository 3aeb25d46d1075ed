"""Tests for gateway.broker_config: generated files, and the real mosquitto enforcing them."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import ssl
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from evidence.topics import (
    ALL_BADGES_FILTER,
    badge_topic,
    gateway_filter,
    gateway_topic,
    shared_subscription,
)
from gateway.broker.config import (
    CONFIG_FILE,
    SERVER_KEY_FILE,
    BrokerAccount,
    BrokerSettings,
    hash_broker_password,
    new_broker_password,
    write_broker_config,
)
from gateway.broker.dynsec import DYNSEC_FILE, find_plugin
from gateway.errors import BrokerConfigError, GatewayError
from gateway.pki.ca import EvidenceCA
from tests.mosquitto import (
    HOST,
    TLS_HOSTNAME,
    BrokerLogin,
    MosquittoProcess,
    MqttSession,
    running_broker,
)

NOT_AUTHORIZED = 0x87
PACKET_TOO_LARGE = 0x95
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - only written into a config under test
HASH = re.compile(r"\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==")


@pytest.fixture(scope="module")
def ca() -> EvidenceCA:
    return EvidenceCA.create("Test Hospital")


def _accounts() -> list[BrokerAccount]:
    return [
        BrokerAccount("gateway", hash_broker_password("g"), "gateway"),
        BrokerAccount("badge-a", hash_broker_password("a"), "badge"),
    ]


def _write(tmp_path: Path, ca: EvidenceCA, **settings: object) -> Path:
    options: dict[str, object] = {"tls_port": 18883, "run_as_user": "root", **settings}
    return write_broker_config(
        tmp_path / "broker",
        _accounts(),
        BrokerSettings(**options),  # type: ignore[arg-type]
        ca,
        server_hostnames=["localhost"],
        server_ips=["127.0.0.1"],
    )


def _listeners(config: str) -> list[tuple[int, str]]:
    return [
        (int(port), bind)
        for port, bind in re.findall(r"^listener (\d+) (\S+)$", config, flags=re.MULTILINE)
    ]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def sessions() -> Iterator[list[MqttSession]]:
    """Collects sessions a test opens and closes them all at the end."""
    opened: list[MqttSession] = []
    yield opened
    for session in opened:
        session.close()


def _session(
    broker: MosquittoProcess, opened: list[MqttSession], username: str | None, **options: object
) -> MqttSession:
    session = broker.session(username, **options)
    opened.append(session)
    return session


# --- password hashing -----------------------------------------------------------------------


def test_hash_format_is_mosquittos() -> None:
    assert HASH.fullmatch(hash_broker_password("secret"))
    assert hash_broker_password("secret") != hash_broker_password("secret")  # fresh salt


def test_hash_equals_mosquitto_passwd_output_for_the_same_salt(tmp_path: Path) -> None:
    import base64

    password_file = tmp_path / "pw"
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(password_file), "nurse", "pä55:word"],
        check=True,
        timeout=30,
        capture_output=True,
    )
    line = password_file.read_text().strip()
    username, theirs = line.split(":", 1)
    salt = base64.b64decode(theirs.split("$")[3])
    assert username == "nurse"
    assert hash_broker_password("pä55:word", salt=salt) == theirs


@pytest.mark.parametrize("password", ["", "nul\x00inside"])
def test_hash_refuses_passwords_mosquitto_cannot_check(password: str) -> None:
    with pytest.raises(BrokerConfigError):
        hash_broker_password(password)


def test_hash_refuses_wrong_salt_length() -> None:
    with pytest.raises(BrokerConfigError, match="12 bytes"):
        hash_broker_password("x", salt=b"short")


def test_new_passwords_are_long_random_and_url_safe() -> None:
    passwords = {new_broker_password() for _ in range(20)}
    assert len(passwords) == 20
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", password) for password in passwords)


# --- accounts and settings ------------------------------------------------------------------


@pytest.mark.parametrize("username", ["", "Gateway", "a b", "x:y", "badge\nuser a", "+", "a/b"])
def test_account_refuses_unsafe_usernames(username: str) -> None:
    with pytest.raises(BrokerConfigError):
        BrokerAccount(username, hash_broker_password("x"), "badge")


@pytest.mark.parametrize(
    "password_hash",
    ["plain", "$6$abc$def", hash_broker_password("x") + "\nintruder:$7$1$a$b", ""],
)
def test_account_refuses_hashes_not_in_mosquitto_format(password_hash: str) -> None:
    with pytest.raises(BrokerConfigError, match=r"\$7\$"):
        BrokerAccount("badge-a", password_hash, "badge")


def test_account_refuses_unknown_role() -> None:
    with pytest.raises(BrokerConfigError, match="role"):
        BrokerAccount("badge-a", hash_broker_password("x"), "admin")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "settings",
    [
        {"tls_port": 0},
        {"tls_port": 70000},
        {"tls_port": 8883, "plain_port": 8883},
        {"tls_port": 8883, "bind_tls": "0.0.0.0\nlistener 1 0.0.0.0"},
        {"tls_port": 8883, "bind_tls": "broker.local"},
        {"tls_port": 8883, "max_packet_bytes": 10},
        {"tls_port": 8883, "max_inflight_messages": 0},
        {"tls_port": 8883, "run_as_user": "bad user"},
    ],
)
def test_settings_refuse_bad_values(settings: dict[str, object]) -> None:
    with pytest.raises(BrokerConfigError):
        BrokerSettings(**settings)  # type: ignore[arg-type]


def test_errors_belong_to_the_gateway_hierarchy() -> None:
    assert issubclass(BrokerConfigError, GatewayError)


# --- generated files ------------------------------------------------------------------------


def test_files_and_modes(tmp_path: Path, ca: EvidenceCA) -> None:
    config_path = _write(tmp_path, ca, plain_port=18884)
    out = config_path.parent
    assert config_path.name == CONFIG_FILE
    assert _mode(out / DYNSEC_FILE) == 0o600
    assert _mode(out / SERVER_KEY_FILE) == 0o600
    assert not [path for path in out.iterdir() if path.name.endswith(".tmp")]
    clients = json.loads((out / DYNSEC_FILE).read_text())["clients"]
    assert [client["username"] for client in clients] == ["gateway", "badge-a"]


def test_roles_confine_badges_and_grant_the_gateway(tmp_path: Path, ca: EvidenceCA) -> None:
    document = json.loads((_write(tmp_path, ca).parent / DYNSEC_FILE).read_text())
    assert document["defaultACLAccess"] == {
        "publishClientSend": False,
        "publishClientReceive": False,
        "subscribe": False,
        "unsubscribe": True,
    }
    roles = {
        role["rolename"]: [(acl["acltype"], acl["topic"]) for acl in role["acls"]]
        for role in document["roles"]
    }
    assert roles["badge:badge-a"] == [
        ("publishClientSend", "medbadge/v1/badge/badge-a/#"),
        ("subscribePattern", "medbadge/v1/gateway/badge-a/#"),
        ("publishClientReceive", "medbadge/v1/gateway/badge-a/#"),
    ]
    assert ("publishClientSend", "$CONTROL/dynamic-security/v1") in roles["gateway"]
    assert ("publishClientReceive", "medbadge/v1/badge/#") in roles["gateway"]
    clients = {client["username"]: client for client in document["clients"]}
    assert clients["badge-a"]["roles"] == [{"rolename": "badge:badge-a"}]
    assert clients["gateway"]["roles"] == [{"rolename": "gateway"}]
    assert clients["badge-a"]["iterations"] == 101 and not clients["badge-a"]["disabled"]


def test_a_missing_plugin_is_refused_saying_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(BrokerConfigError, match="install Debian's mosquitto package"):
        find_plugin([tmp_path / "nothing.so"])
    assert find_plugin().is_file()


def test_plain_listener_only_on_loopback(tmp_path: Path, ca: EvidenceCA) -> None:
    config = _write(tmp_path, ca, plain_port=18884, bind_tls=ALL_INTERFACES).read_text()
    assert _listeners(config) == [(18883, ALL_INTERFACES), (18884, "127.0.0.1")]
    assert "\nlistener 18884 127.0.0.1\n" in config


def test_no_plain_listener_unless_asked(tmp_path: Path, ca: EvidenceCA) -> None:
    config = _write(tmp_path, ca).read_text()
    assert _listeners(config) == [(18883, ALL_INTERFACES)]


def test_config_security_lines(tmp_path: Path, ca: EvidenceCA) -> None:
    config_path = _write(tmp_path, ca, plain_port=18884, max_packet_bytes=4096)
    lines = config_path.read_text().splitlines()
    out = config_path.parent
    for expected in [
        "per_listener_settings false",
        "allow_anonymous false",
        f"plugin {find_plugin()}",
        f"plugin_opt_config_file {out / DYNSEC_FILE}",
        "tls_version tlsv1.2",
        "max_packet_size 4096",
        "persistence true",
    ]:
        assert expected in lines
    # A listener option before the first listener would open a default listener on 1883.
    first_listener = next(i for i, line in enumerate(lines) if line.startswith("listener "))
    assert lines.count("use_username_as_clientid true") == 2
    assert "use_username_as_clientid true" not in lines[:first_listener]


def test_duplicate_username_is_refused(tmp_path: Path, ca: EvidenceCA) -> None:
    accounts = [*_accounts(), BrokerAccount("gateway", hash_broker_password("x"), "badge")]
    with pytest.raises(BrokerConfigError, match="used twice"):
        write_broker_config(
            tmp_path,
            accounts,
            BrokerSettings(tls_port=18883),
            ca,
            server_hostnames=["localhost"],
            server_ips=[],
        )


# --- the real broker ------------------------------------------------------------------------


def test_badge_publishes_on_its_own_topic(
    broker: MosquittoProcess, sessions: list[MqttSession]
) -> None:
    gateway = _session(broker, sessions, "gateway")
    assert not gateway.subscribe(ALL_BADGES_FILTER).is_failure
    badge = _session(broker, sessions, "badge-a")
    assert badge.connack is not None and not badge.connack.is_failure
    code = badge.publish(badge_topic("badge-a", "alert"), b"help")
    assert code is not None and code.value == 0
    assert gateway.wait_for_message(badge_topic("badge-a", "alert")).payload == b"help"


def test_badge_cannot_publish_on_another_badges_topic(
    broker: MosquittoProcess, sessions: list[MqttSession]
) -> None:
    gateway = _session(broker, sessions, "gateway")
    gateway.subscribe(ALL_BADGES_FILTER)
    badge = _session(broker, sessions, "badge-a")
    forged = badge_topic("badge-b", "alert")
    code = badge.publish(forged, b"forged")
    assert code is not None and code.value == NOT_AUTHORIZED
    # Messages from one client reach a subscriber in order: once a later message has
    # arrived, the forged one would have arrived before it.
    badge.publish(badge_topic("badge-a", "heartbeat"), b"later")
    gateway.wait_for_message(badge_topic("badge-a", "heartbeat"))
    assert gateway.received(forged) == []


def test_badge_cannot_publish_gateway_topics(
    broker: MosquittoProcess, sessions: list[MqttSession]
) -> None:
    badge_b = _session(broker, sessions, "badge-b")
    badge_b.subscribe(gateway_filter("badge-b"))
    badge_a = _session(broker, sessions, "badge-a")
    code = badge_a.publish(gateway_topic("badge-b", "receipt"), b"fake receipt")
    assert code is not None and code.value == NOT_AUTHORIZED
    code = badge_a.publish(gateway_topic("badge-a", "receipt"), b"self-receipt")
    assert code is not None and code.value == NOT_AUTHORIZED
    gateway = _session(broker, sessions, "gateway")
    gateway.publish(gateway_topic("badge-b", "reject"), b"later")
    badge_b.wait_for_message(gateway_topic("badge-b", "reject"))
    assert badge_b.received(gateway_topic("badge-b", "receipt")) == []


def test_badge_cannot_read_another_badges_receipts(
    broker: MosquittoProcess, sessions: list[MqttSession]
) -> None:
    receipt_b = gateway_topic("badge-b", "receipt")
    badge_a = _session(broker, sessions, "badge-a")
    # the dynamic security plugin refuses the SUBSCRIBE itself, and its read rule would
    # stop every message on delivery anyway
    code = badge_a.subscribe(receipt_b)
    assert code.is_failure
    assert not badge_a.subscribe(gateway_topic("badge-a", "receipt")).is_failure
    badge_b = _session(broker, sessions, "badge-b")
    badge_b.subscribe(receipt_b)
    gateway = _session(broker, sessions, "gateway")
    gateway.publish(receipt_b, b"for b only")
    assert badge_b.wait_for_message(receipt_b).payload == b"for b only"
    gateway.publish(gateway_topic("badge-a", "receipt"), b"for a")
    badge_a.wait_for_message(gateway_topic("badge-a", "receipt"))
    assert badge_a.received(receipt_b) == []


def test_badge_cannot_read_other_badges_uplink(
    broker: MosquittoProcess, sessions: list[MqttSession]
) -> None:
    badge_a = _session(broker, sessions, "badge-a")
    badge_a.subscribe(ALL_BADGES_FILTER)
    badge_a.subscribe(shared_subscription("spy", ALL_BADGES_FILTER))
    badge_a.subscribe(gateway_topic("badge-a", "receipt"))
    badge_b = _session(broker, sessions, "badge-b")
    badge_b.publish(badge_topic("badge-b", "alert"), b"private")
    gateway = _session(broker, sessions, "gateway")
    gateway.publish(gateway_topic("badge-a", "receipt"), b"later")
    badge_a.wait_for_message(gateway_topic("badge-a", "receipt"))
    assert badge_a.received(badge_topic("badge-b", "alert")) == []


def test_gateway_shared_subscription_receives(
    broker: MosquittoProcess, sessions: list[MqttSession]
) -> None:
    gateway = _session(broker, sessions, "gateway")
    code = gateway.subscribe(shared_subscription("intake", ALL_BADGES_FILTER))
    assert not code.is_failure
    badge = _session(broker, sessions, "badge-b")
    badge.publish(badge_topic("badge-b", "segment"), b"chunk")
    assert gateway.wait_for_message(badge_topic("badge-b", "segment")).payload == b"chunk"


def test_forged_last_will_is_never_delivered(
    broker: MosquittoProcess, sessions: list[MqttSession]
) -> None:
    gateway = _session(broker, sessions, "gateway")
    gateway.subscribe(ALL_BADGES_FILTER)
    for topic in (badge_topic("badge-b", "status"), badge_topic("badge-a", "status")):
        badge = MqttSession(HOST, broker.plain_port, "badge-a", broker.password("badge-a"))
        badge.client.will_set(topic, b"offline", qos=1, retain=True)
        badge.connect()
        connection = badge.client.socket()
        assert isinstance(connection, socket.socket)
        connection.shutdown(socket.SHUT_RDWR)  # vanish without DISCONNECT
        badge.wait_disconnected()
        badge.client.loop_stop()
    gateway.wait_for_message(badge_topic("badge-a", "status"))
    assert gateway.received(badge_topic("badge-b", "status")) == []


def test_client_id_cannot_take_over_another_badge(
    broker: MosquittoProcess, sessions: list[MqttSession]
) -> None:
    badge_b = _session(broker, sessions, "badge-b", client_id="badge-b")
    badge_b.subscribe(gateway_topic("badge-b", "receipt"))
    intruder = _session(broker, sessions, "badge-a", client_id="badge-b")
    assert intruder.connack is not None and intruder.connack.value == 0
    gateway = _session(broker, sessions, "gateway")
    gateway.publish(gateway_topic("badge-b", "receipt"), b"still here")
    assert badge_b.wait_for_message(gateway_topic("badge-b", "receipt")).payload == b"still here"
    assert badge_b.disconnects == []


def test_unauthenticated_client_is_refused(
    broker: MosquittoProcess, sessions: list[MqttSession]
) -> None:
    anonymous = _session(broker, sessions, None)
    assert anonymous.connack is not None and anonymous.connack.value == NOT_AUTHORIZED


@pytest.mark.parametrize(("username", "password"), [("badge-a", "wrong"), ("nobody", "x")])
def test_wrong_credentials_are_refused(
    broker: MosquittoProcess, sessions: list[MqttSession], username: str, password: str
) -> None:
    session = MqttSession(HOST, broker.plain_port, username, password)
    sessions.append(session)
    code = session.connect()
    # mosquitto 2.0.11 answers "Not authorized"; "Bad user name or password" is also a refusal.
    assert code.value in (0x86, NOT_AUTHORIZED)


def test_badge_password_cannot_log_in_as_another_badge(
    broker: MosquittoProcess, sessions: list[MqttSession]
) -> None:
    session = MqttSession(HOST, broker.plain_port, "badge-b", broker.password("badge-a"))
    sessions.append(session)
    assert session.connect().is_failure


def test_fresh_password_hashed_by_us_is_accepted(tmp_path: Path) -> None:
    password = new_broker_password()
    logins = [BrokerLogin("badge-c", password, "badge")]
    with running_broker(tmp_path / "broker", logins=logins) as broker:
        good = MqttSession(HOST, broker.plain_port, "badge-c", password)
        bad = MqttSession(HOST, broker.plain_port, "badge-c", password[:-1])
        try:
            assert good.connect().value == 0
            assert bad.connect().is_failure
        finally:
            good.close()
            bad.close()


def test_tls_listener_with_evidence_ca_and_hostname(
    broker: MosquittoProcess, sessions: list[MqttSession]
) -> None:
    gateway = _session(broker, sessions, "gateway")
    gateway.subscribe(ALL_BADGES_FILTER)
    badge = MqttSession(
        TLS_HOSTNAME, broker.tls_port, "badge-a", broker.password("badge-a"), tls_ca=broker.ca_file
    )
    sessions.append(badge)
    assert badge.connect().value == 0
    badge.publish(badge_topic("badge-a", "alert"), b"over tls")
    assert gateway.wait_for_message(badge_topic("badge-a", "alert")).payload == b"over tls"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_listener_speaks_tls12_and_tls13(
    broker: MosquittoProcess, version: ssl.TLSVersion
) -> None:
    # Pi badges with older TLS stacks may only have 1.2; the console's browsers prefer 1.3.
    context = ssl.create_default_context(cafile=str(broker.ca_file))
    context.minimum_version = context.maximum_version = version
    with (
        socket.create_connection((HOST, broker.tls_port), timeout=5) as connection,
        context.wrap_socket(connection, server_hostname=TLS_HOSTNAME) as tls,
    ):
        assert tls.version() == {"TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}[version.name]


def test_tls_hostname_is_checked(broker: MosquittoProcess) -> None:
    context = ssl.create_default_context(cafile=str(broker.ca_file))
    with (
        socket.create_connection((HOST, broker.tls_port), timeout=5) as connection,
        pytest.raises(ssl.SSLCertVerificationError, match="mismatch"),
    ):
        context.wrap_socket(connection, server_hostname="gateway.elsewhere.example")


def test_tls_refuses_a_client_trusting_another_ca(broker: MosquittoProcess, tmp_path: Path) -> None:
    other = EvidenceCA.create("Other Hospital")
    other.save(tmp_path / "other")
    badge = MqttSession(
        TLS_HOSTNAME,
        broker.tls_port,
        "badge-a",
        broker.password("badge-a"),
        tls_ca=tmp_path / "other" / "ca.crt",
    )
    with pytest.raises(ssl.SSLCertVerificationError):
        badge.connect()
    badge.client.loop_stop()


def test_plain_mqtt_on_the_tls_port_fails(broker: MosquittoProcess) -> None:
    plain = MqttSession(HOST, broker.tls_port, "badge-a", broker.password("badge-a"))
    plain.client.connect(HOST, broker.tls_port, keepalive=30)
    plain.client.loop_start()
    try:
        plain.wait_disconnected()
        assert plain.connack is None
    finally:
        plain.close()


def test_plain_listener_is_bound_to_loopback_only(broker: MosquittoProcess) -> None:
    config = broker.config_path.read_text()
    assert _listeners(config) == [(broker.tls_port, HOST), (broker.plain_port, HOST)]
    # What the kernel says mosquitto actually listens on for the plain port.
    listening = _listening_addresses(broker.plain_port)
    assert listening == {"127.0.0.1"}


def _listening_addresses(port: int) -> set[str]:
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            if int(port_hex, 16) == port and fields[3] == "0A":  # 0A = LISTEN
                if len(address) == 8:
                    addresses.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
                else:
                    addresses.add(f"ipv6:{address}")
    return addresses


def test_oversized_publish_is_refused_by_the_broker(tmp_path: Path) -> None:
    with running_broker(tmp_path / "broker", max_packet_bytes=4096) as broker:
        gateway = broker.session("gateway")
        badge = broker.session("badge-a")
        try:
            gateway.subscribe(ALL_BADGES_FILTER)
            assert badge.connack_properties is not None
            limit = badge.connack_properties.MaximumPacketSize  # type: ignore[attr-defined]
            assert limit == 4096
            badge.publish(badge_topic("badge-a", "segment"), b"x" * 8192)
            assert badge.wait_disconnected().value == PACKET_TOO_LARGE
            broker.wait_for_log("disconnected due to oversize packet")
            again = broker.session("badge-a")
            again.publish(badge_topic("badge-a", "heartbeat"), b"small")
            gateway.wait_for_message(badge_topic("badge-a", "heartbeat"))
            again.close()
            assert gateway.received(badge_topic("badge-a", "segment")) == []
        finally:
            badge.close()
            gateway.close()


def test_queued_message_survives_broker_restart(tmp_path: Path) -> None:
    with running_broker(tmp_path / "broker") as broker:
        gateway = broker.session("gateway", clean_start=False, session_expiry_s=3600)
        gateway.subscribe(ALL_BADGES_FILTER)
        gateway.close()
        badge = broker.session("badge-a")
        badge.publish(badge_topic("badge-a", "incident"), b"queued for the gateway")
        badge.close()
        broker.restart()
        gateway = broker.session("gateway", clean_start=False, session_expiry_s=3600)
        try:
            message = gateway.wait_for_message(badge_topic("badge-a", "incident"))
            assert message.payload == b"queued for the gateway"
        finally:
            gateway.close()


def test_kill_and_start_again(tmp_path: Path) -> None:
    with running_broker(tmp_path / "broker") as broker:
        pid = broker.pid
        broker.kill()
        assert not broker.running
        broker.start()
        assert broker.pid != pid
        session = broker.session("badge-a")
        assert session.connack is not None and session.connack.value == 0
        session.close()


def test_broker_log_holds_no_passwords(broker: MosquittoProcess) -> None:
    broker.session("badge-a").close()
    refused = MqttSession(HOST, broker.plain_port, "badge-b", "a-wrong-password")
    refused.connect()
    refused.close()
    log = broker.wait_for_log("u'badge-a'")
    for login in broker.logins.values():
        assert login.password not in log
    assert "a-wrong-password" not in log


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_root_started_broker_drops_to_mosquitto_user() -> None:
    # pytest's temporary directories are private to root, so use a directory the
    # mosquitto account can reach.
    directory = Path(tempfile.mkdtemp(prefix="medbadge-broker-"))
    directory.chmod(0o755)  # the broker account must be able to walk into its directory
    try:
        with running_broker(directory / "broker", run_as_user="mosquitto") as broker:
            session = broker.session("badge-a")
            assert session.connack is not None and session.connack.value == 0
            session.close()
            owner = subprocess.run(
                ["ps", "-o", "user=", "-p", str(broker.pid)],
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            ).stdout.strip()
            assert owner == "mosquitto"
            assert (directory / "broker" / DYNSEC_FILE).stat().st_uid != 0
    finally:
        shutil.rmtree(directory, ignore_errors=True)
