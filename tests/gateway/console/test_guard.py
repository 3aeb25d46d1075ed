"""The connection guard on a real console server: HTTPS begun by the guard, a silent TLS client
cut off at the header deadline, and the caps per address and in all."""

from __future__ import annotations

import socket
import ssl
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.alerts.live import AlertChannel
from gateway.config import GatewayConfig
from gateway.console.server import ConsoleServer
from tests.gateway.badge_messages import Hospital, make_hospital
from tests.mosquitto import free_port

HEADER_TIMEOUT_S = 0.5


@pytest.fixture
def hospital(tmp_path: Path) -> Hospital:
    return make_hospital(tmp_path, ())


def serve(hospital: Hospital, **console: object) -> ConsoleServer:
    settings = {"host": "127.0.0.1", "port": free_port(), **console}
    config = GatewayConfig.from_mapping(hospital.data_dir.root, {"console": settings})
    server = ConsoleServer(hospital.data_dir, config, AlertChannel())
    server.start()
    return server


@pytest.fixture
def tls_server(hospital: Hospital) -> Iterator[ConsoleServer]:
    server = serve(
        hospital,
        tls=True,
        header_timeout_seconds=HEADER_TIMEOUT_S,
        max_connections=4,
        max_connections_per_address=2,
    )
    yield server
    server.stop()


def closed_by_server(connection: socket.socket, within_s: float) -> bool:
    """True when the server closes ``connection`` (EOF or reset) within ``within_s``."""
    connection.settimeout(within_s)
    try:
        return connection.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_https_is_served_through_the_guard(hospital: Hospital, tls_server: ConsoleServer) -> None:
    context = ssl.create_default_context(cafile=str(hospital.data_dir.ca_dir / "ca.crt"))
    with urllib.request.urlopen(tls_server.url + "login", context=context, timeout=5) as page:  # noqa: S310
        assert page.status == 200 and b"csrf" in page.read()
    assert tls_server.url.startswith("https://")


def test_a_client_silent_in_its_tls_handshake_is_cut_off(tls_server: ConsoleServer) -> None:
    port = int(tls_server.url.rsplit(":", 1)[1].rstrip("/"))
    with socket.create_connection(("127.0.0.1", port)) as silent:
        started = time.monotonic()
        assert closed_by_server(silent, HEADER_TIMEOUT_S + 3)
        assert time.monotonic() - started >= HEADER_TIMEOUT_S * 0.8
    assert tls_server.guard is not None and tls_server.guard.stats.timed_out >= 1


def test_an_address_past_its_cap_is_closed_and_a_full_server_makes_way(
    hospital: Hospital,
) -> None:
    server = serve(
        hospital,
        tls=False,
        header_timeout_seconds=30,
        max_connections=4,
        max_connections_per_address=2,
    )
    port = int(server.url.rsplit(":", 1)[1].rstrip("/"))
    held: list[socket.socket] = []
    try:
        for source in ("127.0.0.2", "127.0.0.2", "127.0.0.2"):
            held.append(socket.create_connection(("127.0.0.1", port), source_address=(source, 0)))
        assert closed_by_server(held[2], 3), "a third connection from one address was kept"
        assert not closed_by_server(held[0], 0.2)
        for source in ("127.0.0.4", "127.0.0.5"):
            held.append(socket.create_connection(("127.0.0.1", port), source_address=(source, 0)))
        # four open: the next one makes way by closing the newest waiting one of 127.0.0.2
        with urllib.request.urlopen(server.url + "login", timeout=5) as page:  # noqa: S310
            assert page.status == 200
        assert closed_by_server(held[1], 3), "the busiest address's newest connection stayed"
        assert not closed_by_server(held[0], 0.2)
        guard = server.guard
        assert guard is not None
        assert (guard.stats.refused_per_address, guard.stats.evicted) == (1, 1)
    finally:
        for connection in held:
            connection.close()
        server.stop()


def test_a_kept_alive_connection_left_idle_is_closed(hospital: Hospital) -> None:
    server = serve(hospital, tls=False, idle_timeout_seconds=1)
    port = int(server.url.rsplit(":", 1)[1].rstrip("/"))
    try:
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = client.makefile("rb")
            assert answer.readline().startswith(b"HTTP/1.1 200")
            length = 0
            while (line := answer.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            assert len(answer.read(length)) == length > 0
            started = time.monotonic()
            assert closed_by_server(client, 5), "an idle kept-alive connection stayed open"
            assert time.monotonic() - started >= 0.8
    finally:
        server.stop()
