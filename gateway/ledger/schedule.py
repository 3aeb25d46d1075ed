"""The checkpoint schedule: a background thread that signs a grown ledger at least every minute."""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from gateway.ledger.ledger import Ledger, SignedCheckpoint

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_S = 60.0
"""The schedule checkpoints a grown log at least this often."""


class CheckpointSchedule:
    """A background thread that checkpoints the ledger every interval while it has grown."""

    def __init__(self, ledger: Ledger, interval_s: float = CHECKPOINT_INTERVAL_S) -> None:
        """Checkpoint ``ledger`` (on storage of its own) every ``interval_s`` seconds."""
        self._ledger = ledger
        self._interval_s = interval_s
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> SignedCheckpoint | None:
        """Checkpoint if the log grew since the last checkpoint (whoever made it).

        If it did not grow but the last checkpoint still lacks its time-stamp, try the
        stamp again. Return the checkpoint made or stamped, or None when nothing was due.
        """
        last = self._ledger.latest_checkpoint()
        if self._ledger.size > (0 if last is None else last.size):
            return self._ledger.checkpoint()
        if last is not None and last.timestamp_token is None and self._ledger.timestamps:
            return self._ledger.stamp(last)
        return None

    def start(self) -> CheckpointSchedule:
        """Start ticking in a daemon thread."""
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="ledger-checkpoints", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread (a tick under way finishes first)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def __enter__(self) -> CheckpointSchedule:
        return self.start()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stopping.wait(self._interval_s):
            try:
                self.tick()
            except Exception:  # keep ticking: the next tick may succeed, and each failure is logged
                log.exception("the scheduled ledger checkpoint failed")
