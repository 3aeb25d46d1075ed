"""The local control socket: ``badge press`` and ``badge status`` talk to the daemon through it.

A Unix stream socket in the data directory (mode 0660), one JSON request line and one JSON
reply line per connection. Only the badge's own user and group can reach it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from badge.errors import ControlError

log = logging.getLogger(__name__)

Handler = Callable[[], dict[str, Any]]
_MAX_REQUEST = 4096


class ControlServer:
    """Serves ``press`` and ``status`` requests on a Unix socket, one thread."""

    def __init__(self, path: Path, handlers: dict[str, Handler]) -> None:
        self._path = path
        self._handlers = handlers
        path.unlink(missing_ok=True)
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.bind(str(path))
        os.chmod(path, 0o660)
        self._socket.listen(8)
        self._socket.settimeout(0.5)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)

    def start(self) -> None:
        """Start answering requests."""
        self._thread.start()

    def stop(self) -> None:
        """Stop answering and remove the socket file."""
        self._stopping.set()
        self._thread.join(timeout=2)
        self._socket.close()
        self._path.unlink(missing_ok=True)

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with connection:
                connection.settimeout(2)
                try:
                    connection.sendall(self._answer(connection.recv(_MAX_REQUEST)) + b"\n")
                except OSError as error:
                    log.warning("control client went away: %s", error)

    def _answer(self, request: bytes) -> bytes:
        try:
            command = json.loads(request)["command"]
            handler = self._handlers[command]
        except (ValueError, KeyError, TypeError):
            known = ", ".join(sorted(self._handlers))
            return json.dumps(
                {"ok": False, "error": f"unknown request; commands: {known}"}
            ).encode()
        try:
            return json.dumps({"ok": True, **handler()}).encode()
        except Exception as error:  # the daemon keeps running whatever one request does
            log.exception("control command %s failed", command)
            return json.dumps({"ok": False, "error": str(error)}).encode()


def send_command(path: Path, command: str, timeout: float = 5.0) -> dict[str, Any]:
    """Send one command to a running badge daemon and return its reply."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(timeout)
            client.connect(str(path))
            client.sendall(json.dumps({"command": command}).encode())
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = client.recv(65536)
                if not chunk:
                    break
                reply += chunk
    except FileNotFoundError:
        raise ControlError(f"no badge daemon is running (no control socket at {path})") from None
    except OSError as error:
        raise ControlError(f"cannot reach the badge daemon at {path}: {error}") from None
    try:
        answer: dict[str, Any] = json.loads(reply)
    except ValueError:
        raise ControlError(f"the badge daemon at {path} sent an unreadable reply") from None
    if not answer.get("ok"):
        raise ControlError(f"the badge daemon refused {command!r}: {answer.get('error')}")
    return answer
