"""The gateway configuration file: defaults, every key, and clear refusals."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.config import GatewayConfig, IntakeLimits, WebhookSettings
from gateway.errors import GatewayConfigError, GatewayError

REPO = Path(__file__).resolve().parents[2]


def load(tmp_path: Path, text: str) -> GatewayConfig:
    (tmp_path / "gateway.toml").write_text(text)
    return GatewayConfig.load(tmp_path)


def test_no_file_means_every_default(tmp_path: Path) -> None:
    config = GatewayConfig.load(tmp_path)
    broker = config.broker
    assert (broker.host, broker.port, broker.tls, broker.username) == (
        "localhost",
        8883,
        True,
        "gateway",
    )
    assert broker.ca_file == tmp_path / "ca" / "ca.crt"
    assert broker.password_file == tmp_path / "keys" / "broker-gateway.password"
    assert broker.shared_group is None
    assert config.webhooks == ()
    assert config.paths.broker_dir == tmp_path / "broker"
    assert config.paths.undelivered_file == tmp_path / "webhooks" / "undelivered.jsonl"
    assert (config.live_queue_limit, config.log_level) == (256, "info")


def test_every_key(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
[broker]
host = "broker.hospital.local"
port = 18883
tls = false
ca_file = "/etc/medbadge/ca.crt"
username = "intake-2"
password_file = "secrets/intake-2.password"
shared_group = "intake"

[paths]
broker_dir = "/var/lib/medbadge-broker"
undelivered_file = "spool/undelivered.jsonl"

[live]
queue_limit = 32

[log]
level = "debug"

[[webhook]]
url = "https://security.hospital.local/hooks/medbadge"
secret_file = "/etc/medbadge/webhook.secret"
timeout_seconds = 2.5
retry_min_seconds = 1
retry_max_seconds = 60
give_up_seconds = 3600
queue_limit = 50
ca_file = "ca/ca.crt"

[[webhook]]
url = "http://127.0.0.1:9000/alerts"
secret_file = "pager.secret"
""",
    )
    broker = config.broker
    assert (broker.host, broker.port, broker.tls) == ("broker.hospital.local", 18883, False)
    assert broker.ca_file == Path("/etc/medbadge/ca.crt")
    assert broker.password_file == tmp_path / "secrets" / "intake-2.password"
    assert (broker.username, broker.shared_group) == ("intake-2", "intake")
    assert config.paths.broker_dir == Path("/var/lib/medbadge-broker")
    assert config.paths.undelivered_file == tmp_path / "spool" / "undelivered.jsonl"
    assert (config.live_queue_limit, config.log_level) == (32, "debug")
    assert config.webhooks == (
        WebhookSettings(
            url="https://security.hospital.local/hooks/medbadge",
            secret_file=Path("/etc/medbadge/webhook.secret"),
            timeout_seconds=2.5,
            retry_min_seconds=1.0,
            retry_max_seconds=60.0,
            give_up_seconds=3600.0,
            queue_limit=50,
            ca_file=tmp_path / "ca" / "ca.crt",
        ),
        WebhookSettings("http://127.0.0.1:9000/alerts", tmp_path / "pager.secret"),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[broker]\nport = 0", "broker.port = 0 is not in 1..65535"),
        ("[broker]\nport = '8883'", "broker.port must be a whole number"),
        ("[broker]\ntls = 'yes'", "broker.tls must be true or false"),
        ("[broker]\nusername = 'Gate Way'", "broker.username"),
        ("[broker]\nshared_group = 'a/b'", "broker.shared_group"),
        ("[broker]\nhots = 'x'", r"unknown key\(s\) broker.hots"),
        ("[brokers]\nhost = 'x'", r"unknown section\(s\) \['brokers'\]"),
        ("[log]\nlevel = 'loud'", "log.level = 'loud' is not one of"),
        ("[live]\nqueue_limit = 0", "live.queue_limit = 0"),
        ("[console]\nlow_battery_percent = 101", "console.low_battery_percent = 101"),
        ("webhook = 3", r"\[\[webhook\]\] must be an array of tables"),
        ("[[webhook]]\nurl = 'ftp://x/'\nsecret_file = 's'", "must be an http"),
        ("[[webhook]]\nurl = 'http://x/'", r"webhook\[0\].secret_file is required"),
        ("[[webhook]]\nurl = 'http://x/'\nsecret_file = 's'\nretries = 3", "webhook.0..retries"),
        (
            "[[webhook]]\nurl = 'http://x/'\nsecret_file = 's'\n"
            "[[webhook]]\nurl = 'http://x/'\nsecret_file = 't'",
            "listed twice",
        ),
        ("[[webhook]]\nurl = 'http://x/'\nsecret_file = 's'\ntimeout_seconds = 0", "timeout"),
        ("broker = [", "cannot be read"),
        ("[console]\nmax_connections_per_address = 0", "console.max_connections_per_address = 0"),
        ("[console]\nmax_connections = 1", "console.max_connections = 1 is not in 2..100000"),
        ("[console]\nheader_timeout_seconds = 0", "console.header_timeout_seconds = 0"),
        ("[console]\nidle_timeout_seconds = 0.5", "console.idle_timeout_seconds must be a whole"),
    ],
)
def test_bad_values_name_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(GatewayConfigError, match=message) as caught:
        load(tmp_path, text)
    assert str(tmp_path / "gateway.toml") in str(caught.value)
    assert isinstance(caught.value, GatewayError)


def test_console_limits_have_bounded_defaults_and_can_be_set(tmp_path: Path) -> None:
    limits = GatewayConfig.load(tmp_path).console.limits
    assert limits.max_connections_per_address < limits.max_connections
    assert 0 < limits.header_timeout_seconds <= 30 and 0 < limits.idle_timeout_seconds <= 30
    text = (
        "[console]\nmax_connections = 40\nmax_connections_per_address = 4\n"
        "header_timeout_seconds = 2.5\nidle_timeout_seconds = 3\nlive_poll_ms = 7\n"
    )
    limits = load(tmp_path, text).console.limits
    assert (limits.max_connections, limits.max_connections_per_address) == (40, 4)
    assert (limits.header_timeout_seconds, limits.idle_timeout_seconds) == (2.5, 3)
    assert limits.live_poll_ms == 7


def test_an_explicit_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(GatewayConfigError, match="does not exist"):
        GatewayConfig.load(tmp_path, tmp_path / "other.toml")


def test_password_file_errors_say_what_to_do(tmp_path: Path) -> None:
    broker = GatewayConfig.load(tmp_path).broker
    with pytest.raises(GatewayConfigError, match="run 'gateway broker-config' first"):
        broker.read_password()
    broker.password_file.parent.mkdir()
    broker.password_file.write_text("\n")
    with pytest.raises(GatewayConfigError, match="is empty"):
        broker.read_password()
    broker.password_file.write_text("s3cret\n")
    assert broker.read_password() == "s3cret"


def test_the_documentation_lists_every_key() -> None:
    """docs/gateway-config.md shows every key the loader knows, with its default."""
    document = (REPO / "docs" / "gateway-config.md").read_text()
    source = (REPO / "gateway" / "config.py").read_text()
    keys = set(
        re.findall(
            r'\.(?:text|boolean|integer|number|choice|path|optional_path)\(\s*"(\w+)"', source
        )
    )
    assert keys >= {"host", "url", "secret_file", "queue_limit", "level"}
    for key in keys:
        assert re.search(rf"^#?\s*{key} = ", document, flags=re.MULTILINE), key


def test_an_external_tsa_needs_its_ca(tmp_path: Path) -> None:
    with pytest.raises(GatewayConfigError, match="tsa_ca_file is required"):
        GatewayConfig.from_mapping(tmp_path, {"timestamps": {"tsa_url": "https://tsa.example/"}})
    with pytest.raises(GatewayConfigError, match="must be an http"):
        GatewayConfig.from_mapping(tmp_path, {"timestamps": {"tsa_url": "ftp://tsa.example/"}})
    config = GatewayConfig.from_mapping(
        tmp_path, {"timestamps": {"tsa_url": "http://127.0.0.1:9/", "tsa_ca_file": "pki.crt"}}
    )
    assert config.timestamps.tsa_ca_file == tmp_path / "pki.crt"


def test_the_database_and_the_vault_default_to_the_data_directory(tmp_path: Path) -> None:
    config = GatewayConfig.load(tmp_path)
    assert (config.database_url, config.vault) == ("", None)


def test_postgresql_and_an_s3_vault_are_chosen_by_url(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        '[database]\nurl = "postgresql://gateway@db.hospital.kz/medbadge?passfile=/etc/pgpass"\n'
        '[vault]\nurl = "s3://medbadge-vault"\nendpoint = "https://s3.hospital.kz"\n'
        'credentials_file = "keys/s3.json"\nregion = "kz-1"\n',
    )
    assert config.database_url.startswith("postgresql://gateway@db.hospital.kz/")
    assert config.vault is not None
    assert (config.vault.bucket, config.vault.endpoint, config.vault.region) == (
        "medbadge-vault",
        "https://s3.hospital.kz",
        "kz-1",
    )
    assert config.vault.credentials_file == tmp_path / "keys" / "s3.json"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[database]\nurl = "mysql://db/x"\n', "must be a postgresql:// URL"),
        ('[database]\nurl = "postgresql://gw:secret@db/x"\n', "must not hold a password"),
        ('[database]\nurl = "postgresql://gw@db/x?password=secret"\n', "must not hold a password"),
        ('[vault]\nurl = "s3://"\n', "must be s3://bucket"),
        ('[vault]\nurl = "s3://b/sub"\n', "must be s3://bucket"),
        ('[vault]\nurl = "s3://b"\ncredentials_file = "k"\n', "vault.endpoint must be"),
        ('[vault]\nurl = "s3://b"\nendpoint = "http://s3"\n', "credentials_file is required"),
        ('[vault]\nurl = "s3://b"\nendpoint = "http://s3"\ncredentials_file = "k"\nx = 1\n',
         "unknown key"),
    ],
)
def test_bad_storage_settings_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(GatewayConfigError, match=message) as refused:
        load(tmp_path, text)
    assert "secret" not in str(refused.value)


def test_the_intake_limits(tmp_path: Path) -> None:
    assert GatewayConfig.from_mapping(tmp_path, {}).limits == IntakeLimits()
    raw = {
        "quarantine": {"badge_bytes": 1000, "badge_entries": 5, "total_bytes": 4000},
        "reserve": {"bytes": 10, "percent": 1.5},
        "cutoff": {"refusals": 7, "window_seconds": 2.5},
    }
    limits = GatewayConfig.from_mapping(tmp_path, raw).limits
    assert limits.quarantine.badge_bytes == 1000 and limits.quarantine.total_bytes == 4000
    assert limits.quarantine.total_entries == 20_000
    assert limits.reserve.bytes == 10 and limits.reserve.percent == 1.5
    assert limits.cutoff.refusals == 7 and limits.cutoff.window_seconds == 2.5
    with pytest.raises(GatewayConfigError, match=r"quarantine.total_bytes = 10 is not in"):
        GatewayConfig.from_mapping(tmp_path, {"quarantine": {"total_bytes": 10}})
    with pytest.raises(GatewayConfigError, match=r"unknown key\(s\) cutoff.after"):
        GatewayConfig.from_mapping(tmp_path, {"cutoff": {"after": 1}})


def test_the_low_battery_threshold_is_read(tmp_path: Path) -> None:
    assert load(tmp_path, "").console.low_battery_percent == 20
    config = load(tmp_path, "[console]\nlow_battery_percent = 35\n")
    assert config.console.low_battery_percent == 35
