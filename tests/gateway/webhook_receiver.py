"""A real HTTP server on 127.0.0.1 that receives webhook POSTs, for tests.

It records every request, answers with scripted statuses (then 200), and can hold requests
unanswered (an endpoint that hangs) until released.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

WAIT_S = 15.0


@dataclass(frozen=True)
class ReceivedPost:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    """What the receiver answered."""


class WebhookReceiver:
    """An HTTP(S) server on a free loopback port that records POSTs."""

    def __init__(
        self, statuses: list[int] | None = None, *, tls: ssl.SSLContext | None = None
    ) -> None:
        """Answer the first requests with ``statuses`` (in order), every later one with 200."""
        self.statuses = list(statuses or [])
        self.posts: list[ReceivedPost] = []
        self.hold = threading.Event()
        self.hold.set()  # set = answer at once; clear it to make requests hang
        self.waiting = 0
        """Requests currently held unanswered."""
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                receiver._held(+1)
                receiver.hold.wait(WAIT_S * 4)
                receiver._held(-1)
                status = receiver._next_status()
                receiver._record(
                    ReceivedPost(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, body, status
                    )
                )
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}/hooks/alert"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        """Start serving."""
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        """Release held requests and stop serving."""
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, ready: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
        """Wait until ``ready()`` holds (checked whenever a request arrives or is held)."""
        with self._changed:
            if not self._changed.wait_for(ready, timeout):
                raise AssertionError(f"webhook receiver: no {what} within {timeout} s")

    def wait_posts(self, count: int, timeout: float = WAIT_S) -> list[ReceivedPost]:
        """Wait for ``count`` answered requests; return all so far."""
        self.wait_for(lambda: len(self.posts) >= count, f"{count} POSTs", timeout)
        with self._changed:
            return list(self.posts)

    def _next_status(self) -> int:
        with self._changed:
            return self.statuses.pop(0) if self.statuses else 200

    def _record(self, post: ReceivedPost) -> None:
        with self._changed:
            self.posts.append(post)
            self._changed.notify_all()

    def _held(self, change: int) -> None:
        with self._changed:
            self.waiting += change
            self._changed.notify_all()


def wait_until(ready: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Poll ``ready`` until it holds or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(0.01)
