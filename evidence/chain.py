"""Chain verification: is a run of segment headers one continuous, untampered recording?

Each header carries the SHA-256 of the previous header and a sequence number that never
restarts, so a missing, repeated, reordered or foreign segment shows as a named break.
A reboot (a higher boot counter) that links correctly is reported, not treated as a break.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from evidence.errors import ChainError
from evidence.keys import SigningPublicKey
from evidence.segment import SealedSegment, SegmentHeader


class FindingKind(enum.Enum):
    """What a chain finding is about."""

    GAP = "gap"
    DUPLICATE = "duplicate"
    REORDER = "reorder"
    INSERTION = "insertion"
    REBOOT = "reboot"
    CLOCK = "clock"


@dataclass(frozen=True)
class ChainFinding:
    """One thing the chain check found, with the sequence numbers it concerns."""

    kind: FindingKind
    seq: int
    message: str

    @property
    def is_break(self) -> bool:
        """True for anything but a correctly linked reboot."""
        return self.kind is not FindingKind.REBOOT


@dataclass(frozen=True)
class ChainReport:
    """The outcome of a chain check over a run of headers."""

    badge_id: str
    first_seq: int
    last_seq: int
    count: int
    findings: tuple[ChainFinding, ...]

    @property
    def breaks(self) -> tuple[ChainFinding, ...]:
        """The findings that mean the run is not one continuous chain."""
        return tuple(finding for finding in self.findings if finding.is_break)

    @property
    def intact(self) -> bool:
        """True when the run is one continuous chain (reboots allowed)."""
        return not self.breaks

    def raise_for_breaks(self) -> None:
        """Raise ChainError listing every break, if there is any."""
        if self.breaks:
            summary = "; ".join(finding.message for finding in self.breaks)
            raise ChainError(f"chain of badge {self.badge_id} is broken: {summary}", self.breaks)


def check_chain(
    headers: Sequence[SegmentHeader], expected_previous: bytes | None = None
) -> ChainReport:
    """Check ``headers`` (in the order given) form one chain, naming every break.

    ``expected_previous`` is the header digest the first segment must link to, when the
    caller knows it (for example the last segment already accepted).
    """
    if not headers:
        raise ChainError("no segments to check: the run is empty")
    badge_id = headers[0].badge_id
    findings = [*_order_findings(headers)]
    by_seq: dict[int, SegmentHeader] = {}
    for header in headers:
        if header.badge_id != badge_id:
            findings.append(
                _insertion(
                    header.seq,
                    f"segment {header.seq} is from badge {header.badge_id}, not {badge_id}",
                )
            )
            continue
        known = by_seq.get(header.seq)
        if known is None:
            by_seq[header.seq] = header
        elif known.digest() == header.digest():
            findings.append(
                ChainFinding(FindingKind.DUPLICATE, header.seq, f"segment {header.seq} repeats")
            )
        else:
            findings.append(
                _insertion(header.seq, f"two different segments claim seq {header.seq}")
            )
    ordered = [by_seq[seq] for seq in sorted(by_seq)]
    if expected_previous is not None and ordered[0].previous_header_sha256 != expected_previous:
        findings.append(
            _insertion(
                ordered[0].seq, f"segment {ordered[0].seq} does not link to the segment before it"
            )
        )
    for previous, current in itertools.pairwise(ordered):
        findings.extend(_link_findings(previous, current))
    return ChainReport(badge_id, ordered[0].seq, ordered[-1].seq, len(headers), tuple(findings))


def _insertion(seq: int, message: str) -> ChainFinding:
    return ChainFinding(FindingKind.INSERTION, seq, message)


def _order_findings(headers: Sequence[SegmentHeader]) -> list[ChainFinding]:
    """Segments that come before one with a lower sequence number in the given order."""
    return [
        ChainFinding(
            FindingKind.REORDER,
            current.seq,
            f"segment {current.seq} comes after segment {previous.seq}",
        )
        for previous, current in itertools.pairwise(headers)
        if current.seq < previous.seq
    ]


def _link_findings(previous: SegmentHeader, current: SegmentHeader) -> list[ChainFinding]:
    """What is wrong (or notable) between two segments adjacent in sequence order."""
    if current.seq != previous.seq + 1:
        return [
            ChainFinding(
                FindingKind.GAP,
                previous.seq + 1,
                f"gap: seq {previous.seq} to {current.seq} "
                f"({current.seq - previous.seq - 1} segments missing)",
            )
        ]
    findings = []
    if current.previous_header_sha256 != previous.digest():
        findings.append(
            _insertion(
                current.seq,
                f"segment {current.seq} does not link to "
                f"segment {previous.seq} (its previous-header hash differs)",
            )
        )
    if current.boot > previous.boot:
        findings.append(
            ChainFinding(
                FindingKind.REBOOT,
                current.seq,
                f"reboot before segment {current.seq} (boot {previous.boot} to {current.boot})",
            )
        )
    elif current.boot < previous.boot:
        findings.append(
            ChainFinding(
                FindingKind.CLOCK,
                current.seq,
                f"boot counter goes back from {previous.boot} to "
                f"{current.boot} at segment {current.seq}",
            )
        )
    elif current.mono_start_ns < previous.mono_end_ns - _CLOCK_SLACK_NS:
        findings.append(
            ChainFinding(
                FindingKind.CLOCK,
                current.seq,
                f"monotonic clock goes back at segment {current.seq} within one boot",
            )
        )
    return findings


_CLOCK_SLACK_NS = 100_000_000
"""Segments cut at keyframes may overlap by a frame or an audio block; 0.1 s is plenty."""


def verify_run(
    segments: Sequence[SealedSegment],
    badge_key: SigningPublicKey,
    expected_previous: bytes | None = None,
) -> ChainReport:
    """Verify every segment's signature and ciphertext hash, then check the chain.

    Raises VerificationError at the first segment that does not verify; returns the chain
    report (call ``raise_for_breaks`` to turn breaks into a ChainError).
    """
    for segment in segments:
        segment.verify(badge_key)
    return check_chain([segment.header for segment in segments], expected_previous)
