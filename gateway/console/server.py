"""Serving the console: uvicorn on its own thread, HTTPS from the evidence CA, guarded.

``ConsoleServer`` opens its own storage, builds the application and runs uvicorn on a
background thread of the ``gateway console`` process (``gateway.console.daemon``); ``start``
returns once the socket listens and raises ConsoleError when it cannot (a taken port, an
unreadable key). Every connection passes the connection guard (caps per address and in all,
a deadline for the handshake and the first request: ``gateway.console.guard``) before
uvicorn's HTTP protocol sees it. Under TLS the server certificate is issued by the hospital
evidence CA into ``DATA/console/`` and issued again when the names it must carry change or
it nears its end, so browsers that trust the evidence CA trust the console.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uvicorn
from cryptography import x509

from gateway.alerts.live import AlertChannel
from gateway.config import ConsoleSettings, GatewayConfig
from gateway.console.app import create_app
from gateway.console.core import ConsoleOptions
from gateway.console.guard import ConnectionGuard
from gateway.datadir import GatewayDataDir
from gateway.errors import ConsoleError, GatewayError
from gateway.pki.ca import CA_CERT_FILE, write_certificate, write_private_key
from gateway.storage import Storage

log = logging.getLogger(__name__)

CONSOLE_DIR = "console"
CERT_FILE = "console.crt"
KEY_FILE = "console.key"
RENEW_BEFORE = timedelta(days=30)
START_TIMEOUT_S = 10.0
MAX_HEADER_BYTES = 16 * 1024
"""The most a request's line and headers may take (h11 refuses more with 431)."""
STOP_TIMEOUT_S = 5.0
_LOOPBACK_NAMES = ("localhost",)
_LOOPBACK_IPS = ("127.0.0.1",)


@dataclass(frozen=True)
class ServerCertificate:
    """Where the console's TLS key and certificate are."""

    key_file: Path
    certificate_file: Path
    ca_file: Path
    """The evidence CA certificate browsers must trust."""


def server_certificate(data_dir: GatewayDataDir, settings: ConsoleSettings) -> ServerCertificate:
    """The console's TLS certificate from the evidence CA, issued now if missing or stale."""
    directory = data_dir.root / CONSOLE_DIR
    directory.mkdir(mode=0o700, exist_ok=True)
    key_file, certificate_file = directory / KEY_FILE, directory / CERT_FILE
    hostnames = list(dict.fromkeys([*_LOOPBACK_NAMES, *settings.hostnames]))
    ips = list(dict.fromkeys([*_LOOPBACK_IPS, *settings.ips]))
    if not _still_good(certificate_file, key_file, hostnames, ips):
        key, certificate = data_dir.evidence_ca().issue_server_certificate(hostnames, ips)
        write_private_key(key_file, key)
        write_certificate(certificate_file, certificate)
        log.info("issued the console's TLS certificate for %s", ", ".join(hostnames + ips))
    return ServerCertificate(key_file, certificate_file, data_dir.ca_dir / CA_CERT_FILE)


def tls_context(files: ServerCertificate) -> ssl.SSLContext:
    """The server side of TLS with the console's key and certificate (TLS 1.2 at least)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(files.certificate_file), str(files.key_file))
    except (OSError, ssl.SSLError) as error:
        raise ConsoleError(
            f"cannot load the console's TLS key and certificate from {files.key_file.parent}: "
            f"{error}"
        ) from None
    return context


def _still_good(
    certificate_file: Path, key_file: Path, hostnames: list[str], ips: list[str]
) -> bool:
    """True when the certificate names exactly these hosts and is far from its end."""
    if not certificate_file.is_file() or not key_file.is_file():
        return False
    try:
        certificate = x509.load_pem_x509_certificate(certificate_file.read_bytes())
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound, OSError):
        return False
    dns = sorted(names.get_values_for_type(x509.DNSName))
    addresses = sorted(str(address) for address in names.get_values_for_type(x509.IPAddress))
    fresh = certificate.not_valid_after_utc - datetime.now(UTC) > RENEW_BEFORE
    return fresh and dns == sorted(hostnames) and addresses == sorted(ips)


def console_options(config: GatewayConfig) -> ConsoleOptions:
    """The application's options from the gateway configuration."""
    settings = config.console
    passphrase = None
    if settings.custodian_passphrase_file is not None:
        try:
            passphrase = settings.custodian_passphrase_file.read_bytes().rstrip(b"\r\n")
        except OSError as error:
            raise ConsoleError(
                f"cannot read console.custodian_passphrase_file "
                f"{settings.custodian_passphrase_file}: {error.strerror}"
            ) from None
    return ConsoleOptions(
        secure_cookies=settings.tls,
        session_idle_s=settings.session_idle_minutes * 60.0,
        session_max_s=settings.session_max_hours * 3600.0,
        custodian_passphrase=passphrase,
        broker_host=settings.hostnames[0] if settings.hostnames else config.broker.host,
        broker_port=config.broker.port,
        retention_days=config.retention_days,
        low_battery_percent=settings.low_battery_percent,
        reserve=config.limits.reserve,
    )


class ConsoleServer:
    """The console's HTTP(S) server on a background thread."""

    def __init__(
        self, data_dir: GatewayDataDir, config: GatewayConfig, channel: AlertChannel
    ) -> None:
        """Prepare the server (``start`` opens the database and listens)."""
        self.data_dir = data_dir
        self.config = config
        self.channel = channel
        self._server: uvicorn.Server | None = None
        self.guard: ConnectionGuard | None = None
        """The connection guard of the running server (its counts say what it refused)."""
        self._thread: threading.Thread | None = None
        self._storage: Storage | None = None

    @property
    def url(self) -> str:
        """Where browsers reach the console."""
        settings = self.config.console
        scheme = "https" if settings.tls else "http"
        host = settings.hostnames[0] if settings.hostnames else settings.host
        if host in ("0.0.0.0", "::"):  # noqa: S104 - naming the address, not binding it
            host = "localhost"
        return f"{scheme}://{host}:{settings.port}/"

    @property
    def alive(self) -> bool:
        """True while the server's thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Open the database, build the app, listen; ConsoleError if it does not come up."""
        settings = self.config.console
        options = console_options(self.config)
        storage = self.data_dir.storage()
        try:
            app = create_app(self.data_dir, storage, self.channel, options)
            context = None
            if settings.tls:
                context = tls_context(server_certificate(self.data_dir, settings))
        except GatewayError:
            storage.close()
            raise
        limits = settings.limits
        self.guard = ConnectionGuard(limits, context)
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=settings.host,
                port=settings.port,
                http=self.guard.protocol_class(),
                ws="none",
                log_level="warning",
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=2,
                timeout_keep_alive=limits.idle_timeout_seconds,
                h11_max_incomplete_event_size=MAX_HEADER_BYTES,
                # the guard keeps connections within max_connections; this only backs it up
                limit_concurrency=limits.max_connections + 1,
                backlog=min(limits.max_connections, 2048),
            )
        )
        thread = threading.Thread(
            target=_serve_until_stopped, args=(server,), name="console-http", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                storage.close()
                raise ConsoleError(
                    f"the console could not listen on {settings.host}:{settings.port} (is the "
                    "port taken? see the log above); set [console] port or enabled = false"
                )
            time.sleep(0.02)
        self._server, self._thread, self._storage = server, thread, storage
        log.info("console serving at %s", self.url)

    def stop(self) -> None:
        """Stop serving (open streams end when the live channel closes) and close the database."""
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(STOP_TIMEOUT_S + 3)
        self._server = self._thread = None
        if self._storage is not None:
            self._storage.close()
            self._storage = None


def _serve_until_stopped(server: uvicorn.Server) -> None:
    """Run ``server`` on this thread; a failed start (uvicorn exits on a taken port) ends
    the thread quietly, for ``ConsoleServer.start`` to report."""
    try:
        server.run()
    except SystemExit as stopped:
        log.debug("console server exited with %s", stopped.code)
