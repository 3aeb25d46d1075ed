"""The enrolment listener: the small HTTP endpoint a badge reaches while its code is valid.

It runs only while ``gateway enroll`` waits for its badge (or ``gateway enroll --serve``
for codes issued in the console), one request at a time, each body at most
``MAX_REQUEST_BYTES`` and each connection at most ``SOCKET_SECONDS`` idle. Plain HTTP is
enough because the exchange protects itself: the request proves the code without
revealing it and the answer is sealed under it (decision 1900).

``GET /enrol/v1/nonce`` gives a fresh nonce; ``POST /enrol/v1/request`` takes a signed
request and answers 200 with the sealed answer, or 4xx with the reason as plain text.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer

from evidence.errors import EvidenceError
from gateway.datadir import GatewayDataDir
from gateway.enrolment.enrolment import Acceptance, accept_request
from gateway.enrolment.nonces import NonceBook
from gateway.errors import GatewayError

NONCE_PATH = "/enrol/v1/nonce"
REQUEST_PATH = "/enrol/v1/request"
MAX_REQUEST_BYTES = 8192
SOCKET_SECONDS = 10.0
DEFAULT_PORT = 8444

log = logging.getLogger(__name__)


class EnrolmentListener:
    """Serves enrolment requests for ``data_dir`` on ``host``:``port`` (0 picks a free port)."""

    def __init__(
        self,
        data_dir: GatewayDataDir,
        host: str,
        port: int,
        on_enrolled: Callable[[Acceptance], None] = lambda _: None,
    ) -> None:
        """Bind the listening socket now (OSError if the address is taken)."""
        self.data_dir = data_dir
        self.nonces = NonceBook()
        self.on_enrolled = on_enrolled
        self._server = HTTPServer((host, port), _handler_for(self))
        self._server.timeout = 0.25

    @property
    def url(self) -> str:
        """The base URL badges use (with the bound address)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def serve_until(self, done: Callable[[], bool], deadline: float | None = None) -> None:
        """Handle requests until ``done()`` or the monotonic ``deadline`` passes."""
        while not done() and (deadline is None or time.monotonic() < deadline):
            self._server.handle_request()

    def close(self) -> None:
        """Stop listening."""
        self._server.server_close()

    def handle(self, body: bytes) -> tuple[HTTPStatus, bytes]:
        """Answer one enrolment request's body: the status and the response body."""
        try:
            acceptance = accept_request(self.data_dir, body, self.nonces)
        except (GatewayError, EvidenceError) as error:
            log.warning("enrolment refused: %s", error)
            return HTTPStatus.FORBIDDEN, str(error).encode()
        log.info(
            "enrolled badge %s (key generation %d, %s), key fingerprint %s, by %s",
            acceptance.enrolled.badge_id,
            acceptance.enrolled.key_generation,
            acceptance.enrolled.key_origin,
            acceptance.fingerprint,
            acceptance.operator,
        )
        self.on_enrolled(acceptance)
        return HTTPStatus.OK, acceptance.answer


def _handler_for(listener: EnrolmentListener) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        timeout = SOCKET_SECONDS
        server_version = "medbadge-enrolment"
        sys_version = ""

        def do_GET(self) -> None:
            if self.path != NONCE_PATH:
                self._reply(HTTPStatus.NOT_FOUND, b"no such enrolment endpoint")
                return
            self._reply(HTTPStatus.OK, listener.nonces.issue())

        def do_POST(self) -> None:
            if self.path != REQUEST_PATH:
                self._reply(HTTPStatus.NOT_FOUND, b"no such enrolment endpoint")
                return
            length = self.headers.get("content-length", "")
            if not length.isdigit() or int(length) > MAX_REQUEST_BYTES:
                self._reply(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    f"an enrolment request has a length of at most {MAX_REQUEST_BYTES} "
                    "bytes".encode(),
                )
                return
            status, body = listener.handle(self.rfile.read(int(length)))
            self._reply(status, body)

        def _reply(self, status: HTTPStatus, body: bytes) -> None:
            self.send_response(status)
            kind = "application/octet-stream" if status is HTTPStatus.OK else "text/plain"
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(body)))
            self.send_header("connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            log.debug("enrolment listener: " + format, *args)

    return _Handler
