"""An emulated radio link between the badges and the hospital, for the uplink benchmarks.

On loopback the badge, the broker and the gateway share this machine's cores, so a
benchmark there measures their CPU against each other. On a ward the badge is a Pi of its
own and its Wi-Fi is the limit. :class:`RadioLink` puts the badge's side of a benchmark
behind such a link: a network namespace joined to this one by a veth pair, each end's
egress held to a rate by the kernel's token-bucket filter (``tbf``). No delay is added (the
kernels this runs on may lack ``netem``): the round trip stays under a millisecond, where
Wi-Fi has a few, which the uplink's window of eight 256 KiB chunks covers many times over
at any rate a badge's radio reaches. The broker listens on
this side's address; whatever :meth:`RadioLink.inside` runs (and every thread it starts)
opens its sockets in the badge's namespace, so its traffic crosses the link, while the
gateway and the raw subscriber reach the broker directly.

It needs root and iproute2 (``ip``, ``tc``); without them :class:`RadioLink` raises
RadioLinkError saying so. The namespace and the veth pair are removed on exit.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

_CLONE_NEWNET = 0x40000000
_NETNS_DIR = "/run/netns"
_T = TypeVar("_T")


class RadioLinkError(RuntimeError):
    """The emulated link could not be set up here; the message says what is missing."""


def _run(*command: str) -> None:
    """Run a setup command; RadioLinkError with its own words if it fails."""
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RadioLinkError(f"{' '.join(command)} failed: {result.stderr.strip()}")


def _ip(*args: str) -> None:
    _run("ip", *args)


def _shape(namespace: str | None, device: str, rate_mbit: float) -> None:
    """Hold ``device``'s egress to ``rate_mbit``; a queue of up to 200 ms, no loss before.

    The bucket holds 256 KiB: a veth hands over segmentation-offloaded packets of up to
    64 KiB, which a smaller bucket could never pass.
    """
    where = () if namespace is None else ("ip", "netns", "exec", namespace)
    shaping = ("tbf", "rate", f"{rate_mbit}mbit", "burst", "256kb", "latency", "200ms")
    _run(*where, "tc", "qdisc", "add", "dev", device, "root", *shaping)


class RadioLink:
    """A rate-limited link to a network namespace of its own (see the module doc)."""

    def __init__(self, rate_mbit: float) -> None:
        """Plan a link of ``rate_mbit`` each way; ``with`` sets it up and takes it down."""
        if not rate_mbit > 0:
            raise RadioLinkError(f"a link of {rate_mbit} Mbit/s carries nothing")
        self.rate_mbit = rate_mbit
        tag = os.getpid() % 250 + 1
        self.namespace = f"medbadge-bench-{os.getpid()}"
        self.hospital_address = f"10.231.{tag}.1"
        """The hospital's end of the link: the broker listens here."""
        self.badge_address = f"10.231.{tag}.2"
        self._device = f"mbr{os.getpid()}"  # at most 10 of the 15 characters a name may have
        self._libc = ctypes.CDLL(None, use_errno=True)

    def __enter__(self) -> RadioLink:
        """Create the namespace, the veth pair, their addresses and the shaping."""
        if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tc") is None:
            raise RadioLinkError(
                "an emulated radio link needs root and iproute2 (ip, tc); run as root"
            )
        try:
            self._set_up()
        except BaseException:
            self._take_down()
            raise
        return self

    def _set_up(self) -> None:
        inner = f"{self._device}b"
        _ip("netns", "add", self.namespace)
        _ip("link", "add", self._device, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", self.namespace)
        _ip("addr", "add", f"{self.hospital_address}/30", "dev", self._device)
        _ip("link", "set", self._device, "up")
        inside = ("netns", "exec", self.namespace, "ip")
        _ip(*inside, "addr", "add", f"{self.badge_address}/30", "dev", inner)
        _ip(*inside, "link", "set", inner, "up")
        _ip(*inside, "link", "set", "lo", "up")
        _shape(None, self._device, self.rate_mbit)
        _shape(self.namespace, inner, self.rate_mbit)

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        """Remove the veth pair and the namespace."""
        self._take_down()

    def _take_down(self) -> None:
        subprocess.run(["ip", "link", "del", self._device], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True, check=False)

    def inside(self, work: Callable[[], _T]) -> _T:
        """Run ``work`` on a thread that has joined the badge's namespace; return its result.

        Sockets it opens, and threads it starts (which share that namespace), stay there
        after it returns, so a paho client connected inside keeps using the link.
        """
        done: list[_T] = []
        failed: list[BaseException] = []

        def joined() -> None:
            try:
                self._join()
                done.append(work())
            except BaseException as error:
                failed.append(error)

        thread = threading.Thread(target=joined, name="radio-link", daemon=True)
        thread.start()
        thread.join()
        if failed:
            raise failed[0]
        return done[0]

    def _join(self) -> None:
        """Move the calling thread (only) into the badge's network namespace."""
        descriptor = os.open(f"{_NETNS_DIR}/{self.namespace}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            if self._libc.setns(descriptor, _CLONE_NEWNET) != 0:
                number = ctypes.get_errno()
                raise RadioLinkError(f"cannot join {self.namespace}: {os.strerror(number)}")
        finally:
            os.close(descriptor)
