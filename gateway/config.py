"""The gateway configuration: ``gateway.toml`` in the data directory, typed, with defaults.

Every key is optional; a missing file means every default. See docs/gateway-config.md for
each key. Relative paths are taken relative to the data directory.

This module is long because every table of the file is typed, defaulted and checked here,
in one place, so that each key has one default and one error message.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from evidence.errors import InvalidIdentifierError
from evidence.identifiers import validate_badge_id
from gateway.errors import GatewayConfigError

CONFIG_FILE = "gateway.toml"
GATEWAY_ACCOUNT = "gateway"
"""The broker login of ``gateway run`` (``gateway broker-config`` creates it)."""
GATEWAY_PASSWORD_FILE = "broker-gateway.password"  # noqa: S105 - a file name, not a password
"""The gateway account's password, in the data directory's ``keys/``."""
LOG_LEVELS = ("debug", "info", "warning", "error")
MIB = 1024 * 1024
GIB = 1024 * MIB


@dataclass(frozen=True)
class BrokerConnection:
    """How ``gateway run`` reaches the broker."""

    host: str
    port: int
    tls: bool
    ca_file: Path
    """The CA that certifies the broker's TLS server: the hospital evidence CA."""
    username: str
    password_file: Path
    shared_group: str | None
    """Subscribe as ``$share/<group>/...`` to split intake over several processes."""

    def read_password(self) -> str:
        """The account's password from ``password_file``; GatewayConfigError says how to fix it."""
        path = self.password_file
        try:
            password = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise GatewayConfigError(
                f"broker password file {path} is missing: run 'gateway broker-config' first"
            ) from None
        except (OSError, UnicodeDecodeError) as error:
            raise GatewayConfigError(f"cannot read broker password file {path}: {error}") from None
        if not password:
            raise GatewayConfigError(
                f"broker password file {path} is empty: remove it and run 'gateway broker-config'"
            )
        return password


@dataclass(frozen=True)
class WebhookSettings:
    """One URL every alert is POSTed to."""

    url: str
    secret_file: Path
    """Holds the HMAC-SHA256 key the receiver shares (at least 16 bytes, mode 0600)."""
    timeout_seconds: float = 5.0
    retry_min_seconds: float = 0.5
    retry_max_seconds: float = 30.0
    give_up_seconds: float = 600.0
    """After this long an alert not yet delivered goes to the undelivered file."""
    queue_limit: int = 1000
    ca_file: Path | None = None
    """A CA bundle for an https URL under a private CA (default: the system's)."""


@dataclass(frozen=True)
class GatewayPaths:
    """Where the gateway's generated and working files go."""

    broker_dir: Path
    """What ``gateway broker-config`` writes (mosquitto.conf, passwd, acl, certificates)."""
    undelivered_file: Path
    """Alerts no webhook accepted in time, one JSON line each; retried at the next start."""


@dataclass(frozen=True)
class ConsoleLimits:
    """The bounds of ``gateway console``: connections, the time to send a request, idling."""

    max_connections: int = 512
    """Open connections in all; past it the newest connection still waiting for its first
    request, from the address holding the most, makes way (or the new one is refused)."""
    max_connections_per_address: int = 32
    """Open connections from one client address (a desk behind one NAT shares one)."""
    header_timeout_seconds: float = 10.0
    """A new connection must finish its TLS handshake and first request headers this soon."""
    idle_timeout_seconds: int = 5
    """A kept-alive connection with no new request this long is closed."""
    live_poll_ms: int = 20
    """How often the console looks in the database for alerts the intake has stored."""


@dataclass(frozen=True)
class ConsoleSettings:
    """Where and how ``gateway console`` serves the security console (HTTP API and pages)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    """The listening address: the gateway's address on the security desks' network ("0.0.0.0"
    listens on every interface, reachable from every ward)."""
    port: int = 8443
    tls: bool = True
    """Serve HTTPS with a server certificate from the hospital evidence CA."""
    hostnames: tuple[str, ...] = ()
    """Names the console's certificate carries besides ``localhost`` (what browsers type)."""
    ips: tuple[str, ...] = ()
    """Addresses the certificate carries besides 127.0.0.1."""
    session_idle_minutes: int = 30
    """A session unused this long ends; the user logs in again."""
    session_max_hours: int = 12
    """No session lasts longer than this, however busy."""
    custodian_passphrase_file: Path | None = None
    """The custodian key's passphrase, when the key is protected (playback decrypts with it)."""
    low_battery_percent: int = 20
    """The badge list warns of a badge whose battery charge is below this."""
    limits: ConsoleLimits = ConsoleLimits()
    """What one client, and all of them together, may hold of the console process."""


@dataclass(frozen=True)
class TimestampSettings:
    """Which RFC 3161 time-stamp authority stamps the ledger's checkpoints."""

    tsa_url: str = ""
    """An external TSA (e.g. the national PKI's); empty: the hospital's own TSA."""
    tsa_ca_file: Path | None = None
    """The CA certificate the external TSA's certificate chains to (required with a URL)."""


@dataclass(frozen=True)
class S3VaultConfig:
    """``[vault]`` with ``url = "s3://bucket"``: footage in an S3 bucket with Object Lock."""

    bucket: str
    endpoint: str
    """The S3 API's URL."""
    credentials_file: Path
    """JSON ``{"access_key": ..., "secret_key": ...}``, readable by its owner alone."""
    region: str = "us-east-1"
    ca_file: Path | None = None
    """The CA bundle of an https endpoint under a private CA (default: the system's)."""


@dataclass(frozen=True)
class MonitoringSettings:
    """The health and metrics listener of ``gateway run`` (``/healthz``, ``/metrics``)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    """The listening address: loopback by default (a scraper on this machine, or a proxy)."""
    port: int = 9180
    disk_min_free_mb: int = 1024
    """``/healthz`` reports the disk unhealthy below this much free space in the data directory."""
    checkpoint_max_age_s: int = 300
    """``/healthz`` reports the ledger unhealthy when entries wait longer for a checkpoint."""


@dataclass(frozen=True)
class QuarantineSettings:
    """How much of what the intake refuses is kept, per badge and in all (decision 1700).

    Past a quota only a line of metadata is kept (badge, topic, size, SHA-256, reason,
    time), in a log rotated at ``log_bytes`` with one older file kept, and the refusal is
    counted as not kept.
    """

    badge_bytes: int = 64 * MIB
    badge_entries: int = 1000
    total_bytes: int = 512 * MIB
    total_entries: int = 20_000
    log_bytes: int = 8 * MIB


@dataclass(frozen=True)
class ReserveSettings:
    """Free space on the data directory's file system kept for alerts, receipts and evidence.

    The reserve is the larger of ``bytes`` and ``percent`` of the file system; below it
    the quarantine keeps no bytes and the console warns "disk low" (decision 1701).
    """

    bytes: int = 2 * GIB
    percent: float = 5.0


@dataclass(frozen=True)
class CutoffSettings:
    """A badge with more than ``refusals`` refused messages within ``window_seconds`` is cut
    off at the broker until an administrator lifts it (decision 1702)."""

    refusals: int = 100
    window_seconds: float = 60.0


@dataclass(frozen=True)
class IntakeLimits:
    """What one badge's refused messages may cost the gateway."""

    quarantine: QuarantineSettings = QuarantineSettings()
    reserve: ReserveSettings = ReserveSettings()
    cutoff: CutoffSettings = CutoffSettings()


@dataclass(frozen=True)
class GatewayConfig:
    """The whole gateway configuration, paths already resolved against the data directory."""

    data_root: Path
    broker: BrokerConnection
    webhooks: tuple[WebhookSettings, ...]
    paths: GatewayPaths
    live_queue_limit: int = 256
    log_level: str = "info"
    console: ConsoleSettings = ConsoleSettings()
    timestamps: TimestampSettings = TimestampSettings()
    retention_days: int = 365
    """Footage older than this (and not on legal hold) may be deleted by a custodian."""
    database_url: str = ""
    """``[database] url``: a ``postgresql://`` URL; empty, the SQLite file in the data
    directory."""
    vault: S3VaultConfig | None = None
    """``[vault]``: an S3 bucket; None, the vault directory in the data directory."""
    monitoring: MonitoringSettings = MonitoringSettings()
    limits: IntakeLimits = IntakeLimits()

    @classmethod
    def load(cls, data_root: Path, path: Path | None = None) -> GatewayConfig:
        """Read ``path`` (default ``<data_root>/gateway.toml``; that one may be absent)."""
        data_root = Path(data_root).absolute()
        explicit = path is not None
        path = Path(path) if path is not None else data_root / CONFIG_FILE
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            if explicit:
                raise GatewayConfigError(f"configuration file {path} does not exist") from None
            raw = {}
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise GatewayConfigError(f"configuration file {path} cannot be read: {error}") from None
        try:
            return cls.from_mapping(data_root, raw)
        except GatewayConfigError as error:
            raise GatewayConfigError(f"{path}: {error}") from None

    @classmethod
    def from_mapping(cls, data_root: Path, raw: dict[str, Any]) -> GatewayConfig:
        """Build a configuration from parsed TOML; ``data_root`` anchors relative paths."""
        root = Path(data_root).absolute()
        tables = _Tables(root, dict(raw))
        broker = tables.table("broker")
        paths = tables.table("paths")
        live = tables.table("live")
        log = tables.table("log")
        console = tables.table("console")
        stamps = tables.table("timestamps")
        retention = tables.table("retention")
        database = tables.table("database")
        vault = tables.table("vault")
        monitoring = tables.table("monitoring")
        limits = tuple(tables.table(name) for name in ("quarantine", "reserve", "cutoff"))
        hooks = tables.array("webhook")
        tables.finish()
        config = cls(
            data_root=root,
            broker=_broker(broker, root),
            webhooks=tuple(_webhook(item, index, root) for index, item in enumerate(hooks)),
            paths=GatewayPaths(
                broker_dir=paths.path("broker_dir", root / "broker"),
                undelivered_file=paths.path(
                    "undelivered_file", root / "webhooks" / "undelivered.jsonl"
                ),
            ),
            live_queue_limit=live.integer("queue_limit", 256, 1, 1_000_000),
            log_level=log.choice("level", "info", LOG_LEVELS),
            console=_console(console),
            timestamps=_timestamps(stamps),
            retention_days=retention.integer("days", 365, 1, 36500),
            database_url=_database_url(database),
            vault=_vault(vault),
            monitoring=_monitoring(monitoring),
            limits=_limits(*limits),
        )
        for table in (
            broker, paths, live, log, console, stamps, retention, database, vault, monitoring,
            *limits,
        ):
            table.finish()
        urls = [hook.url for hook in config.webhooks]
        if len(set(urls)) != len(urls):
            raise GatewayConfigError("a [[webhook]] url is listed twice: list each URL once")
        return config


def _database_url(table: _Table) -> str:
    url = table.text("url", "")
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise GatewayConfigError(
            f"database.url must be a postgresql:// URL (or absent for SQLite), not {parts.scheme!r}"
        )
    if parts.password is not None or "password=" in parts.query:
        raise GatewayConfigError(
            "database.url must not hold a password: name a file only the gateway can read"
            " with ?passfile=/path (PostgreSQL's own password file)"
        )
    return url


def _vault(table: _Table) -> S3VaultConfig | None:
    url = table.text("url", "")
    if not url:
        return None
    parts = urlsplit(url)
    bucket = parts.netloc
    if parts.scheme != "s3" or not bucket or parts.path not in ("", "/"):
        raise GatewayConfigError(f"vault.url = {url!r} must be s3://bucket (or absent)")
    endpoint = table.text("endpoint", "")
    if not endpoint.startswith(("https://", "http://")):
        raise GatewayConfigError("vault.endpoint must be the http(s):// URL of the S3 API")
    credentials = table.optional_path("credentials_file")
    if credentials is None:
        raise GatewayConfigError("vault.credentials_file is required with vault.url")
    return S3VaultConfig(
        bucket=bucket,
        endpoint=endpoint,
        credentials_file=credentials,
        region=table.text("region", "us-east-1"),
        ca_file=table.optional_path("ca_file"),
    )


def _limits(quarantine: _Table, reserve: _Table, cutoff: _Table) -> IntakeLimits:
    badge_bytes = quarantine.integer("badge_bytes", 64 * MIB, 0, 2**50)
    badge_entries = quarantine.integer("badge_entries", 1000, 0, 10**9)
    kept = QuarantineSettings(
        badge_bytes=badge_bytes,
        badge_entries=badge_entries,
        total_bytes=quarantine.integer("total_bytes", 512 * MIB, badge_bytes, 2**50),
        total_entries=quarantine.integer("total_entries", 20_000, badge_entries, 10**9),
        log_bytes=quarantine.integer("log_bytes", 8 * MIB, 4096, 2**40),
    )
    return IntakeLimits(
        quarantine=kept,
        reserve=ReserveSettings(
            bytes=reserve.integer("bytes", 2 * GIB, 0, 2**60),
            percent=reserve.number("percent", 5.0, 0.0, 50.0),
        ),
        cutoff=CutoffSettings(
            refusals=cutoff.integer("refusals", 100, 1, 100_000),
            window_seconds=cutoff.number("window_seconds", 60.0, 1.0, 86_400.0),
        ),
    )


def _timestamps(table: _Table) -> TimestampSettings:
    url = table.text("tsa_url", "")
    ca_file = table.optional_path("tsa_ca_file")
    if url and not url.startswith(("http://", "https://")):
        raise GatewayConfigError("timestamps.tsa_url must be an http:// or https:// URL")
    if url and ca_file is None:
        raise GatewayConfigError(
            "timestamps.tsa_ca_file is required with timestamps.tsa_url: the CA certificate "
            "the external TSA's certificate chains to"
        )
    return TimestampSettings(url, ca_file)


def _broker(table: _Table, root: Path) -> BrokerConnection:
    username = table.text("username", GATEWAY_ACCOUNT)
    try:
        validate_badge_id(username)
    except InvalidIdentifierError as error:
        raise GatewayConfigError(f"broker.username: {error}") from None
    group = table.text("shared_group", "")
    if group and not group.replace("-", "").replace("_", "").isalnum():
        raise GatewayConfigError(
            f"broker.shared_group = {group!r} must be letters, digits, '-' or '_'"
        )
    host = table.text("host", "localhost")
    if not host or any(character.isspace() for character in host):
        raise GatewayConfigError(f"broker.host = {host!r} is not a host name or address")
    return BrokerConnection(
        host=host,
        port=table.integer("port", 8883, 1, 65535),
        tls=table.boolean("tls", True),
        ca_file=table.path("ca_file", root / "ca" / "ca.crt"),
        username=username,
        password_file=table.path("password_file", root / "keys" / GATEWAY_PASSWORD_FILE),
        shared_group=group or None,
    )


def _monitoring(table: _Table) -> MonitoringSettings:
    host = table.text("host", "127.0.0.1")
    if not host or any(character.isspace() for character in host):
        raise GatewayConfigError(f"monitoring.host = {host!r} is not a host name or address")
    return MonitoringSettings(
        enabled=table.boolean("enabled", True),
        host=host,
        port=table.integer("port", 9180, 1, 65535),
        disk_min_free_mb=table.integer("disk_min_free_mb", 1024, 0, 10**9),
        checkpoint_max_age_s=table.integer("checkpoint_max_age_s", 300, 60, 7 * 86_400),
    )


def _console(table: _Table) -> ConsoleSettings:
    host = table.text("host", "127.0.0.1")
    if not host or any(character.isspace() for character in host):
        raise GatewayConfigError(f"console.host = {host!r} is not a host name or address")
    return ConsoleSettings(
        enabled=table.boolean("enabled", True),
        host=host,
        port=table.integer("port", 8443, 1, 65535),
        tls=table.boolean("tls", True),
        hostnames=table.texts("hostnames"),
        ips=table.texts("ips"),
        session_idle_minutes=table.integer("session_idle_minutes", 30, 1, 24 * 60),
        session_max_hours=table.integer("session_max_hours", 12, 1, 7 * 24),
        custodian_passphrase_file=table.optional_path("custodian_passphrase_file"),
        low_battery_percent=table.integer("low_battery_percent", 20, 0, 100),
        limits=_console_limits(table),
    )


def _console_limits(table: _Table) -> ConsoleLimits:
    return ConsoleLimits(
        max_connections=table.integer("max_connections", 512, 2, 100_000),
        max_connections_per_address=table.integer("max_connections_per_address", 32, 1, 100_000),
        header_timeout_seconds=table.number("header_timeout_seconds", 10.0, 0.1, 300),
        idle_timeout_seconds=table.integer("idle_timeout_seconds", 5, 1, 3600),
        live_poll_ms=table.integer("live_poll_ms", 20, 1, 10_000),
    )


def _webhook(raw: object, index: int, root: Path) -> WebhookSettings:
    if not isinstance(raw, dict):
        raise GatewayConfigError(f"webhook[{index}] must be a table")
    table = _Table(f"webhook[{index}]", raw, root)
    url = table.text("url", "")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise GatewayConfigError(f"webhook[{index}].url = {url!r} must be an http(s) URL")
    if "secret_file" not in raw:
        raise GatewayConfigError(f"webhook[{index}].secret_file is required")
    retry_min = table.number("retry_min_seconds", 0.5, 0.01, 3600)
    settings = WebhookSettings(
        url=url,
        secret_file=table.path("secret_file", root),
        timeout_seconds=table.number("timeout_seconds", 5.0, 0.1, 300),
        retry_min_seconds=retry_min,
        retry_max_seconds=table.number("retry_max_seconds", 30.0, retry_min, 3600),
        give_up_seconds=table.number("give_up_seconds", 600.0, 0.1, 7 * 86_400),
        queue_limit=table.integer("queue_limit", 1000, 1, 1_000_000),
        ca_file=table.optional_path("ca_file"),
    )
    table.finish()
    return settings


class _Table:
    """One TOML table whose keys are taken one by one; ``finish`` refuses what is left."""

    def __init__(self, name: str, raw: dict[str, Any], root: Path) -> None:
        self.name = name
        self.raw = dict(raw)
        self.root = root

    def _take(self, key: str) -> object:
        return self.raw.pop(key, None)

    def _where(self, key: str) -> str:
        return f"{self.name}.{key}"

    def text(self, key: str, default: str) -> str:
        value = self._take(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise GatewayConfigError(f"{self._where(key)} must be a string")
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        value = self._take(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise GatewayConfigError(f"{self._where(key)} must be a list of strings")
        return tuple(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._take(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise GatewayConfigError(f"{self._where(key)} must be true or false")
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self._take(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise GatewayConfigError(f"{self._where(key)} must be a whole number")
        if not low <= value <= high:
            raise GatewayConfigError(f"{self._where(key)} = {value} is not in {low}..{high}")
        return value

    def number(self, key: str, default: float, low: float, high: float) -> float:
        value = self._take(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise GatewayConfigError(f"{self._where(key)} must be a number")
        if not low <= value <= high:
            raise GatewayConfigError(f"{self._where(key)} = {value} is not in {low}..{high}")
        return float(value)

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(key, default)
        if value not in choices:
            raise GatewayConfigError(
                f"{self._where(key)} = {value!r} is not one of {', '.join(choices)}"
            )
        return value

    def path(self, key: str, default: Path) -> Path:
        found = self.optional_path(key)
        return default if found is None else found

    def optional_path(self, key: str) -> Path | None:
        value = self.text(key, "")
        if not value:
            return None
        if "\x00" in value:
            raise GatewayConfigError(f"{self._where(key)} contains a NUL character")
        return self.root / Path(value).expanduser()

    def finish(self) -> None:
        if self.raw:
            names = ", ".join(self._where(key) for key in sorted(self.raw))
            raise GatewayConfigError(f"unknown key(s) {names}")


class _Tables:
    """The top level of the file: known tables and the ``[[webhook]]`` array."""

    def __init__(self, root: Path, raw: dict[str, Any]) -> None:
        self.root = root
        self.raw = raw

    def table(self, name: str) -> _Table:
        value = self.raw.pop(name, {})
        if not isinstance(value, dict):
            raise GatewayConfigError(f"[{name}] must be a table")
        return _Table(name, value, self.root)

    def array(self, name: str) -> list[object]:
        value = self.raw.pop(name, [])
        if not isinstance(value, list):
            raise GatewayConfigError(f"[[{name}]] must be an array of tables (write [[{name}]])")
        return list(value)

    def finish(self) -> None:
        if self.raw:
            raise GatewayConfigError(f"unknown section(s) {sorted(self.raw)}")
