"""A bound on the log lines refused messages cost: a few per badge per minute, then a count.

A badge flooding garbage would otherwise write one warning per message to the journal
(hundreds of thousands of lines a minute), filling the disk and burying the lines that
matter. Every refusal is still counted and has its metadata line in the quarantine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

LINES_PER_WINDOW = 20
WINDOW_NS = 60 * 1_000_000_000


@dataclass
class _Window:
    started_ns: int
    lines: int = 0
    unlogged: int = 0


class LogLimit:
    """Allows ``lines`` log lines per key (a badge id, or None) in each window."""

    def __init__(
        self,
        lines: int = LINES_PER_WINDOW,
        window_ns: int = WINDOW_NS,
        *,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        """Allow ``lines`` per ``window_ns``; ``clock`` gives monotonic ns."""
        self._lines = lines
        self._window_ns = window_ns
        self._clock = clock
        self._windows: dict[str | None, _Window] = {}

    def allow(self, key: str | None) -> tuple[bool, int]:
        """Whether to log one more line for ``key``, and how many lines for it were not
        logged in its previous window (to say so once, in the first line of the next)."""
        now = self._clock()
        window = self._windows.get(key)
        unlogged = 0
        if window is None or now - window.started_ns >= self._window_ns:
            unlogged = 0 if window is None else window.unlogged
            window = self._windows[key] = _Window(now)
        if window.lines >= self._lines:
            window.unlogged += 1
            return False, 0
        window.lines += 1
        return True, unlogged
