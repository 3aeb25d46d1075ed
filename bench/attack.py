"""The attacks on the gateway, in a process of their own, for ``bench alert --under-attack``.

``python -m bench.attack BUNDLE CONSOLE_PORT USERNAME`` runs, until its standard input
closes:

* a flood: the badge of ``BUNDLE`` publishes garbage (QoS 0, 16 KiB) on its own alert and
  segment topics until the broker drops it or ``FLOOD_S`` pass;
* a socket hold: up to ``IDLE_SOCKETS`` connections to the console's port that never send
  a byte (half from one address, the rest from a hundred others), and one client sending
  its headers a byte every 0.1 s;
* a login flood: wrong passwords for ``USERNAME`` from four loopback addresses.

It prints ``attacking`` once all of them are under way, and on its way out one line of
JSON counting what each attack did.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from functools import partial
from http.client import HTTPConnection, HTTPResponse
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from badge.uplink_session import tls_context
from evidence.bundle import EnrolmentBundle
from evidence.topics import badge_topic

IDLE_SOCKETS = 2000
FLOOD_S = 10.0
GARBAGE_BYTES = 16 * 1024
LOGIN_ADDRESSES = ("127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7")
_TIMEOUT_S = 10.0


class Counts:
    """What each attack did, shared by its threads."""

    def __init__(self) -> None:
        """All zero."""
        self.lock = threading.Lock()
        self.values: dict[str, int] = {
            "flood_sent": 0,
            "flood_dropped": 0,
            "sockets_held": 0,
            "slow_header_bytes": 0,
            "login_refused": 0,
            "login_delayed": 0,
            "login_turned_away": 0,
        }

    def add(self, name: str, amount: int = 1) -> None:
        """Count ``amount`` more of ``name``."""
        with self.lock:
            self.values[name] += amount


def flood(bundle_dir: Path, stop: threading.Event, counts: Counts) -> None:
    """Publish garbage as the badge of ``bundle_dir`` until dropped, ``FLOOD_S`` or ``stop``."""
    bundle = EnrolmentBundle.load(bundle_dir)
    badge_id = bundle.identity.badge_id
    dropped = threading.Event()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=badge_id,
        protocol=mqtt.MQTTv5,
        reconnect_on_failure=False,
    )
    client.username_pw_set(bundle.broker.username, bundle.broker.password)
    client.tls_set_context(tls_context(bundle.evidence_ca_pem))
    client.on_disconnect = lambda *_args: dropped.set()
    client.connect(bundle.broker.host, bundle.broker.port)
    client.loop_start()
    topics = [badge_topic(badge_id, "alert"), badge_topic(badge_id, "segment")]
    garbage = os.urandom(GARBAGE_BYTES)
    ends = time.monotonic() + FLOOD_S
    sent = 0
    try:
        while not (dropped.is_set() or stop.is_set()) and time.monotonic() < ends:
            client.publish(topics[sent % 2], garbage, qos=0)
            sent += 1
            if sent % 50 == 0:
                time.sleep(0.005)  # let paho's thread write
    finally:
        counts.add("flood_sent", sent)
        counts.add("flood_dropped", int(dropped.is_set()))
        client.disconnect()
        client.loop_stop()


def hold_sockets(port: int, held: contextlib.ExitStack, counts: Counts) -> None:
    """Up to IDLE_SOCKETS silent connections to ``port``, closed with ``held``."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = IDLE_SOCKETS + 500
    if hard == resource.RLIM_INFINITY or hard >= wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    sources = ["127.0.0.2"] * (IDLE_SOCKETS // 2) + [
        f"127.0.1.{1 + number % 100}" for number in range(IDLE_SOCKETS // 2)
    ]
    stalled = 0
    for source in sources:
        connection = socket.socket()
        connection.settimeout(0.5)
        try:
            connection.bind((source, 0))
            connection.connect(("127.0.0.1", port))
        except OSError:
            connection.close()
            stalled += 1
            if stalled > 20:
                return  # the port takes no more: the hold has done its worst
            continue
        held.enter_context(connection)
        counts.add("sockets_held")


def slow_headers(port: int, stop: threading.Event, counts: Counts) -> None:
    """Send a request's headers a byte every 0.1 s, never finishing; again when cut off."""
    request = b"GET /login HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000
    while not stop.is_set():
        try:
            with socket.create_connection(
                ("127.0.0.1", port), timeout=_TIMEOUT_S, source_address=("127.0.0.3", 0)
            ) as slow:
                for byte in request:
                    if stop.wait(0.1):
                        return
                    slow.send(bytes([byte]))
                    counts.add("slow_header_bytes")
        except OSError:
            stop.wait(0.1)  # cut off by the console: start again


def login_flood(
    port: int, username: str, source: str, stop: threading.Event, counts: Counts
) -> None:
    """Wrong passwords for ``username`` from ``source`` until ``stop``."""
    base = f"http://127.0.0.1:{port}"
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(), _FromAddress(source))
    while not stop.is_set():
        try:
            with opener.open(base + "/login", timeout=_TIMEOUT_S) as page:
                found = re.search(rb'name="csrf" value="([^"]+)"', page.read())
            token = found.group(1).decode() if found else ""
            form = {"csrf": token, "username": username, "password": "not the password", "code": ""}
            data = urllib.parse.urlencode(form).encode()
            with opener.open(base + "/login", data, timeout=_TIMEOUT_S):
                pass  # a wrong password is never accepted
        except urllib.error.HTTPError as error:
            counts.add("login_delayed" if error.code == 429 else "login_refused")
            if error.code == 429:
                stop.wait(0.05)
        except OSError:
            counts.add("login_turned_away")
            stop.wait(0.05)


class _FromAddress(urllib.request.HTTPHandler):
    """Plain HTTP connections made from one local address."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self._source = source

    def http_open(self, req: urllib.request.Request) -> HTTPResponse:
        return self.do_open(partial(HTTPConnection, source_address=(self._source, 0)), req)


def attack(bundle_dir: Path, port: int, username: str) -> int:
    """Run every attack until standard input closes; print the counts as JSON."""
    stop = threading.Event()
    counts = Counts()
    threads = [
        threading.Thread(target=flood, args=(bundle_dir, stop, counts), daemon=True),
        threading.Thread(target=slow_headers, args=(port, stop, counts), daemon=True),
        *(
            threading.Thread(
                target=login_flood, args=(port, username, source, stop, counts), daemon=True
            )
            for source in LOGIN_ADDRESSES
        ),
    ]
    with contextlib.ExitStack() as held:
        for thread in threads:
            thread.start()
        hold_sockets(port, held, counts)
        print("attacking", flush=True)
        sys.stdin.read()
        stop.set()
        for thread in threads:
            thread.join(_TIMEOUT_S + 1)
    with counts.lock:
        print(json.dumps(counts.values), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``BUNDLE CONSOLE_PORT USERNAME``: attack until standard input closes."""
    parser = argparse.ArgumentParser(prog="python -m bench.attack", description=__doc__)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("port", type=int)
    parser.add_argument("username")
    args = parser.parse_args(argv)
    return attack(args.bundle, args.port, args.username)


if __name__ == "__main__":
    sys.exit(main())
