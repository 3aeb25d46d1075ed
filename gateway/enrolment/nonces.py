"""The enrolment listener's nonces: each fresh, used once, few at a time, soon forgotten."""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict

from evidence.enrolment import NONCE_SIZE

NONCE_SECONDS = 120.0
"""How long a badge has between asking for a nonce and sending its request."""
MAX_OUTSTANDING = 64
"""Nonces held at once; asking for more forgets the oldest (an outsider cannot grow this)."""


class NonceBook:
    """Nonces handed out by the enrolment listener, in memory, each taken at most once."""

    def __init__(self, seconds: float = NONCE_SECONDS, limit: int = MAX_OUTSTANDING) -> None:
        """Keep up to ``limit`` nonces, each for ``seconds``."""
        self._seconds = seconds
        self._limit = limit
        self._issued: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()

    def issue(self) -> bytes:
        """A fresh random nonce."""
        nonce = os.urandom(NONCE_SIZE)
        with self._lock:
            self._issued[nonce] = time.monotonic() + self._seconds
            while len(self._issued) > self._limit:
                self._issued.popitem(last=False)
        return nonce

    def take(self, nonce: bytes) -> bool:
        """Whether ``nonce`` was issued here and is still fresh; it cannot be taken again."""
        with self._lock:
            deadline = self._issued.pop(nonce, None)
        return deadline is not None and time.monotonic() < deadline
