"""sd_notify for both daemons: datagrams on NOTIFY_SOCKET, never blocking, failures said once."""

from __future__ import annotations

import logging
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from evidence.sd_notify import sd_notify, watchdog_interval_s


@pytest.fixture
def listener(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A bound datagram socket named by NOTIFY_SOCKET (short path: AF_UNIX's limit)."""
    directory = Path(tempfile.mkdtemp(prefix="mb-notify-", dir="/tmp"))
    path = directory / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()
    path.unlink()
    directory.rmdir()


def test_sends_the_message(listener: socket.socket) -> None:
    assert sd_notify("READY=1\nSTATUS=connected")
    listener.settimeout(5)
    assert listener.recv(4096) == b"READY=1\nSTATUS=connected"


def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not sd_notify("READY=1")


def test_a_supervisor_that_stops_reading_never_blocks_the_gateway(
    listener: socket.socket,
) -> None:
    # the kernel queues only a few datagrams per socket; past that a blocking send would
    # hang the caller (the gateway's main loop) until the supervisor read again
    results = [sd_notify("WATCHDOG=1") for _ in range(2000)]
    assert results[0]
    assert not results[-1]


def test_a_vanished_supervisor_is_not_an_error(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/tmp/mb-no-such-socket")
    assert not sd_notify("READY=1")


def test_failures_are_logged_once_until_a_notification_gets_through(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def warnings() -> int:
        return sum("could not notify systemd" in r.getMessage() for r in caplog.records)

    address = listener.getsockname()
    gone = f"/tmp/mb-gone-{uuid.uuid4().hex[:12]}"  # a socket no earlier test has failed on
    with caplog.at_level(logging.WARNING):
        monkeypatch.setenv("NOTIFY_SOCKET", gone)
        assert not any(sd_notify("WATCHDOG=1") for _ in range(50))
        assert warnings() == 1
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        assert sd_notify("WATCHDOG=1")  # the supervisor is back
        monkeypatch.setenv("NOTIFY_SOCKET", gone)
        assert not sd_notify("WATCHDOG=1")
        assert warnings() == 2  # a new outage is said again, once


def test_without_notify_socket_nothing_is_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    with caplog.at_level(logging.DEBUG, logger="evidence.sd_notify"):
        assert not any(sd_notify("WATCHDOG=1") for _ in range(10))
    assert caplog.records == []


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [("30000000", None, 15.0), ("30000000", "1", None), ("", None, None), ("x", None, None)],
)
def test_watchdog_interval(
    monkeypatch: pytest.MonkeyPatch, usec: str, pid: str | None, expected: float | None
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", usec)
    if pid is None:
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
    else:
        monkeypatch.setenv("WATCHDOG_PID", pid)
    assert watchdog_interval_s() == expected
