"""Login limits that slow a guesser without locking out the person on duty.

Failures are counted per (user name, client address) pair, never per name alone or per
address alone: a right password from another address is never refused because of
failures elsewhere, and many users behind one address (a security desk behind a NAT) do
not share a count. After ``free_failures`` failures in a row the pair must wait before
its next try, a delay that doubles with each further failure from ``first_delay_s`` up to
``max_delay_s``; there is no hard block. A pair that has not failed for ``forget_s`` starts
again from nothing, and a good login clears its pair. An administrator clears a name's
every pair (``unlock``) from the console or ``gateway user unlock``.

The counts are rows in the database (``gateway.storage.login_failures``), at most
``max_pairs`` of them, so a restart does not forget them and every process sees the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.storage.login_failures import LoginFailureRecord, LoginFailures

_NS = 1_000_000_000
MAX_CLIENT = 200
"""Longest client address kept, in characters."""
MAX_NAME = 64


@dataclass(frozen=True)
class LoginLimits:
    """How failed logins of one (name, address) pair slow its next tries."""

    free_failures: int = 5
    """Failures in a row a pair may make before it must wait."""
    first_delay_s: float = 1.0
    max_delay_s: float = 60.0
    """The longest a pair ever waits: the on-duty officer is slowed, never locked out."""
    forget_s: float = 15 * 60
    """A pair with no failure for this long starts again from nothing."""
    max_pairs: int = 10_000
    """At most this many pairs are kept; the longest quiet go first."""


@dataclass(frozen=True)
class LoginLock:
    """One address a name failed from, as ``gateway user list`` and the users page show it."""

    client: str
    failures: int
    last_failure_ns: int
    retry_after_s: float
    """Seconds until the next try is allowed from there (0: now)."""


class LoginLimiter:
    """Counts failed logins per (name, address) and says how long a pair must wait.

    Use it under the caller's storage lock, like the storage it keeps its counts in.
    """

    def __init__(
        self,
        failures: LoginFailures,
        limits: LoginLimits = LoginLimits(),
        *,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        """Count in ``failures`` against ``limits``; ``clock`` gives wall time in ns."""
        self._failures = failures
        self._limits = limits
        self._clock = clock

    @property
    def limits(self) -> LoginLimits:
        """The limits counted against."""
        return self._limits

    def retry_after(self, username: str, client: str) -> float:
        """Seconds until ``username`` may try again from ``client`` (0: now)."""
        record = self._failures.get(*_key(username, client))
        return 0.0 if record is None else self._wait(record, self._clock())

    def failed(self, username: str, client: str) -> None:
        """Count one failed login of ``username`` from ``client``."""
        name, address = _key(username, client)
        now = self._clock()
        record = self._failures.get(name, address)
        count = 1 if record is None or self._stale(record, now) else record.failures + 1
        self._failures.put(LoginFailureRecord(name, address, count, now))
        self._failures.prune(now - int(self._limits.forget_s * _NS), self._limits.max_pairs)

    def succeeded(self, username: str, client: str) -> None:
        """Forget the failures of ``username`` from ``client`` (a good login)."""
        self._failures.forget(*_key(username, client))

    def unlock(self, username: str) -> int:
        """Forget every failure of ``username``, from every address; say how many addresses."""
        return self._failures.forget_user(username[:MAX_NAME])

    def locks(self, username: str) -> list[LoginLock]:
        """The addresses ``username`` recently failed from, latest first."""
        now = self._clock()
        return [
            LoginLock(
                record.client, record.failures, record.last_failure_ns, self._wait(record, now)
            )
            for record in self._failures.of_user(username[:MAX_NAME])
            if not self._stale(record, now)
        ]

    def delay_s(self, failures: int) -> float:
        """How long a pair waits after ``failures`` failures in a row."""
        beyond = failures - self._limits.free_failures
        if beyond < 0:
            return 0.0
        return min(self._limits.max_delay_s, self._limits.first_delay_s * 2.0 ** min(beyond, 62))

    def _wait(self, record: LoginFailureRecord, now: int) -> float:
        if self._stale(record, now):
            return 0.0
        ready = record.last_failure_ns + int(self.delay_s(record.failures) * _NS)
        return max(0.0, (ready - now) / _NS)

    def _stale(self, record: LoginFailureRecord, now: int) -> bool:
        return now - record.last_failure_ns >= int(self._limits.forget_s * _NS)


def _key(username: str, client: str) -> tuple[str, str]:
    return username[:MAX_NAME], client[:MAX_CLIENT]
