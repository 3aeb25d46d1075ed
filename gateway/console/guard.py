"""The console's connection guard: caps per address and in all, and a deadline for the request.

uvicorn bounds concurrency by answering 503 once too many connections are open, which lets
a few thousand idle sockets turn the officer on duty away, and it gives a new connection no
deadline for its first request. So each accepted socket passes through a
``GuardedConnection`` before uvicorn's HTTP protocol sees it:

* an address holding ``max_connections_per_address`` already is closed at once;
* at ``max_connections`` in all, the newest connection that has not yet sent a whole request,
  from the address holding the most, makes way; when none is waiting so, the new one is
  closed;
* a connection must finish its TLS handshake and the headers of its first request within
  ``header_timeout_seconds``, or it is closed (slow-header clients hold nothing for long).

TLS is begun here (``loop.start_tls``) rather than by the server, so that the caps and the
deadline count the handshake too. After the first request, uvicorn's keep-alive timeout and
h11's header size limit apply. Decision 1741.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from gateway.config import ConsoleLimits

log = logging.getLogger(__name__)

_HEADERS_END = b"\r\n\r\n"
_EARLY_LIMIT = 64 * 1024
"""The most kept of what arrives with the end of a handshake (a request's headers fit)."""


@dataclass
class GuardStats:
    """What the guard has turned away, for the log and for tests."""

    refused_per_address: int = 0
    refused_full: int = 0
    evicted: int = 0
    timed_out: int = 0


@dataclass
class ConnectionGuard:
    """The open connections of one server, by client address."""

    limits: ConsoleLimits
    tls: ssl.SSLContext | None = None
    stats: GuardStats = field(default_factory=GuardStats)
    _open: dict[GuardedConnection, str] = field(default_factory=dict)
    _per_address: Counter[str] = field(default_factory=Counter)

    @property
    def open_connections(self) -> int:
        """How many connections are admitted and still open."""
        return len(self._open)

    def admit(self, connection: GuardedConnection, address: str) -> bool:
        """Take ``connection`` from ``address`` in, making way for it if needed; or say no."""
        if self._per_address[address] >= self.limits.max_connections_per_address:
            self.stats.refused_per_address += 1
            return False
        if len(self._open) >= self.limits.max_connections:
            victim = self._waiting_from_busiest()
            if victim is None:
                self.stats.refused_full += 1
                return False
            self.stats.evicted += 1
            victim.close()
        self._open[connection] = address
        self._per_address[address] += 1
        return True

    def release(self, connection: GuardedConnection) -> None:
        """Forget ``connection`` (closed); safe to call twice."""
        address = self._open.pop(connection, None)
        if address is not None:
            self._per_address[address] -= 1
            if not self._per_address[address]:
                del self._per_address[address]

    def _waiting_from_busiest(self) -> GuardedConnection | None:
        """The newest connection without a whole request yet, of the address holding most."""
        for address, _count in self._per_address.most_common():
            waiting = [c for c, a in self._open.items() if a == address and not c.requested]
            if waiting:
                return waiting[-1]
        return None

    def protocol_class(self) -> type[asyncio.Protocol]:
        """The protocol uvicorn builds for each connection (``uvicorn.Config(http=...)``)."""
        guard = self

        class _Guarded(GuardedConnection):
            def __init__(
                self,
                config: Any,
                server_state: Any,
                app_state: dict[str, Any],
                _loop: asyncio.AbstractEventLoop | None = None,
            ) -> None:
                inner = H11Protocol(config, server_state, app_state, _loop)
                super().__init__(guard, inner, _loop or asyncio.get_event_loop())

        return _Guarded


class GuardedConnection(asyncio.Protocol):
    """One accepted socket: admitted or closed, TLS begun, then handed to the HTTP protocol."""

    def __init__(
        self, guard: ConnectionGuard, inner: H11Protocol, loop: asyncio.AbstractEventLoop
    ) -> None:
        """Guard ``inner`` (uvicorn's protocol for this connection) with ``guard``."""
        self._guard = guard
        self._inner = inner
        self._loop = loop
        self._raw: asyncio.BaseTransport | None = None
        self._attached = False
        self._deadline: asyncio.TimerHandle | None = None
        self._handshake: asyncio.Task[None] | None = None
        self._tail = b""
        self._early = bytearray()
        """Bytes that came with the end of the TLS handshake, before the handover."""
        self.requested = False
        """True once the headers of a first request have arrived."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Admit or close; start the deadline; begin TLS or hand over the plain transport."""
        self._raw = transport
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        if not self._guard.admit(self, address):
            transport.abort()  # type: ignore[attr-defined]
            return
        limits = self._guard.limits
        self._deadline = self._loop.call_later(limits.header_timeout_seconds, self._too_slow)
        if self._guard.tls is None:
            self._attach(transport)
        else:
            # held here: the loop keeps only a weak reference to a task
            self._handshake = self._loop.create_task(self._begin_tls(transport, self._guard.tls))

    async def _begin_tls(self, transport: asyncio.BaseTransport, context: ssl.SSLContext) -> None:
        try:
            secured = await self._loop.start_tls(
                transport,  # type: ignore[arg-type]
                self,
                context,
                server_side=True,
                ssl_handshake_timeout=self._guard.limits.header_timeout_seconds,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError, RuntimeError):
            self.close()
            return
        if secured is None or secured.is_closing():
            self.close()
            return
        self._raw = secured
        self._attach(secured)

    def _attach(self, transport: asyncio.BaseTransport) -> None:
        self._attached = True
        self._inner.connection_made(transport)  # type: ignore[arg-type]
        if self._early:
            early, self._early = bytes(self._early), bytearray()
            self._inner.data_received(early)

    def data_received(self, data: bytes) -> None:
        """Watch for the end of the first request's headers, then pass the bytes on."""
        if not self.requested:
            seen = self._tail + data
            if _HEADERS_END in seen:
                self.requested = True
                if self._deadline is not None:
                    self._deadline.cancel()
            self._tail = seen[-3:]
        if self._attached:
            self._inner.data_received(data)
        elif len(self._early) + len(data) <= _EARLY_LIMIT:
            self._early += data
        else:
            self.close()

    def eof_received(self) -> None:
        """Pass the end of the client's stream on (the transport then closes)."""
        if self._attached:
            self._inner.eof_received()

    def pause_writing(self) -> None:
        """Pass flow control on."""
        if self._attached:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        """Pass flow control on."""
        if self._attached:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection and tell the HTTP protocol."""
        self._guard.release(self)
        if self._deadline is not None:
            self._deadline.cancel()
        if self._attached:
            self._attached = False
            self._inner.connection_lost(exc)

    def close(self) -> None:
        """Close the connection at once (its slot is freed now, not when the loop notices)."""
        self._guard.release(self)
        if self._raw is not None:
            self._raw.abort()  # type: ignore[attr-defined]

    def _too_slow(self) -> None:
        if not self.requested:
            self._guard.stats.timed_out += 1
            self.close()
