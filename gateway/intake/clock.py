"""Badge clocks: how far each badge's wall clock is from the gateway's, and how sure we are.

The model (decision 0704). A badge's wall clock is not trusted; the gateway's is. Each
heartbeat carries the badge's boot counter, monotonic clock ``m`` and wall clock ``w`` read
when it was sent; the gateway notes its own wall clock ``g`` on receipt. With ``theta`` the
amount to add to the badge's wall time to get gateway time, and ``d >= 0`` the time the
heartbeat spent in transit::

    o = g - w = theta + d          (every observed offset is theta plus a delay)

1. *Per boot, since the last step.* Samples of one boot only (the monotonic clock restarts
   at boot). If ``w - m`` jumps by more than 1 s between two heartbeats the badge's wall
   clock was set (NTP, an operator); only the samples after the last such step count.
   That test uses the badge's own two clocks, so network delay cannot fake a step.
2. *Window.* The last 32 of those samples (about five minutes at one heartbeat per 10 s).
3. *Drift.* With at least 8 samples spanning at least 60 s, a least-squares line of ``o``
   over ``m``, fitted again over the lower half of its residuals (the least-delayed
   heartbeats): that slope is the drift of the badge's wall clock against the gateway's.
   Its uncertainty is two standard errors of the first fit's slope, which carries the
   whole delay jitter (the lower half's spread is truncated and would claim too much).
   With fewer samples the drift is taken as 0 and an uncorrected crystal's 100 ppm is
   assumed as its uncertainty.
4. *Offset: minimum-delay filter.* With the drift removed, the smallest observed offset
   belongs to the heartbeat that spent least time in transit; ``theta`` lies at most that
   heartbeat's delay below it. The spread between the median and the smallest residual
   (at least 20 ms) is taken as the width ``W`` of the window that delay lies in, and the
   estimate is placed in its middle: ``theta = min - W/2``, good to ``+-W/2``.
5. *Error at a capture time.* ``W/2`` plus the drift uncertainty (two standard errors, at
   least 1 ppm) times the distance, in monotonic time, from the least-delayed heartbeat.

This is a bound under stated assumptions, not a guarantee: if every heartbeat in the
window was delayed by more than ``W`` (a congested network throughout), the true offset
lies further below. Every export states the estimate, its bound and the sample count, and
the samples themselves are kept, so a court can redo the arithmetic.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.storage.badge_states import ClockReading
from gateway.storage.clock_samples import ClockSample, ClockSamples

WINDOW = 32
STEP_NS = 1_000_000_000
MIN_FIT_SAMPLES = 8
MIN_FIT_SPAN_NS = 60_000_000_000
MIN_TRANSIT_WINDOW_NS = 20_000_000
"""MQTT through a hospital broker takes a few ms at best; 20 ms keeps the bound honest."""
ASSUMED_DRIFT = 100e-6
"""What an uncorrected quartz crystal may drift (100 ppm), used before drift is measured."""
MIN_DRIFT_UNCERTAINTY = 1e-6
KEEP_SAMPLES = 4 * WINDOW
"""Samples kept per badge and boot in the database; older ones are pruned."""


@dataclass(frozen=True)
class ClockEstimate:
    """A badge's clock offset and drift during one boot, with the model's error bound."""

    boot: int
    reference_mono_ns: int
    """The monotonic time of the least-delayed heartbeat: where the offset is best known."""
    offset_ns: int
    """What to add to the badge's wall time (at the reference) to get gateway time."""
    drift: float
    """Rate of the badge wall clock's error: ns of offset change per ns of monotonic time."""
    drift_uncertainty: float
    transit_window_ns: int
    samples: int

    def offset_at(self, mono_ns: int) -> int:
        """The offset at monotonic time ``mono_ns`` of the same boot."""
        return self.offset_ns + round(self.drift * (mono_ns - self.reference_mono_ns))

    def error_at(self, mono_ns: int) -> int:
        """The bound (ns, either way) on ``offset_at(mono_ns)``."""
        extrapolation = self.drift_uncertainty * abs(mono_ns - self.reference_mono_ns)
        return math.ceil(self.transit_window_ns / 2 + extrapolation)

    def gateway_time(self, badge_wall_ns: int, mono_ns: int) -> tuple[int, int]:
        """The gateway time of a badge reading ``(wall, mono)``, and its error bound."""
        return badge_wall_ns + self.offset_at(mono_ns), self.error_at(mono_ns)

    @property
    def drift_ppb(self) -> int:
        """The drift in parts per billion."""
        return round(self.drift * 1e9)

    def reading_at(self, mono_ns: int) -> ClockReading:
        """The estimate at monotonic time ``mono_ns``, as the badge list shows it."""
        return ClockReading(
            self.offset_at(mono_ns), self.drift_ppb, self.error_at(mono_ns), self.samples
        )


def estimate_clock(samples: Sequence[ClockSample]) -> ClockEstimate | None:
    """Estimate the clock during the latest boot among ``samples``; None without samples."""
    if not samples:
        return None
    boot = max(sample.boot for sample in samples)
    run = sorted(
        (sample for sample in samples if sample.boot == boot),
        key=lambda sample: sample.mono_ns,
    )
    run = _since_last_step(run)[-WINDOW:]
    base = run[0].mono_ns
    monos = [sample.mono_ns - base for sample in run]
    offsets = [sample.offset_ns - run[0].offset_ns for sample in run]
    drift, uncertainty = 0.0, ASSUMED_DRIFT
    if len(run) >= MIN_FIT_SAMPLES and monos[-1] - monos[0] >= MIN_FIT_SPAN_NS:
        drift, standard_error = _fit(monos, offsets)
        residuals = [o - drift * m for m, o in zip(monos, offsets, strict=True)]
        median = statistics.median(residuals)
        lower = [(m, o) for m, o, r in zip(monos, offsets, residuals, strict=True) if r <= median]
        drift, _ = _fit([m for m, _ in lower], [o for _, o in lower])
        uncertainty = max(2 * standard_error, MIN_DRIFT_UNCERTAINTY)
    residuals = [o - drift * m for m, o in zip(monos, offsets, strict=True)]
    best = min(range(len(run)), key=residuals.__getitem__)
    window = max(MIN_TRANSIT_WINDOW_NS, math.ceil(statistics.median(residuals) - residuals[best]))
    return ClockEstimate(
        boot=boot,
        reference_mono_ns=run[best].mono_ns,
        offset_ns=run[best].offset_ns - window // 2,
        drift=drift,
        drift_uncertainty=uncertainty,
        transit_window_ns=window,
        samples=len(run),
    )


def _since_last_step(run: list[ClockSample]) -> list[ClockSample]:
    """The samples after the badge's wall clock was last set (a jump of ``w - m``)."""
    start = 0
    for index in range(1, len(run)):
        before = run[index - 1].badge_wall_ns - run[index - 1].mono_ns
        after = run[index].badge_wall_ns - run[index].mono_ns
        if abs(after - before) > STEP_NS:
            start = index
    return run[start:]


def _fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares slope of ``ys`` over ``xs`` and the slope's standard error."""
    count = len(xs)
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        return 0.0, ASSUMED_DRIFT
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx
    if count <= 2:
        return slope, ASSUMED_DRIFT
    intercept = mean_y - slope * mean_x
    squared = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    return slope, math.sqrt(squared / (count - 2) / sxx)


class BadgeClocks:
    """Clock samples kept in the gateway database, and estimates made from them."""

    def __init__(self, samples: ClockSamples) -> None:
        """Keep samples in ``samples``."""
        self._samples = samples

    def record(self, badge_id: str, sample: ClockSample) -> None:
        """Keep ``sample`` (a repeated heartbeat is kept once) and prune old ones of its boot."""
        self._samples.add(badge_id, sample, keep=KEEP_SAMPLES)

    def samples(self, badge_id: str, boot: int) -> list[ClockSample]:
        """The kept samples of one boot of a badge, oldest first."""
        return self._samples.of_boot(badge_id, boot)

    def estimate(self, badge_id: str, boot: int) -> ClockEstimate | None:
        """The clock estimate for one boot of a badge; None before its first heartbeat."""
        return estimate_clock(self.samples(badge_id, boot))
