"""The player's plan of an incident's footage: its stored segments on one timeline from 0.

The timeline starts at the first stored segment of the incident (0 s), not at the badge's
uptime. Segments of one boot keep the distance their monotonic clock puts between them (the
badge's timestamps run from that clock), so a segment not stored yet leaves its own length
of gap; after a reboot the next boot's segments follow on. The press is placed by the same
clock, which splits the pre-roll from the post-roll. While the incident records, the plan
says so, and how far the newest stored footage lags the gateway's clock, so the player can
follow new segments and say how far behind the wearer it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evidence.incident import Press
from gateway.console.casefile import CaseFile
from gateway.errors import ConsoleError
from gateway.storage.catalogue import StoredSegment


@dataclass(frozen=True)
class PlacedSegment:
    """One stored segment on the player's timeline."""

    seq: int
    start_ns: int
    duration_ns: int
    boot: int
    mono_start_ns: int

    @property
    def end_ns(self) -> int:
        """Where the segment ends on the timeline."""
        return self.start_ns + self.duration_ns


@dataclass(frozen=True)
class FootagePlan:
    """What the player is told: segments, presses, the two parts, and whether it records."""

    segments: tuple[PlacedSegment, ...]
    presses_ns: tuple[int, ...]
    """Each press on the timeline; the first ends the pre-roll."""
    recording: bool
    missing: tuple[int, ...]
    """Seqs inside the incident's known range that are not stored (yet)."""
    newest_wall_ns: int | None
    """Gateway time of the end of the newest stored footage: its estimated capture time, or
    without a clock estimate the time it was stored."""

    @property
    def origin_seq(self) -> int | None:
        """The segment at 0 s (None: nothing stored yet)."""
        return self.segments[0].seq if self.segments else None

    @property
    def end_ns(self) -> int:
        """The end of the stored footage on the timeline."""
        return max((placed.end_ns for placed in self.segments), default=0)

    def place(self, origin_seq: int, seq: int) -> PlacedSegment:
        """Segment ``seq`` as placed from ``origin_seq``; ConsoleError when the timeline has
        moved (an earlier segment arrived) or ``seq`` is not stored."""
        if origin_seq != self.origin_seq:
            raise ConsoleError(
                "earlier footage of this incident has arrived since the player started: "
                "reload the player"
            )
        for placed in self.segments:
            if placed.seq == seq:
                return placed
        raise ConsoleError(f"segment {seq} of this incident has not reached the gateway yet")

    def to_json(self, now_ns: int) -> dict[str, Any]:
        """The plan as the player reads it (seconds on the timeline, ns of gateway time)."""
        pre_roll = self.presses_ns[0] if self.presses_ns else None
        return {
            "origin": self.origin_seq,
            "segments": [
                {"seq": placed.seq, "start": placed.start_ns / 1e9, "end": placed.end_ns / 1e9}
                for placed in self.segments
            ],
            "end": self.end_ns / 1e9,
            "presses": [at / 1e9 for at in self.presses_ns],
            "pre_roll_end": None if pre_roll is None else pre_roll / 1e9,
            "recording": self.recording,
            "missing": list(self.missing),
            "newest_wall_ns": self.newest_wall_ns,
            "now_ns": now_ns,
        }


def plan(case: CaseFile) -> FootagePlan:
    """The player's plan of ``case``'s stored footage."""
    placed = lay_out(case.segments)
    presses = tuple(
        at for at in (_press_at(press, placed) for press in case.presses) if at is not None
    )
    span = case.span
    stored = {segment.seq for segment in case.segments}
    missing: tuple[int, ...] = ()
    if span.first_seq is not None and span.last_seq is not None:
        missing = tuple(
            seq for seq in range(span.first_seq, span.last_seq + 1) if seq not in stored
        )
    return FootagePlan(
        segments=placed,
        presses_ns=presses,
        recording=case.recording,
        missing=missing[:500],
        newest_wall_ns=_newest_wall_ns(case.segments),
    )


def lay_out(segments: Sequence[StoredSegment]) -> tuple[PlacedSegment, ...]:
    """``segments`` (in seq order) on one timeline, the first at 0."""
    placed: list[PlacedSegment] = []
    for stored in segments:
        header = stored.header
        duration = max(header.mono_end_ns - header.mono_start_ns, 0)
        if not placed:
            start = 0
        else:
            before = placed[-1]
            if header.boot == before.boot and header.mono_start_ns >= before.mono_start_ns:
                start = before.start_ns + header.mono_start_ns - before.mono_start_ns
            else:  # a new boot's clock starts again: follow on from the last segment
                start = before.end_ns
        placed.append(PlacedSegment(stored.seq, start, duration, header.boot, header.mono_start_ns))
    return tuple(placed)


def _press_at(press: Press, placed: Sequence[PlacedSegment]) -> int | None:
    """Where ``press`` falls on the timeline, by the clock of its boot (None: no segment of
    that boot is stored)."""
    same_boot = [segment for segment in placed if segment.boot == press.boot]
    if not same_boot:
        return None
    before = [segment for segment in same_boot if segment.mono_start_ns <= press.mono_ns]
    anchor = before[-1] if before else same_boot[0]
    return max(anchor.start_ns + press.mono_ns - anchor.mono_start_ns, 0)


def _newest_wall_ns(segments: Sequence[StoredSegment]) -> int | None:
    if not segments:
        return None
    newest = segments[-1]
    return newest.capture.end_ns if newest.capture is not None else newest.received_wall_ns
