"""Each badge's refused messages counted over a sliding window: more than allowed cuts it off.

A badge that keeps sending what the intake refuses (garbage, forged signatures, another
badge's records) is either broken or in someone else's hands; either way its traffic can
only cost the gateway. Past ``refusals`` within ``window_seconds`` the intake records a
cut-off (decision 1702), the running gateway disables the badge's broker account, and the
badge list flags it until an administrator lifts it. Memory is bounded: one timestamp per
refusal in the window, for enrolled badges only (unknown senders never get this far).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from gateway.config import CutoffSettings


class RefusalWindow:
    """Counts refusals per badge over the last ``window_seconds``."""

    def __init__(
        self, settings: CutoffSettings, *, clock: Callable[[], int] = time.monotonic_ns
    ) -> None:
        """Allow ``settings.refusals`` per ``settings.window_seconds``; ``clock`` gives ns."""
        self.settings = settings
        self.window_ns = int(settings.window_seconds * 1e9)
        self._clock = clock
        self._times: dict[str, deque[int]] = {}

    def refused(self, badge_id: str) -> bool:
        """Count one refusal of ``badge_id``; True when that makes more than allowed in the
        window (the count then starts again, so a lifted badge gets a fresh window)."""
        now = self._clock()
        times = self._times.get(badge_id)
        if times is None:
            times = self._times[badge_id] = deque(maxlen=self.settings.refusals + 1)
        times.append(now)
        if len(times) == times.maxlen and now - times[0] <= self.window_ns:
            del self._times[badge_id]
            return True
        return False
