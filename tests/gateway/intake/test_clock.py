"""Badge clock estimation: offset by minimum delay, drift by least squares, an honest bound."""

from __future__ import annotations

import random
from pathlib import Path

from evidence.keys import SigningKey
from gateway.intake.clock import (
    ASSUMED_DRIFT,
    KEEP_SAMPLES,
    MIN_TRANSIT_WINDOW_NS,
    BadgeClocks,
    estimate_clock,
)
from gateway.storage import StorageSettings, open_storage
from gateway.storage.clock_samples import ClockSample

SECOND = 1_000_000_000
BADGE_WALL_AT_BOOT = 1_790_000_000 * SECOND


def heartbeats(
    count: int,
    *,
    offset_ns: int,
    drift: float = 0.0,
    seed: int = 7,
    boot: int = 1,
    every_ns: int = 10 * SECOND,
) -> list[ClockSample]:
    """Heartbeats of a badge whose wall clock is ``offset_ns`` behind and drifts by ``drift``.

    Each spends 1 ms plus an exponential delay (mean 8 ms) in transit; the truth at mono
    ``m`` is ``gateway = badge_wall + offset_ns + drift * m``.
    """
    rng = random.Random(seed)
    samples = []
    for index in range(count):
        mono = 100 * SECOND + index * every_ns
        wall = BADGE_WALL_AT_BOOT + mono
        delay = 1_000_000 + int(rng.expovariate(1 / 8_000_000))
        gateway = wall + offset_ns + round(drift * mono) + delay
        samples.append(ClockSample(boot, mono, wall, gateway))
    return samples


def true_offset(offset_ns: int, drift: float, mono: int) -> int:
    return offset_ns + round(drift * mono)


def test_no_samples_no_estimate() -> None:
    assert estimate_clock([]) is None


def test_offset_and_drift_are_found_within_the_bound() -> None:
    offset, drift = -2_500_000_000, 40e-6  # 2.5 s behind, 40 ppm fast
    estimate = estimate_clock(heartbeats(32, offset_ns=offset, drift=drift))
    assert estimate is not None and estimate.samples == 32
    assert abs(estimate.drift - drift) <= estimate.drift_uncertainty
    for mono in (100 * SECOND, 250 * SECOND, 410 * SECOND, 2000 * SECOND):  # incl. far beyond
        error = abs(estimate.offset_at(mono) - true_offset(offset, drift, mono))
        assert error <= estimate.error_at(mono)
    assert estimate.error_at(estimate.reference_mono_ns) < 30_000_000  # tens of ms, not s


def test_few_samples_assume_the_crystal_tolerance() -> None:
    estimate = estimate_clock(heartbeats(3, offset_ns=5 * SECOND))
    assert estimate is not None and estimate.drift == 0.0
    assert estimate.drift_uncertainty == ASSUMED_DRIFT
    assert estimate.transit_window_ns >= MIN_TRANSIT_WINDOW_NS
    later = estimate.reference_mono_ns + 1000 * SECOND
    assert estimate.error_at(later) >= ASSUMED_DRIFT * 1000 * SECOND
    assert abs(estimate.offset_at(later) - 5 * SECOND) <= estimate.error_at(later)


def test_a_heartbeat_queued_for_a_minute_does_not_move_the_offset() -> None:
    samples = heartbeats(20, offset_ns=SECOND)
    clean = estimate_clock(samples)
    late = samples[10]
    samples[10] = ClockSample(
        late.boot, late.mono_ns, late.badge_wall_ns, late.gateway_wall_ns + 60 * SECOND
    )
    delayed = estimate_clock(samples)
    assert clean is not None and delayed is not None
    assert abs(delayed.offset_ns - clean.offset_ns) < 5_000_000
    mono = samples[-1].mono_ns
    assert abs(delayed.offset_at(mono) - SECOND) <= delayed.error_at(mono)


def test_a_wall_clock_step_starts_the_window_again() -> None:
    before = heartbeats(12, offset_ns=7 * SECOND)
    # the badge's clock is set right (NTP) between two heartbeats: 7 s jump forward
    after = [
        ClockSample(
            s.boot,
            s.mono_ns + 120 * SECOND,
            s.badge_wall_ns + 127 * SECOND,
            s.gateway_wall_ns + 120 * SECOND,
        )
        for s in heartbeats(4, offset_ns=7 * SECOND, seed=8)
    ]
    estimate = estimate_clock(before + after)
    assert estimate is not None and estimate.samples == 4
    assert abs(estimate.offset_ns) <= estimate.error_at(estimate.reference_mono_ns)


def test_only_the_latest_boot_counts() -> None:
    old_boot = heartbeats(10, offset_ns=SECOND, boot=1)
    new_boot = heartbeats(3, offset_ns=9 * SECOND, boot=2, seed=3)
    estimate = estimate_clock(old_boot + new_boot)
    assert estimate is not None and (estimate.boot, estimate.samples) == (2, 3)
    assert abs(estimate.offset_ns - 9 * SECOND) <= estimate.error_at(estimate.reference_mono_ns)


def test_gateway_time_of_a_badge_reading() -> None:
    estimate = estimate_clock(heartbeats(10, offset_ns=-SECOND))
    assert estimate is not None
    mono = 150 * SECOND
    when, error = estimate.gateway_time(BADGE_WALL_AT_BOOT + mono, mono)
    assert abs(when - (BADGE_WALL_AT_BOOT + mono - SECOND)) <= error


def test_samples_are_kept_in_the_database_and_pruned(tmp_path: Path) -> None:
    settings = StorageSettings(tmp_path / "gateway.db", tmp_path / "vault")
    storage = open_storage(settings)
    storage.badges.enroll(
        "badge-a",
        SigningKey.generate().public_key,
        "x",
        wearer="",
        location="",
        operator="test",
        rotate=False,
        key_origin="badge-generated",
    )
    clocks = BadgeClocks(storage.clock_samples)
    samples = heartbeats(KEEP_SAMPLES + 10, offset_ns=SECOND)
    for sample in samples:
        clocks.record("badge-a", sample)
    clocks.record("badge-a", samples[-1])  # a redelivered heartbeat is kept once
    kept = clocks.samples("badge-a", 1)
    assert kept == samples[-KEEP_SAMPLES:]
    assert clocks.estimate("badge-a", 1) == estimate_clock(kept)
    assert clocks.estimate("badge-a", 2) is None
    storage.close()
    reopened = open_storage(settings)
    try:
        assert BadgeClocks(reopened.clock_samples).samples("badge-a", 1) == kept
    finally:
        reopened.close()
