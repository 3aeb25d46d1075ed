"""An HTTP front for the gateway's time-stamping authority (RFC 3161 section 3.4)."""

from __future__ import annotations

import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from gateway.errors import TimestampAuthorityError
from gateway.timestamping.authority import TimeStampAuthority
from gateway.timestamping.request import MAX_REQUEST_SIZE, QUERY_TYPE, REPLY_TYPE

_log = logging.getLogger(__name__)


class TsaHttpServer:
    """Serve a ``TimeStampAuthority`` over HTTP (RFC 3161 section 3.4) from a background thread.

    POST ``application/timestamp-query`` to any path; the answer is
    ``application/timestamp-reply``. Listens on IPv4. Use as a context manager, or call
    ``start`` and ``close``.
    """

    def __init__(self, tsa: TimeStampAuthority, host: str = "127.0.0.1", port: int = 0) -> None:
        """Bind ``host:port`` (port 0 picks a free one); serving begins with ``start``."""
        try:
            self._httpd = _TsaHttpd((host, port), tsa)
        except OSError as exc:
            raise TimestampAuthorityError(
                f"cannot listen for time-stamp requests on {host}:{port}: {exc}"
            ) from exc
        # A short poll interval lets close() return promptly.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.1,), name="tsa-http", daemon=True
        )

    @property
    def url(self) -> str:
        """The URL clients POST their requests to."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> TsaHttpServer:
        """Start answering requests in a daemon thread."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop answering and release the port."""
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()

    def __enter__(self) -> TsaHttpServer:
        """Start the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.close()


class _TsaHttpd(ThreadingHTTPServer):
    """A threading HTTP server that holds the TSA its handlers answer with."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], tsa: TimeStampAuthority) -> None:
        self.tsa = tsa
        super().__init__(address, _TsaRequestHandler)


class _TsaRequestHandler(BaseHTTPRequestHandler):
    """Answers POSTed time-stamp queries; anything else gets the matching HTTP error."""

    server: _TsaHttpd

    def do_POST(self) -> None:
        """Read one ``TimeStampReq`` and send the TSA's ``TimeStampResp``."""
        if self.headers.get_content_type() != QUERY_TYPE:
            self.send_error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"send {QUERY_TYPE}")
            return
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            self.send_error(HTTPStatus.LENGTH_REQUIRED)
            return
        try:
            length = int(length_header)
        except ValueError:
            length = -1
        if length < 0:
            self.send_error(HTTPStatus.BAD_REQUEST, "invalid Content-Length")
            return
        if length > MAX_REQUEST_SIZE:
            self.send_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            return
        body = self.rfile.read(length)
        if len(body) != length:
            self.send_error(HTTPStatus.BAD_REQUEST, "request body shorter than Content-Length")
            return
        reply = self.server.tsa.respond(body)
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", REPLY_TYPE)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        """Log requests through ``logging`` rather than to stderr."""
        _log.debug("%s %s", self.address_string(), format % args)
