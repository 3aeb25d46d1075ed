"""``/healthz``: is the gateway doing its job? Five checks, each fine or saying what is wrong.

- ``intake``: the thread that reads badge messages is running;
- ``store``: the store process is running and able to store;
- ``broker``: connected to the broker and subscribed to the badges' topics;
- ``ledger``: not shorter than its last checkpoint, and no entry waits longer than
  ``checkpoint_max_age_s`` for a checkpoint;
- ``disk``: the data directory's filesystem has at least ``disk_min_free_mb`` free.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from gateway.config import MonitoringSettings
from gateway.monitoring.sample import GatewaySample

_NS = 1_000_000_000
_MB = 1 << 20


@dataclass(frozen=True)
class Check:
    """One check's result: ``detail`` says what was found, or what is wrong."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class HealthReport:
    """Every check's result; healthy only when all are fine."""

    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """True when every check is fine."""
        return all(check.ok for check in self.checks)

    @property
    def failing(self) -> tuple[str, ...]:
        """The names of the checks that are not fine."""
        return tuple(check.name for check in self.checks if not check.ok)

    def to_json(self) -> bytes:
        """The response body: overall status, what fails, and each check's detail."""
        document = {
            "status": "ok" if self.ok else "unhealthy",
            "failing": list(self.failing),
            "checks": {
                check.name: {"ok": check.ok, "detail": check.detail} for check in self.checks
            },
        }
        return json.dumps(document, indent=1).encode() + b"\n"


def assess(sample: GatewaySample, settings: MonitoringSettings) -> HealthReport:
    """The five checks over one sample."""
    intake = sample.intake
    return HealthReport(
        (
            Check(
                "intake",
                intake.reading,
                "reading badge messages" if intake.reading else "the intake thread has stopped",
            ),
            Check(
                "store",
                intake.storing,
                "the store process is running"
                if intake.storing
                else intake.store_failure or "the store process is not running",
            ),
            Check(
                "broker",
                intake.connected,
                "connected and subscribed"
                if intake.connected
                else "not connected to the broker (reconnecting)",
            ),
            _ledger(sample, settings),
            _disk(sample, settings),
        )
    )


def _ledger(sample: GatewaySample, settings: MonitoringSettings) -> Check:
    last = sample.last_checkpoint
    covered = 0 if last is None else last.size
    if sample.ledger_size < covered:
        return Check(
            "ledger",
            False,
            f"the ledger holds {sample.ledger_size} entries, fewer than the {covered} its last "
            "checkpoint signed",
        )
    waiting = sample.ledger_size - covered
    if waiting == 0:
        return Check("ledger", True, f"{sample.ledger_size} entries, all checkpointed")
    if last is not None:
        age_s = (sample.at_ns - last.created_at_ns) / _NS
        if age_s > settings.checkpoint_max_age_s:
            return Check(
                "ledger",
                False,
                f"{waiting} entries wait for a checkpoint; the last was made {age_s:.0f} s ago "
                f"(limit {settings.checkpoint_max_age_s} s)",
            )
    return Check("ledger", True, f"{sample.ledger_size} entries, {waiting} awaiting a checkpoint")


def _disk(sample: GatewaySample, settings: MonitoringSettings) -> Check:
    free_mb = sample.disk.free_bytes // _MB
    limit = settings.disk_min_free_mb
    if free_mb < limit:
        return Check("disk", False, f"{free_mb} MB free in the data directory, below {limit} MB")
    return Check("disk", True, f"{free_mb} MB free")
