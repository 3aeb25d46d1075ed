"""A badge enrolled or rotated while the gateway and the real broker run can log in at once,
and a gateway started after enrolments made while it was stopped brings the broker in step:
the generated mosquitto (dynamic security plugin), no broker-config and no restart."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from evidence.bundle import EnrolmentBundle
from evidence.keys import BadgeIdentity
from gateway.broker.config import hash_broker_password, new_broker_password
from gateway.broker.dynsec import DYNSEC_FILE
from gateway.cli import main
from gateway.config import GatewayConfig
from gateway.daemon import GatewayDaemon
from tests.enrol import enrol_by_cli
from tests.gateway.badge_messages import BadgeMessages, Hospital, make_hospital
from tests.gateway.generated_broker import (
    GeneratedBroker,
    badge_tls_session,
    tls_session,
    write_config,
)
from tests.mosquitto import MqttSession

NOT_AUTHORIZED = 0x87
BAD_LOGIN = 0x86
AT_ONCE_S = 1.0
"""An enrolled or rotated badge may log in within a second of the command."""
START_S = 20.0


@dataclass
class Gateway:
    hospital: Hospital
    broker: GeneratedBroker
    bundles: Path
    daemon: GatewayDaemon | None = None

    @property
    def root(self) -> str:
        return str(self.hospital.data_dir.root)

    def start_daemon(self) -> None:
        self.daemon = GatewayDaemon(
            self.hospital.data_dir, GatewayConfig.load(self.hospital.data_dir.root)
        )
        self.daemon.start()
        deadline = time.monotonic() + START_S
        while not self.daemon.connected:
            assert time.monotonic() < deadline, "the gateway did not connect"
            time.sleep(0.02)

    def enrol(self, badge_id: str, *extra: str) -> Path:
        bundle = self.bundles / f"{badge_id}{'-rotated' if extra else ''}"
        assert enrol_by_cli(Path(self.root), badge_id, bundle, *extra) == 0
        return bundle

    def login(self, bundle: Path) -> MqttSession:
        return badge_tls_session(self.broker, bundle)

    def login_within(self, bundle: Path, seconds: float) -> tuple[MqttSession, float]:
        """Log in again until the broker lets the badge in; the session and how long it took."""
        started = time.monotonic()
        while True:
            session = self.login(bundle)
            if _connected(session):
                return session, time.monotonic() - started
            session.close()
            assert time.monotonic() - started < seconds, (
                f"the broker still refuses {bundle.name}:\n{self.broker.log_text()[-3000:]}"
            )
            time.sleep(0.02)

    def reaches_the_gateway(self, session: MqttSession, bundle: Path, seconds: float) -> float:
        """Publish the badge's status; how long until the gateway has recorded it."""
        badge = BadgeMessages.of(EnrolmentBundle.load(bundle))
        started = time.monotonic()
        assert session.publish(badge.topic("status"), badge.status("online")) is not None
        storage = self.hospital.data_dir.storage()
        try:
            while storage.badge_states.get(badge.badge_id) is None:
                assert time.monotonic() - started < seconds, "the gateway never heard the badge"
                time.sleep(0.02)
        finally:
            storage.close()
        return time.monotonic() - started


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    hospital = make_hospital(tmp_path)
    root = hospital.data_dir.root
    tls_port, plain_port = write_config(root)
    (root / "gateway.toml").write_text(
        f"[broker]\nport = {plain_port}\ntls = false\n[console]\nenabled = false\n"
    )
    with GeneratedBroker(root / "broker", tls_port, plain_port) as broker:
        running = Gateway(hospital, broker, tmp_path / "bundles")
        try:
            yield running
        finally:
            if running.daemon is not None:
                running.daemon.stop()


def _connected(session: MqttSession) -> bool:
    return session.connack is not None and session.connack.value == 0


def _refused(session: MqttSession) -> bool:
    return session.connack is not None and session.connack.value in (NOT_AUTHORIZED, BAD_LOGIN)


def test_a_badge_enrolled_while_everything_runs_logs_in_within_a_second(
    gateway: Gateway,
) -> None:
    gateway.start_daemon()
    bundle = gateway.bundles / "badge-c"
    first = gateway.login(bundle.parent / "badge-a")
    try:
        assert _connected(first)
        # nobody restarts the broker: badge-c has no account until the gateway gives it one
        assert main(["--data", gateway.root, "enroll", "badge-c", "-o", str(bundle)]) == 0
        session, took = gateway.login_within(bundle, AT_ONCE_S)
        try:
            assert took < AT_ONCE_S
            assert gateway.reaches_the_gateway(session, bundle, AT_ONCE_S) < AT_ONCE_S
        finally:
            session.close()
        assert first.disconnects == [], "an enrolment dropped another badge's session"
    finally:
        first.close()
    log = gateway.broker.log_text()
    assert "createClient | username=badge-c" in log
    assert "Reloading config" not in log
    # the plugin kept the new account in its file, so a broker restart keeps it too
    saved = json.loads((gateway.broker.broker_dir / DYNSEC_FILE).read_text())
    assert "badge-c" in [client["username"] for client in saved["clients"]]


def test_a_rotated_badge_logs_in_with_its_new_password_only(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.broker.access")
    gateway.start_daemon()
    old_bundle = gateway.bundles / "badge-a"
    old = gateway.login(old_bundle)
    try:
        assert _connected(old)
        new_bundle = gateway.enrol("badge-a", "--rotate")
        session, took = gateway.login_within(new_bundle, AT_ONCE_S)
        try:
            assert took < AT_ONCE_S
            # the session that logged in with the old password is closed, and stays out
            old.wait_disconnected(AT_ONCE_S)
            again = gateway.login(old_bundle)
            again.close()
            assert _refused(again)
            assert gateway.reaches_the_gateway(session, new_bundle, AT_ONCE_S) < AT_ONCE_S
        finally:
            session.close()
    finally:
        old.close()
    # the creates answered "already exists", which is no refusal worth a line
    assert not [r for r in caplog.records if "refused" in r.getMessage()]
    assert "modifyClient | username=badge-a" in gateway.broker.log_text()


def test_a_gateway_started_later_brings_the_broker_in_step(gateway: Gateway) -> None:
    # the broker runs; the gateway does not: an enrolment, a rotation and a revocation
    new_bundle = gateway.enrol("badge-c")
    rotated = gateway.enrol("badge-a", "--rotate")
    assert main(["--data", gateway.root, "revoke", "badge-b", "--reason", "lost"]) == 0
    waiting = gateway.login(new_bundle)
    waiting.close()
    assert _refused(waiting), "the broker knew badge-c before the gateway told it"

    gateway.start_daemon()
    for bundle in (new_bundle, rotated):
        session, took = gateway.login_within(bundle, AT_ONCE_S)
        session.close()
        assert took < AT_ONCE_S
    for stale in (gateway.bundles / "badge-a", gateway.bundles / "badge-b"):
        refused = gateway.login(stale)
        refused.close()
        assert _refused(refused), f"{stale.name} still logs in"
    assert "listClients" in gateway.broker.log_text()


def test_a_gateway_restarted_with_nothing_changed_sends_no_credentials(
    gateway: Gateway,
) -> None:
    gateway.start_daemon()
    bundle = gateway.enrol("badge-c")
    gateway.login_within(bundle, AT_ONCE_S)[0].close()
    kept = gateway.login(gateway.bundles / "badge-a")
    assert gateway.daemon is not None
    gateway.daemon.stop()
    before = gateway.broker.log_text().count("modifyClient")
    enabled = "enableClient | username=badge-c"
    sent = gateway.broker.log_text().count(enabled)
    gateway.start_daemon()
    deadline = time.monotonic() + START_S
    while gateway.broker.log_text().count(enabled) == sent:  # the reconcile has run
        assert time.monotonic() < deadline, "the restarted gateway did not reconcile"
        time.sleep(0.02)
    session = gateway.login(bundle)
    try:
        assert _connected(session), "a restarted gateway dropped a badge's login"
        assert kept.disconnects == [], "a restarted gateway closed a badge's session"
    finally:
        session.close()
        kept.close()
    # the fingerprints matched: no badge was given its password again (nor kicked)
    assert gateway.broker.log_text().count("modifyClient") == before


def test_a_badge_whose_password_the_gateway_cannot_know_is_named_once(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    # enrolled with a random password, as before passwords were derived, while the gateway
    # was stopped: the broker has no account for it and the gateway cannot make one
    storage = gateway.hospital.data_dir.storage()
    try:
        storage.badges.enroll(
            "badge-old",
            BadgeIdentity.generate("badge-old").signing_key.public_key,
            hash_broker_password(new_broker_password()),
            wearer="",
            location="",
            operator="adam",
            rotate=False,
            key_origin="gateway-generated",
        )
    finally:
        storage.close()
    new_bundle = gateway.enrol("badge-c")
    with caplog.at_level(logging.WARNING, logger="gateway.broker.access"):
        gateway.start_daemon()
        # the others are not held back by it
        gateway.login_within(new_bundle, AT_ONCE_S)[0].close()
        gateway.enrol("badge-d")  # another poll, another apply: still named only once
        gateway.login_within(gateway.bundles / "badge-d", AT_ONCE_S)[0].close()
    named = [record for record in caplog.records if "badge-old" in record.getMessage()]
    assert len(named) == 1
    assert "gateway enroll badge-old --rotate" in named[0].getMessage()
    assert "createClient | username=badge-old" not in gateway.broker.log_text()


def test_accounts_written_before_fingerprints_keep_working(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hospital = make_hospital(tmp_path, ("badge-a",))
    legacy_password = new_broker_password()
    storage = hospital.data_dir.storage()
    try:
        storage.badges.enroll(
            "badge-old",
            BadgeIdentity.generate("badge-old").signing_key.public_key,
            hash_broker_password(legacy_password),
            wearer="",
            location="",
            operator="adam",
            rotate=False,
            key_origin="gateway-generated",
        )
    finally:
        storage.close()
    root = hospital.data_dir.root
    tls_port, plain_port = write_config(root)
    (root / "gateway.toml").write_text(
        f"[broker]\nport = {plain_port}\ntls = false\n[console]\nenabled = false\n"
    )
    # as an older broker-config wrote it: no fingerprints
    accounts = root / "broker" / DYNSEC_FILE
    document = json.loads(accounts.read_text())
    for client in document["clients"]:
        client.pop("textdescription", None)
    accounts.write_text(json.dumps(document))
    with GeneratedBroker(root / "broker", tls_port, plain_port) as broker:
        gateway = Gateway(hospital, broker, tmp_path / "bundles")
        try:
            with caplog.at_level(logging.WARNING, logger="gateway.broker.access"):
                gateway.start_daemon()
                # badge-a's password is derived: it is given again, with its fingerprint
                deadline = time.monotonic() + START_S
                while "modifyClient | username=badge-a" not in broker.log_text():
                    assert time.monotonic() < deadline, "badge-a was not brought up to date"
                    time.sleep(0.02)
                gateway.login_within(gateway.bundles / "badge-a", AT_ONCE_S)[0].close()
            old = tls_session(broker, "badge-old", legacy_password, broker.ca_file)
            old.close()
            assert _connected(old), "a badge from before derived passwords lost its login"
            assert "modifyClient | username=badge-old" not in broker.log_text()
            assert not [r for r in caplog.records if "badge-old" in r.getMessage()]
        finally:
            if gateway.daemon is not None:
                gateway.daemon.stop()


def test_a_badge_enrolled_while_the_broker_is_down_logs_in_once_it_is_back(
    gateway: Gateway,
) -> None:
    gateway.start_daemon()
    assert gateway.daemon is not None
    gateway.broker.stop()
    bundle = gateway.enrol("badge-c")
    gateway.broker.start()
    deadline = time.monotonic() + START_S
    while not gateway.daemon.connected:
        assert time.monotonic() < deadline, "the gateway did not reconnect"
        time.sleep(0.02)
    session, took = gateway.login_within(bundle, AT_ONCE_S)
    try:
        assert took < AT_ONCE_S
        assert gateway.reaches_the_gateway(session, bundle, AT_ONCE_S) < AT_ONCE_S
    finally:
        session.close()
