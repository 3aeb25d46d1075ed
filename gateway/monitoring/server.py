"""The monitoring listener: ``GET /healthz`` and ``GET /metrics`` over plain HTTP.

It binds 127.0.0.1 by default (``[monitoring] host``) and answers one request at a time on
one thread: a scraper and a load balancer's probe are its only callers, and whoever reaches
it can hold at most that one thread, for at most ``REQUEST_TIMEOUT_S``. It reads nothing
from a request but its first line and headers (bounded by the standard library) and serves
nothing but these two documents; no footage, no names beyond badge ids.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gateway.config import MonitoringSettings
from gateway.errors import GatewayError, MonitoringError
from gateway.monitoring.health import Check, HealthReport, assess
from gateway.monitoring.sample import Sampler

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 5.0
"""A client that sends nothing for this long is dropped."""
_JSON = "application/json"


class MonitoringServer:
    """Serves ``/healthz`` and ``/metrics`` on its own thread."""

    def __init__(
        self,
        settings: MonitoringSettings,
        sampler: Sampler,
        registry: CollectorRegistry,
    ) -> None:
        """Bind the listener now (MonitoringError if the address cannot be had)."""
        self.settings = settings
        self.sampler = sampler
        self.registry = registry
        try:
            self._server = _Server((settings.host, settings.port), _handler(self))
        except OSError as error:
            raise MonitoringError(
                f"the monitoring listener cannot bind {settings.host}:{settings.port}: {error}; "
                "set [monitoring] port (or enabled = false) in gateway.toml"
            ) from None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The host and port it listens on."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="monitoring", daemon=True
        )
        self._thread.start()
        host, port = self.address
        log.info("health and metrics at http://%s:%d/healthz and /metrics", host, port)

    def stop(self) -> None:
        """Stop serving and close the listener and the sampler's connection."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
        self.sampler.close()

    def health(self) -> HealthReport:
        """The health report now; a sample that cannot be read is itself a failed check."""
        try:
            return assess(self.sampler.sample(), self.settings)
        except (GatewayError, OSError) as error:
            return HealthReport(
                (Check("storage", False, f"cannot read the gateway's state: {error}"),)
            )

    def metrics(self) -> bytes:
        """The Prometheus text exposition of every figure."""
        return generate_latest(self.registry)


class _Server(HTTPServer):
    """An HTTPServer that takes IPv6 addresses too, and asks no name server for its own
    name as it binds (a slow resolver must not delay the gateway's start)."""

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


def _handler(server: MonitoringServer) -> type[BaseHTTPRequestHandler]:
    """The request handler class bound to ``server``."""

    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT_S
        server_version = "medbadge-gateway"
        sys_version = ""

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                report = server.health()
                status = HTTPStatus.OK if report.ok else HTTPStatus.SERVICE_UNAVAILABLE
                self._send(status, _JSON, report.to_json())
            elif path == "/metrics":
                try:
                    body = server.metrics()
                except (GatewayError, OSError) as error:
                    log.warning("metrics could not be read: %s", error)
                    self._send(
                        HTTPStatus.SERVICE_UNAVAILABLE,
                        "text/plain; charset=utf-8",
                        b"the gateway's state cannot be read; see /healthz\n",
                    )
                    return
                self._send(HTTPStatus.OK, CONTENT_TYPE_LATEST, body)
            else:
                self._send(
                    HTTPStatus.NOT_FOUND,
                    "text/plain; charset=utf-8",
                    b"only /healthz and /metrics are served here\n",
                )

        def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("monitoring %s: " + format, self.address_string(), *args)

    return Handler
