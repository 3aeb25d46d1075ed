"""Alert webhooks: each alert POSTed as signed JSON to every configured URL, in the background.

The body is ``alert_document(event)`` as compact JSON with sorted keys. The header
``X-Medbadge-Signature: sha256=<hex>`` carries HMAC-SHA256 over the exact body bytes with
the webhook's shared secret; receivers check it with ``verify_signature`` (or any HMAC
library). Each URL has its own thread and queue, so a slow or dead endpoint delays only
itself, and ``deliver`` (called on the intake's thread) never waits on the network.

A failed POST (no connection, timeout, any status outside 2xx, redirects included) is
retried with exponential backoff; an alert not delivered within ``give_up_seconds``, one
pushed out of a full queue, and any still queued at shutdown is appended (fsynced) to the
undelivered file, logged and counted. At the next start the undelivered alerts of URLs
still configured are queued again. Alerts are also stored by the intake before any
webhook sees them, so a webhook is a notification path, never the record.

This module is long because signing, delivery, retry with backoff and the undelivered file
make up one delivery promise, each part depending on the others' state.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import os
import random
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from evidence.durable import write_durably
from evidence.errors import KeyFileError
from evidence.keyfiles import read_secret_file
from gateway.alerts.alerts import AlertEvent
from gateway.alerts.live import alert_document
from gateway.config import WebhookSettings
from gateway.errors import WebhookError

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Medbadge-Signature"
SIGNATURE_PREFIX = "sha256="
MIN_SECRET_BYTES = 16
_MAX_RESPONSE_BYTES = 64 * 1024
_USER_AGENT = "medbadge-gateway"


def alert_body(event: AlertEvent) -> bytes:
    """The exact bytes POSTed for ``event``: compact JSON, keys sorted, UTF-8."""
    return json.dumps(
        alert_document(event), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def sign_body(secret: bytes, body: bytes) -> str:
    """The signature header value for ``body``: ``sha256=`` and the hex HMAC-SHA256."""
    return SIGNATURE_PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """True when ``header`` is the signature of ``body`` under ``secret`` (constant time).

    For receivers: pass the raw request body, before any JSON parsing.
    """
    if header is None:
        return False
    expected = sign_body(secret, body).encode("ascii")
    given = header.strip().encode("utf-8", "surrogateescape")
    return hmac.compare_digest(expected, given)


@dataclass(frozen=True)
class WebhookTarget:
    """One webhook ready to use: its settings and the secret read from its file."""

    settings: WebhookSettings
    secret: bytes = field(repr=False)

    @property
    def url(self) -> str:
        """Where alerts are POSTed."""
        return self.settings.url

    @classmethod
    def load(cls, settings: WebhookSettings) -> WebhookTarget:
        """Read the secret file; refuse one others may read, or a secret under 16 bytes."""
        path = settings.secret_file
        try:
            secret = read_secret_file(path).rstrip(b"\r\n")
        except KeyFileError as error:
            raise WebhookError(
                f"cannot read the secret of webhook {settings.url}: {error}"
            ) from None
        if len(secret) < MIN_SECRET_BYTES:
            raise WebhookError(
                f"webhook secret {path} holds {len(secret)} bytes; use at least "
                f"{MIN_SECRET_BYTES} random bytes (e.g. openssl rand -hex 32)"
            )
        return cls(settings, secret)


@dataclass(frozen=True)
class WebhookCounts:
    """What one webhook has done since the gateway started."""

    delivered: int
    failed_attempts: int
    undelivered: int
    queued: int


@dataclass
class _Pending:
    """An alert body waiting for one webhook."""

    body: bytes
    queued_mono: float
    attempts: int = 0
    last_error: str = ""


class UndeliveredFile:
    """The JSON-lines file of alerts no webhook accepted in time (append-only, fsynced)."""

    def __init__(self, path: Path) -> None:
        """Use ``path``; its directory is created (0700) on the first write."""
        self.path = path
        self._lock = threading.Lock()

    def append(self, url: str, pending: _Pending, why: str) -> None:
        """Append one alert for ``url`` with why it was given up; log if that fails too."""
        line = {
            "url": url,
            "body": pending.body.decode("utf-8"),
            "attempts": pending.attempts,
            "last_error": pending.last_error,
            "why": why,
            "given_up_wall_ns": time.time_ns(),
        }
        data = (json.dumps(line, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            try:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                descriptor = os.open(
                    self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600
                )
                try:
                    os.write(descriptor, data)
                    os.fsync(descriptor)
                finally:
                    os.close(descriptor)
            except OSError as error:
                log.error(
                    "could not record an undelivered alert for %s in %s: %s; body: %s",
                    url,
                    self.path,
                    error,
                    line["body"],
                )

    def take(self, urls: Sequence[str]) -> dict[str, list[bytes]]:
        """Remove and return the bodies recorded for ``urls``; keep every other line."""
        with self._lock:
            try:
                lines = self.path.read_bytes().splitlines(keepends=True)
            except FileNotFoundError:
                return {}
            except OSError as error:
                log.error("cannot read undelivered alerts in %s: %s", self.path, error)
                return {}
            taken: dict[str, list[bytes]] = {}
            kept: list[bytes] = []
            for line in lines:
                url, body = _parse_line(line)
                if url is not None and url in urls and body is not None:
                    taken.setdefault(url, []).append(body)
                elif line.strip():
                    kept.append(line if line.endswith(b"\n") else line + b"\n")
            if taken:
                try:
                    write_durably(self.path, kept, 0o600)
                except OSError as error:
                    log.error("cannot rewrite %s, not retrying it now: %s", self.path, error)
                    return {}
            return taken


def _parse_line(line: bytes) -> tuple[str | None, bytes | None]:
    """The URL and body of an undelivered line, or Nones for a line we cannot read."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None, None
    if not isinstance(entry, dict):
        return None, None
    url, body = entry.get("url"), entry.get("body")
    if not isinstance(url, str) or not isinstance(body, str):
        return None, None
    return url, body.encode("utf-8")


class _DeliveryFailedError(Exception):
    """One POST did not get a 2xx answer (internal: always caught by the worker)."""


class _WebhookWorker:
    """One webhook's queue and the thread that empties it."""

    def __init__(
        self, target: WebhookTarget, undelivered: UndeliveredFile, clock: Callable[[], float]
    ) -> None:
        self.target = target
        self._undelivered = undelivered
        self._clock = clock
        self._queue: deque[_Pending] = deque()
        self._changed = threading.Condition()
        self._stopping = False
        self._stop_deadline = 0.0
        self._retry_at = 0.0
        self._failures_in_row = 0
        self.delivered = 0
        self.failed_attempts = 0
        self.undelivered = 0
        self._thread = threading.Thread(target=self._run, name=f"webhook {target.url}", daemon=True)
        self._context = self._tls_context()

    def _tls_context(self) -> ssl.SSLContext | None:
        if urlsplit(self.target.url).scheme != "https":
            return None
        ca_file = self.target.settings.ca_file
        try:
            return ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
        except (OSError, ssl.SSLError) as error:
            raise WebhookError(
                f"cannot load the CA file {ca_file} of webhook {self.target.url}: {error}"
            ) from None

    def counts(self) -> WebhookCounts:
        with self._changed:
            return WebhookCounts(
                self.delivered, self.failed_attempts, self.undelivered, len(self._queue)
            )

    def start(self) -> None:
        self._thread.start()

    def enqueue(self, body: bytes) -> None:
        """Queue ``body``; never blocks beyond a lock held for microseconds."""
        with self._changed:
            self._queue.append(_Pending(body, self._clock()))
            self._changed.notify_all()

    def stop(self, deadline: float) -> None:
        with self._changed:
            self._stopping = True
            self._stop_deadline = deadline
            self._changed.notify_all()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def abandon(self) -> None:
        """Record everything queued as undelivered (for a worker that never started)."""
        with self._changed:
            queued = list(self._queue)
            self._queue.clear()
        for pending in queued:
            self._give_up(pending, "shutdown")

    def _run(self) -> None:
        while True:
            head, given_up, stop = self._next()
            for pending, why in given_up:
                self._give_up(pending, why)
            if stop:
                return
            if head is not None:
                self._attempt(head)

    def _next(self) -> tuple[_Pending | None, list[tuple[_Pending, str]], bool]:
        """Wait until there is an alert to send or to give up; the flag says: stop now."""
        with self._changed:
            while True:
                now = self._clock()
                given_up = self._expired(now)
                if self._stopping and (
                    not self._queue
                    or now >= self._stop_deadline
                    # the endpoint is failing: do not hold the shutdown for it
                    or self._retry_at > self._stop_deadline
                ):
                    given_up.extend((pending, "shutdown") for pending in self._queue)
                    self._queue.clear()
                    return None, given_up, True
                due = self._queue[0] if self._queue and now >= self._retry_at else None
                if due is not None or given_up:
                    return due, given_up, False
                wait = None
                if self._queue:
                    expiry = self._queue[0].queued_mono + self.target.settings.give_up_seconds
                    wait = max(0.0, min(self._retry_at, expiry) - now)
                if self._stopping:
                    wait = max(0.0, min(wait or 0.0, self._stop_deadline - now))
                self._changed.wait(wait)

    def _expired(self, now: float) -> list[tuple[_Pending, str]]:
        """Take out what overflows the queue (oldest first) or waited too long."""
        settings = self.target.settings
        expired: list[tuple[_Pending, str]] = []
        while len(self._queue) > settings.queue_limit:
            expired.append((self._queue.popleft(), "queue full"))
        while self._queue and now - self._queue[0].queued_mono >= settings.give_up_seconds:
            expired.append((self._queue.popleft(), "gave up"))
        return expired

    def _attempt(self, pending: _Pending) -> None:
        try:
            self._post(pending.body)
        except _DeliveryFailedError as failure:
            self._failed(pending, str(failure))
            return
        with self._changed:
            if self._queue and self._queue[0] is pending:
                self._queue.popleft()
            self.delivered += 1
            self._failures_in_row = 0
            self._retry_at = 0.0

    def _failed(self, pending: _Pending, error: str) -> None:
        settings = self.target.settings
        with self._changed:
            pending.attempts += 1
            pending.last_error = error
            self.failed_attempts += 1
            self._failures_in_row += 1
            # full jitter keeps many gateways from hammering a recovering receiver together
            ceiling = min(
                settings.retry_max_seconds,
                settings.retry_min_seconds * 2 ** min(self._failures_in_row - 1, 30),
            )
            delay = max(settings.retry_min_seconds, random.uniform(0, ceiling))  # noqa: S311
            self._retry_at = self._clock() + delay
        log.warning(
            "webhook %s failed (attempt %d for this alert): %s; retrying in %.1f s",
            self.target.url,
            pending.attempts,
            error,
            delay,
        )

    def _give_up(self, pending: _Pending, why: str) -> None:
        with self._changed:
            self.undelivered += 1
        log.error(
            "webhook %s: alert not delivered (%s after %d attempts, last error: %s); kept in %s",
            self.target.url,
            why,
            pending.attempts,
            pending.last_error or "none",
            self._undelivered.path,
        )
        self._undelivered.append(self.target.url, pending, why)

    def _post(self, body: bytes) -> None:
        """POST ``body`` once; raise _DeliveryFailedError unless the answer is 2xx."""
        parts = urlsplit(self.target.url)
        timeout = self.target.settings.timeout_seconds
        try:
            port = parts.port
            host = parts.hostname or ""
            connection: http.client.HTTPConnection
            if self._context is not None:
                connection = http.client.HTTPSConnection(
                    host, port, timeout=timeout, context=self._context
                )
            else:
                connection = http.client.HTTPConnection(host, port, timeout=timeout)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            headers = {
                "Content-Type": "application/json",
                "User-Agent": _USER_AGENT,
                SIGNATURE_HEADER: sign_body(self.target.secret, body),
            }
            try:
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                response.read(_MAX_RESPONSE_BYTES)
                status = response.status
            finally:
                connection.close()
        except (OSError, http.client.HTTPException, ValueError) as error:
            raise _DeliveryFailedError(f"{type(error).__name__}: {error}") from None
        if not 200 <= status < 300:
            raise _DeliveryFailedError(f"HTTP status {status}")


class AlertWebhooks:
    """Every configured webhook, each with its own queue and thread."""

    def __init__(
        self,
        targets: Sequence[WebhookTarget],
        undelivered_path: Path,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Prepare one worker per target (``start`` starts them)."""
        self.undelivered = UndeliveredFile(undelivered_path)
        self._workers = [_WebhookWorker(target, self.undelivered, clock) for target in targets]
        self._clock = clock
        self._started = False

    @classmethod
    def from_settings(
        cls, settings: Sequence[WebhookSettings], undelivered_path: Path
    ) -> AlertWebhooks:
        """Load every webhook's secret (raising WebhookError on a bad one) and prepare them."""
        return cls([WebhookTarget.load(item) for item in settings], undelivered_path)

    @property
    def urls(self) -> list[str]:
        """The configured URLs, in configuration order."""
        return [worker.target.url for worker in self._workers]

    def start(self) -> None:
        """Queue again what an earlier run could not deliver, then start every worker."""
        if self._started:
            return
        self._started = True
        retried = self.undelivered.take(self.urls)
        for worker in self._workers:
            url = worker.target.url
            bodies = retried.get(url, [])
            if bodies:
                log.info("webhook %s: retrying %d undelivered alerts", url, len(bodies))
            for body in bodies:
                worker.enqueue(body)
            worker.start()

    def deliver(self, event: AlertEvent) -> None:
        """Queue ``event`` for every webhook; returns at once."""
        if not self._workers:
            return
        body = alert_body(event)
        for worker in self._workers:
            worker.enqueue(body)

    def stop(self, timeout: float = 5.0) -> None:
        """Deliver what is queued for up to ``timeout`` s; record the rest as undelivered."""
        deadline = self._clock() + timeout
        for worker in self._workers:
            worker.stop(deadline)
        if not self._started:
            for worker in self._workers:
                worker.abandon()
            return
        for worker in self._workers:
            # a POST in flight may take its own timeout beyond the deadline
            worker.join(timeout + worker.target.settings.timeout_seconds + 1.0)

    def counts(self) -> dict[str, WebhookCounts]:
        """What each webhook has done so far, by URL."""
        return {worker.target.url: worker.counts() for worker in self._workers}
