"""The mosquitto broker's configuration: accounts and ACL (dynamic security), TLS, limits."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import os
import pwd
import re
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from evidence.durable import write_durably
from evidence.errors import InvalidIdentifierError
from evidence.identifiers import validate_badge_id
from gateway.broker.dynsec import DYNSEC_FILE, dynsec_document, find_plugin
from gateway.errors import BrokerConfigError
from gateway.pki.ca import EvidenceCA, write_certificate, write_private_key

CONFIG_FILE: Final = "mosquitto.conf"
_OLD_FILES: Final = ("passwd", "acl")
"""What broker-config wrote before the dynamic security plugin held the accounts."""
LOG_FILE: Final = "mosquitto.log"
CA_CERT_FILE: Final = "ca.crt"
SERVER_CERT_FILE: Final = "server.crt"
SERVER_KEY_FILE: Final = "server.key"

# mosquitto 2.0's own choices for "$7$" hashes (password_mosq.h, mosquitto_passwd.c):
# PBKDF2-HMAC-SHA512, a 12-byte random salt, a 64-byte result, 101 iterations by default,
# salt and hash in standard base64 with padding. The broker refuses any other salt length.
HASH_TYPE_PBKDF2_SHA512: Final = 7
SALT_BYTES: Final = 12
DEFAULT_ITERATIONS: Final = 101
_HASH_FORMAT = re.compile(r"\$7\$[1-9][0-9]{0,9}\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==")

# A whole MQTT packet: 1 MiB of payload (four times the default 256 KiB uplink chunk) plus
# room for topic, properties and framing. Anything bigger is refused by the broker.
DEFAULT_MAX_PACKET_BYTES: Final = 1024 * 1024 + 4096
_MQTT_MAX_PACKET_BYTES = 268_435_455
_USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_LISTENER = re.compile(r"listener\s+([0-9]{1,5})(?:\s+(\S+))?")
_PROBE_S = 0.5

Role = Literal["badge", "gateway"]
BadgeAuth = Literal["password", "certificate"]
"""How clients prove who they are on the TLS listener (decision 1902)."""

# A listener option in mosquitto 2.0 (before any "listener" line it would open a default
# listener on port 1883), so it is repeated in each listener block.
_CLIENT_ID_LINES = (
    "# The broker replaces each client id with the login name: one badge cannot take",
    "# over another's session (or the gateway's) by connecting with its client id.",
    "use_username_as_clientid true",
)


def new_broker_password() -> str:
    """Return a fresh random broker password (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(32)


def hash_broker_password(
    password: str, *, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None
) -> str:
    """Return ``password`` hashed in mosquitto 2.0's password-file format.

    The result is ``$7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512>``, the same
    string ``mosquitto_passwd`` writes. ``salt`` (12 bytes) is drawn at random unless given.
    The broker re-derives the hash on every CONNECT, so the iteration count is kept at
    mosquitto's default: our passwords carry 256 bits (random or HMAC-derived), which no
    iteration count makes easier or harder to guess.
    """
    if not isinstance(password, str) or not password or "\x00" in password:
        raise BrokerConfigError(
            "broker password must be a non-empty string without NUL characters "
            "(mosquitto compares passwords as C strings)"
        )
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise BrokerConfigError(f"hash iterations {iterations!r} must be a positive integer")
    if salt is None:
        salt = secrets.token_bytes(SALT_BYTES)
    if not isinstance(salt, bytes) or len(salt) != SALT_BYTES:
        raise BrokerConfigError(f"password salt must be exactly {SALT_BYTES} bytes")
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    salt64 = base64.b64encode(salt).decode("ascii")
    hash64 = base64.b64encode(digest).decode("ascii")
    return f"${HASH_TYPE_PBKDF2_SHA512}${iterations}${salt64}${hash64}"


@dataclass(frozen=True)
class BrokerAccount:
    """One broker login: a badge (username = badge id) or a gateway process."""

    username: str
    password_hash: str
    role: Role
    disabled: bool = False
    """Cut off: the broker refuses its login until an administrator lifts it."""

    def __post_init__(self) -> None:
        """Refuse names and hashes that could break or widen the generated files."""
        # Gateway names follow the badge-id pattern too: it keeps every username safe in
        # the password file, in ACL lines and as an MQTT client id.
        try:
            validate_badge_id(self.username)
        except InvalidIdentifierError as exc:
            raise BrokerConfigError(f"broker account name is not allowed: {exc}") from exc
        if self.role not in ("badge", "gateway"):
            raise BrokerConfigError(
                f"broker account {self.username!r} has role {self.role!r}: use 'badge' or 'gateway'"
            )
        if not isinstance(self.password_hash, str) or not _HASH_FORMAT.fullmatch(
            self.password_hash
        ):
            raise BrokerConfigError(
                f"broker account {self.username!r} has a password hash that is not in "
                "mosquitto's $7$ format: make it with hash_broker_password()"
            )


@dataclass(frozen=True)
class BrokerSettings:
    """Where the broker listens and how much it accepts and keeps."""

    tls_port: int
    plain_port: int | None = None
    """A plain-MQTT listener for development; it is bound to 127.0.0.1 only."""
    bind_tls: str = "0.0.0.0"  # noqa: S104 - badges reach the TLS listener over the network
    persistence_dir: Path | None = None
    """Where mosquitto keeps sessions and queued messages; ``<out_dir>/persistence`` if None."""
    max_packet_bytes: int = DEFAULT_MAX_PACKET_BYTES
    max_inflight_messages: int = 64
    max_queued_messages: int = 10_000
    max_queued_bytes: int = 256 * 1024 * 1024
    autosave_interval_s: int = 60
    run_as_user: str = "mosquitto"
    """The account mosquitto drops to when started as root; it must own the files we write."""
    badge_auth: BadgeAuth = "password"
    """``certificate``: every client on the TLS listener shows a certificate from the
    evidence CA and is known by its common name; badge passwords are then written nowhere."""
    dynsec_plugin: Path | None = None
    """mosquitto's dynamic security plugin; None: where Debian's mosquitto installs it."""

    def __post_init__(self) -> None:
        """Refuse values mosquitto would reject or that would widen what the broker exposes."""
        ports = [("tls_port", self.tls_port)]
        if self.plain_port is not None:
            ports.append(("plain_port", self.plain_port))
        for name, port in ports:
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                raise BrokerConfigError(f"broker setting {name}={port!r} is not a TCP port")
        if self.plain_port == self.tls_port:
            raise BrokerConfigError(
                f"broker plain_port and tls_port are both {self.tls_port}: use two ports"
            )
        if not _is_ip_address(self.bind_tls):
            raise BrokerConfigError(
                f"broker setting bind_tls={self.bind_tls!r} is not an IP address"
            )
        _check_range("max_packet_bytes", self.max_packet_bytes, 1024, _MQTT_MAX_PACKET_BYTES)
        _check_range("max_inflight_messages", self.max_inflight_messages, 1, 65535)
        _check_range("max_queued_messages", self.max_queued_messages, 1, 10**9)
        _check_range("max_queued_bytes", self.max_queued_bytes, 1, 2**62)
        _check_range("autosave_interval_s", self.autosave_interval_s, 1, 86_400)
        if self.badge_auth not in ("password", "certificate"):
            raise BrokerConfigError(
                f"broker setting badge_auth={self.badge_auth!r}: use 'password' or 'certificate'"
            )
        if not isinstance(self.run_as_user, str) or not _USER_NAME.fullmatch(self.run_as_user):
            raise BrokerConfigError(
                f"broker setting run_as_user={self.run_as_user!r} is not a system user name"
            )


def write_broker_config(
    out_dir: Path,
    accounts: Sequence[BrokerAccount],
    settings: BrokerSettings,
    ca: EvidenceCA,
    *,
    server_hostnames: Sequence[str],
    server_ips: Sequence[str],
    reset_accounts: bool = False,
) -> Path:
    """Write a complete mosquitto 2.0 configuration into ``out_dir``; return mosquitto.conf's path.

    Writes ``ca.crt``, a fresh ``server.crt``/``server.key`` issued by ``ca`` for the given
    names, and ``mosquitto.conf`` last, each atomically, so a broker (re)started at any
    moment sees either the old set or a complete new one. The dynamic security plugin's
    accounts and roles (``dynamic-security.json``, mode 0600) are written only when there
    are none yet, or with ``reset_accounts``: once the broker has run, the file is the
    plugin's own (it saves it on every command, over whatever is there) and the running
    gateway keeps the accounts in step with the registry (decision 1704). Resetting is for
    a stopped broker only: ``broker_listening`` tells whether one answers.
    """
    out_dir = Path(out_dir).absolute()
    _check_accounts(accounts)
    plugin = settings.dynsec_plugin or find_plugin()
    if not plugin.is_file():
        raise BrokerConfigError(f"mosquitto's dynamic security plugin {plugin} does not exist")
    persistence = Path(settings.persistence_dir or out_dir / "persistence").absolute()
    for path in (out_dir, persistence, plugin):
        _check_path(path)
    try:
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        persistence.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise BrokerConfigError(f"cannot create broker directory: {exc}") from exc

    server_key, server_cert = ca.issue_server_certificate(server_hostnames, server_ips)
    write_certificate(out_dir / CA_CERT_FILE, ca.certificate)
    write_certificate(out_dir / SERVER_CERT_FILE, server_cert)
    write_private_key(out_dir / SERVER_KEY_FILE, server_key)
    if reset_accounts or not (out_dir / DYNSEC_FILE).exists():
        rows = [(a.username, a.password_hash, a.role, a.disabled) for a in accounts]
        _write_text(out_dir / DYNSEC_FILE, dynsec_document(rows), mode=0o600)
    config_path = out_dir / CONFIG_FILE
    _write_text(config_path, _config_file(out_dir, persistence, settings, plugin), mode=0o644)
    for name in _OLD_FILES:
        (out_dir / name).unlink(missing_ok=True)
    _hand_to_broker_user(settings.run_as_user, out_dir, persistence)
    return config_path


def broker_listening(out_dir: Path, settings: BrokerSettings) -> list[int]:
    """The ports on which a broker answers now: those of ``settings`` and every listener of
    the ``mosquitto.conf`` already in ``out_dir`` (a running broker may use older ones)."""
    places = {(_reachable(settings.bind_tls), settings.tls_port)}
    if settings.plain_port is not None:
        places.add(("127.0.0.1", settings.plain_port))
    with contextlib.suppress(OSError, UnicodeDecodeError):
        for line in (Path(out_dir) / CONFIG_FILE).read_text().splitlines():
            match = _LISTENER.fullmatch(line.strip())
            if match:
                places.add((_reachable(match.group(2) or "0.0.0.0"), int(match.group(1))))  # noqa: S104
    answering = []
    for host, port in sorted(places):
        try:
            with socket.create_connection((host, port), timeout=_PROBE_S):
                answering.append(port)
        except OSError:
            continue
    return sorted(set(answering))


def refuse_while_running(out_dir: Path, settings: BrokerSettings) -> None:
    """BrokerConfigError if a broker answers (its accounts must not be reset under it)."""
    answering = broker_listening(out_dir, settings)
    if answering:
        ports = ", ".join(str(port) for port in answering)
        raise BrokerConfigError(
            f"a broker answers on port {ports}: stop it (systemctl stop mosquitto) before "
            "--reset-accounts, or it saves its own accounts over the new file at its next "
            "change; while it runs, 'gateway run' keeps its accounts in step by itself"
        )


def _reachable(address: str) -> str:
    """Where to look for a listener bound to ``address`` from this machine."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address, address)  # noqa: S104


def _config_file(out_dir: Path, persistence: Path, settings: BrokerSettings, plugin: Path) -> str:
    """Render mosquitto.conf; every option exists in mosquitto 2.0.11."""
    lines = [
        "# mosquitto configuration for the medbadge gateway, generated by",
        "# gateway.broker_config. Regenerate it rather than editing it by hand.",
        "",
        "# One set of security options for every listener, so the development listener",
        "# can never be less strict than the TLS one.",
        "per_listener_settings false",
        "allow_anonymous false",
        "# Accounts and access rules (docs/broker.md): one role per badge, confined to its",
        "# own badge/<id>/ and gateway/<id>/ subtrees; everything else is denied, $SYS too.",
        "# The gateway disables or deletes a badge here at once, through $CONTROL.",
        f"plugin {plugin}",
        f"plugin_opt_config_file {out_dir / DYNSEC_FILE}",
        "# Started as root, mosquitto drops to this account before reading the files above.",
        f"user {settings.run_as_user}",
        "",
        "# MQTT v5 clients learn this limit in CONNACK; a client sending a larger packet is",
        "# disconnected with reason 'Packet too large' and its message is never delivered.",
        f"max_packet_size {settings.max_packet_bytes}",
        f"max_inflight_messages {settings.max_inflight_messages}",
        "# Queues for offline QoS 1 sessions are bounded; what overflows is recovered end to",
        "# end, because a badge deletes nothing until the gateway's signed receipt arrives.",
        f"max_queued_messages {settings.max_queued_messages}",
        f"max_queued_bytes {settings.max_queued_bytes}",
        "# Alerts are small; do not let Nagle's algorithm hold them back.",
        "set_tcp_nodelay true",
        "",
        "persistence true",
        f"persistence_location {persistence}",
        f"autosave_interval {settings.autosave_interval_s}",
        "",
        "# Connection events and refusals are logged; passwords and payloads never are.",
        f"log_dest file {out_dir / LOG_FILE}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
        "log_timestamp true",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        "",
        "# Badges connect here: TLS 1.2 or newer, server certificate from the evidence CA,",
        "# badges authenticate with their username and password.",
        f"listener {settings.tls_port} {settings.bind_tls}",
        "protocol mqtt",
        f"cafile {out_dir / CA_CERT_FILE}",
        f"certfile {out_dir / SERVER_CERT_FILE}",
        f"keyfile {out_dir / SERVER_KEY_FILE}",
        "tls_version tlsv1.2",
        *_client_auth_lines(settings.badge_auth),
        *_CLIENT_ID_LINES,
    ]
    if settings.plain_port is not None:
        lines += [
            "",
            "# Development only: plain MQTT, reachable from this machine alone.",
            f"listener {settings.plain_port} 127.0.0.1",
            "protocol mqtt",
            *_CLIENT_ID_LINES,
        ]
    return "\n".join(lines) + "\n"


def _client_auth_lines(badge_auth: BadgeAuth) -> list[str]:
    if badge_auth == "password":
        return ["require_certificate false"]
    return [
        "# Every client shows a certificate the evidence CA issued from its own key; its",
        "# common name is its login, so no password is used here (decision 1902).",
        "require_certificate true",
        "use_identity_as_username true",
    ]


def _check_accounts(accounts: Sequence[BrokerAccount]) -> None:
    """Refuse a non-account entry or a login name used twice (a badge named like a gateway)."""
    seen: set[str] = set()
    for account in accounts:
        if not isinstance(account, BrokerAccount):
            raise BrokerConfigError(
                f"broker accounts must be BrokerAccount values, got {account!r}"
            )
        if account.username in seen:
            raise BrokerConfigError(
                f"broker account name {account.username!r} is used twice: every badge and "
                "gateway process needs its own login"
            )
        seen.add(account.username)


def _check_path(path: Path) -> None:
    """Refuse a path that would break a mosquitto.conf line."""
    if any(not character.isprintable() for character in str(path)):
        raise BrokerConfigError(f"broker path {str(path)!r} contains control characters")


def _check_range(name: str, value: int, low: int, high: int) -> None:
    """Refuse a setting that is not an integer in ``low..high``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BrokerConfigError(f"broker setting {name}={value!r} must be in {low}..{high}")


def _is_ip_address(value: object) -> bool:
    """Return True when ``value`` is an IPv4 or IPv6 address."""
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return isinstance(value, str)


def _write_text(path: Path, text: str, *, mode: int) -> None:
    """Write ``text`` atomically with ``mode``."""
    try:
        write_durably(path, text.encode("utf-8"), mode)
    except OSError as exc:
        raise BrokerConfigError(f"cannot write broker file {path}: {exc}") from exc


def _hand_to_broker_user(user: str, out_dir: Path, persistence: Path) -> None:
    """When run as root, give the broker's account its files (mosquitto reads them after
    dropping privileges, and writes its persistence and log files)."""
    if os.geteuid() != 0 or user == "root":
        return
    try:
        entry = pwd.getpwnam(user)
    except KeyError as exc:
        raise BrokerConfigError(
            f"broker user {user!r} does not exist on this system: create it or set run_as_user"
        ) from exc
    names = [CONFIG_FILE, DYNSEC_FILE, CA_CERT_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE]
    try:
        for path in [out_dir, persistence, *(out_dir / name for name in names)]:
            os.chown(path, entry.pw_uid, entry.pw_gid)
    except OSError as exc:
        raise BrokerConfigError(f"cannot hand broker files to user {user!r}: {exc}") from exc
