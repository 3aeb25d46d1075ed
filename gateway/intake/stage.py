"""The store stage: complete segments stored in order by a process of its own.

Storing a segment (checking it whole, its fsync into the vault, the database commit, the
ledger entry, the signed receipt, and at an incident's close the checkpoint and its RFC 3161
token) is the second half of the intake's work. On a thread of the intake's process it
competed with paho and the reassembly for one interpreter lock, so the gateway never used
more than one core (decision 1505). The stage therefore runs in a child process of the
intake's, started by ``StoreStage.start``, with an Intake of its own on its own database
connection; the intake process keeps the broker connection and the reassembly.

Only small things cross, over a private socket pair, as pickles: to the child, the badge
and the complete partial segment (its path, and the digests and head its in-order stream
found, never its bytes); back, the receipts and rejections to publish and a "stored" note
per segment, in the order they happen, so a segment's receipt is published before its last
chunk is acknowledged. The child stores strictly in order; at most ``depth`` segments wait
at once, beyond that the intake thread waits, so memory stays bounded.

The child ignores SIGINT and SIGTERM: the parent ends it by closing the queue after the
last segment handed over. If the parent dies (SIGKILL, a crash), the child ends at once,
as if killed with it: a thread of its own reads the socket and sees it close, whatever the
child is doing (waiting on the disk or the database), so a restarted gateway never finds
the old one's store process still writing, and what that process had not finished is
delivered again by the broker. If the child dies, the stage reports it (``failure``) and
refuses more work: the gateway then stops with an error and the broker delivers the
unacknowledged messages again after a restart.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from gateway.alerts.alerts import AlertEvent
from gateway.config import IntakeLimits, TimestampSettings
from gateway.datadir import GatewayDataDir
from gateway.errors import IntakeError
from gateway.intake.intake import Intake, Publish
from gateway.intake.reassembly import PartialSegment
from gateway.logging_setup import configure_logging
from gateway.storage.badges import EnrolledBadge

log = logging.getLogger(__name__)

DEPTH = 4
"""Segments handed over and not yet stored, at most (each is one file on disk)."""
READY_S = 60.0
"""How long the child may take to open the data directory before ``start`` gives up."""
STOP_S = 20.0
"""How long ``stop`` waits for the child to store what it holds before killing it (within
the unit's TimeoutStopSec of 30 s; four segments take milliseconds)."""
_WAIT_POLL_S = 1.0
_CHILD_MAIN = "import sys; from gateway.intake.stage import main; sys.exit(main(sys.argv[1:]))"
"""How the child starts: importing this module by name (not running it as ``__main__``) so
that the messages it unpickles are this module's classes."""
EXIT_ORPHANED = 3
"""The child's exit status when its parent died or sent what it cannot read."""


@dataclass(frozen=True)
class _Setup:
    """The first message to the child: where to store and how."""

    root: Path
    timestamps: TimestampSettings | None
    log_level: str
    limits: IntakeLimits | None = None
    config_file: Path | None = None


@dataclass(frozen=True)
class _Handed:
    """A complete segment to store, and the ticket of the message that completed it."""

    badge: EnrolledBadge
    partial: PartialSegment
    received: int
    ticket: int


_ToChild = _Setup | _Handed | None


@dataclass(frozen=True)
class _Ready:
    """The child has opened the data directory."""


@dataclass(frozen=True)
class _Publish:
    """A receipt or rejection for the intake process to publish."""

    topic: str
    payload: bytes


@dataclass(frozen=True)
class _Stored:
    """The segment handed over with ``ticket`` is stored (or refused) and answered."""

    ticket: int
    badge_id: str
    seq: int


_FromChild = _Ready | _Publish | _Stored


class StoreStage:
    """Stores handed-over segments in order, in a child process (see the module doc)."""

    def __init__(
        self,
        data_dir: GatewayDataDir,
        publish: Publish,
        finished: Callable[[int], None],
        *,
        timestamps: TimestampSettings | None = None,
        depth: int = DEPTH,
        limits: IntakeLimits | None = None,
    ) -> None:
        """Prepare the stage (``start`` runs it): it stores into ``data_dir``, sends receipts
        through ``publish`` and calls ``finished(ticket)`` once each segment is stored;
        ``timestamps`` says which TSA stamps its checkpoints (None: none); ``limits`` bound
        what it quarantines."""
        ours, theirs = socket.socketpair()
        self._connection = Connection(ours.detach())
        self._child_end: socket.socket | None = theirs
        self._publish = publish
        self._finished = finished
        self._process: subprocess.Popen[bytes] | None = None
        self._send_lock = threading.Lock()
        self._room = threading.Semaphore(depth)
        self._changed = threading.Condition()
        self._pending: Counter[tuple[str, int]] = Counter()
        self._ready = threading.Event()
        self._stopping = False
        self._failure: str | None = None
        self._reader = threading.Thread(target=self._read, name="intake-store", daemon=True)
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        self._send(_Setup(data_dir.root, timestamps, level, limits, data_dir.config_file))

    @property
    def pid(self) -> int | None:
        """The child's process id, once started."""
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        """Start the child and wait until it has opened the data directory.

        Raises IntakeError if it does not get ready within READY_S.
        """
        if self._child_end is None:
            raise IntakeError("the store stage was started already")
        descriptor = self._child_end.fileno()
        self._process = subprocess.Popen(
            [sys.executable, "-c", _CHILD_MAIN, "--fd", str(descriptor)],
            pass_fds=(descriptor,),
        )
        self._child_end.close()
        self._child_end = None
        self._reader.start()
        if not self._ready.wait(READY_S) or self._failure is not None:
            self.stop()
            raise IntakeError(f"the store process did not start: {self._failure or 'no answer'}")

    def stop(self) -> None:
        """Let the child store what it was handed, then end it; close the socket."""
        with self._changed:
            self._stopping = True
        with contextlib.suppress(OSError):  # if the child is gone already
            self._send(None)
        if self._process is not None:
            try:
                self._process.wait(STOP_S)
            except subprocess.TimeoutExpired:
                log.error("the store process did not finish within %.0f s: killing it", STOP_S)
                self._process.kill()
                self._process.wait()
        if self._reader.is_alive():
            self._reader.join()
        self._connection.close()
        if self._child_end is not None:
            self._child_end.close()

    def is_alive(self) -> bool:
        """Whether the child is running and able to store."""
        return (
            self._process is not None
            and self._process.poll() is None
            and self._ready.is_set()
            and self._failure is None
        )

    def failure(self) -> str | None:
        """Why the stage can no longer store (its child ended unasked), or None."""
        return self._failure

    def pending(self) -> int:
        """How many handed-over segments wait to be stored."""
        with self._changed:
            return sum(self._pending.values())

    def hand_over(
        self, badge: EnrolledBadge, partial: PartialSegment, received: int, ticket: int
    ) -> None:
        """Queue ``partial`` to be stored after what was handed over before it.

        After a failure nothing is queued: the message stays unacknowledged and the broker
        delivers it again once the gateway restarts.
        """
        while not self._room.acquire(timeout=_WAIT_POLL_S):
            if self._failure is not None:
                break
        if self._failure is not None:
            log.error("segment %d not stored: %s", partial.seq, self._failure)
            return
        key = (badge.badge_id, partial.seq)
        with self._changed:
            self._pending[key] += 1
        try:
            self._send(_Handed(badge, partial.for_handoff(), received, ticket))
        except OSError as error:  # the child died just now; the reader reports it
            log.error("segment %d not handed to the store process: %s", partial.seq, error)
            self._settle(key)

    def wait_stored(self, badge_id: str | None = None, seq: int | None = None) -> None:
        """Return once no handed-over segment matching ``badge_id`` and ``seq`` (None: any)
        waits to be stored, or the stage has failed."""

        def settled() -> bool:
            return self._failure is not None or not any(
                (badge_id is None or badge_id == badge) and (seq is None or seq == number)
                for badge, number in self._pending
            )

        with self._changed:
            self._changed.wait_for(settled)

    def _send(self, message: _ToChild) -> None:
        with self._send_lock:
            self._connection.send(message)

    def _read(self) -> None:
        """Take the child's messages in order until it closes the socket."""
        while True:
            try:
                message = self._connection.recv()
            except (EOFError, OSError):
                break
            try:
                self._take(message)
            except Exception:
                log.exception("could not act on the store process's %r", message)
        self._ended()

    def _take(self, message: _FromChild) -> None:
        if isinstance(message, _Ready):
            self._ready.set()
        elif isinstance(message, _Publish):
            self._publish(message.topic, message.payload)
        elif isinstance(message, _Stored):
            try:
                self._finished(message.ticket)
            except Exception:  # the broker delivers it again; the store answers it again
                log.exception("could not acknowledge segment %d", message.seq)
            self._settle((message.badge_id, message.seq))

    def _settle(self, key: tuple[str, int]) -> None:
        """One handed-over segment of ``key`` is no longer waiting: stored, or never sent."""
        with self._changed:
            self._pending[key] -= 1
            if self._pending[key] <= 0:
                del self._pending[key]
            self._changed.notify_all()
        self._room.release()

    def _ended(self) -> None:
        """The child closed its end: expected after ``stop``, a failure otherwise."""
        how = None if self._stopping else self._exit_status()  # outside the lock: it waits
        with self._changed:
            if not self._stopping:
                self._failure = f"the store process ended unexpectedly ({how})"
                log.error("%s; the gateway can no longer store segments", self._failure)
            self._changed.notify_all()
        self._room.release()  # wake a hand_over waiting for room
        self._ready.set()

    def _exit_status(self) -> str:
        """How the child ended, as far as can be told within a second of its socket closing."""
        if self._process is None:
            return "never started"
        try:
            status = self._process.wait(1.0)
        except subprocess.TimeoutExpired:
            return "still running, its socket closed"
        if status < 0:
            return f"killed by {signal.Signals(-status).name}"
        return f"exit status {status}"


def _ignore_alert(_event: AlertEvent) -> None:
    """The store process never sees alerts (the intake process handles them)."""


def _read_until_stopped(connection: Connection, handed: queue.SimpleQueue[_ToChild]) -> None:
    """Pass on what the intake process sends; end this process at once if it goes away
    without saying stop (it died)."""
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            log.warning("the intake process is gone: the store process ends now")
            os._exit(EXIT_ORPHANED)
        if message is not None and not isinstance(message, _Setup | _Handed):
            log.error("the intake process sent %r: the store process ends", type(message))
            os._exit(EXIT_ORPHANED)
        handed.put(message)
        if message is None:
            return


def _serve(connection: Connection) -> int:
    """The child: open an Intake on the data directory, then store each segment handed over."""
    handed: queue.SimpleQueue[_ToChild] = queue.SimpleQueue()
    reader = threading.Thread(
        target=_read_until_stopped, args=(connection, handed), name="intake-socket", daemon=True
    )
    reader.start()
    setup = handed.get()
    if not isinstance(setup, _Setup):
        log.error("the intake process did not say where to store: the store process ends")
        return EXIT_ORPHANED
    configure_logging(setup.log_level)
    data_dir = GatewayDataDir(setup.root, setup.config_file)
    timestamps = setup.timestamps
    timestamper = None if timestamps is None else data_dir.configured_timestamper(timestamps)

    def publish(topic: str, payload: bytes) -> None:
        connection.send(_Publish(topic, payload))

    storer = Intake(
        data_dir,
        publish,
        _ignore_alert,
        timestamper=timestamper,
        verify_ledger=False,  # the intake process has just checked it
        limits=setup.limits,
    )
    try:
        connection.send(_Ready())
        while isinstance(item := handed.get(), _Handed):
            storer.store(item.badge, item.partial, item.received)  # never raises
            connection.send(_Stored(item.ticket, item.badge.badge_id, item.partial.seq))
    finally:
        storer.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The store process (``--fd N``: its socket to the intake process); see _CHILD_MAIN."""
    parser = argparse.ArgumentParser(prog="gateway store process", description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="the socket to the intake")
    args = parser.parse_args(argv)
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)  # the intake process says when to stop
    return _serve(Connection(args.fd))

