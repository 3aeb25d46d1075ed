"""Which stored segments belong to an incident: from its alert on, bounded by its record.

The alert, sent at the press before any video, names the first segment of the pre-roll
(``first_seq``). From then on the incident is open: every stored segment of the badge from
that seq up to the newest one uploaded for the incident belongs to it, so the pre-roll plays
as soon as it is stored, long before the post-roll ends. The incident record, signed when
the post-roll has been recorded, bounds the range with its ``first_seq..last_seq``. Where the
alert, the record and the uploads disagree, ``inconsistencies`` says so; the record's range
is what counts, and nothing is moved from one incident to another.
"""

from __future__ import annotations

from dataclasses import dataclass

from evidence.incident import IncidentRecord
from gateway.alerts.alerts import SignedAlert
from gateway.storage.catalogue import Catalogue, StoredSegment

_SHOWN = 20
"""How many seqs an inconsistency lists at most."""


@dataclass(frozen=True)
class IncidentSpan:
    """The run of a badge's segments that makes up one incident, as far as it is known."""

    badge_id: str
    incident_id: str
    first_seq: int | None
    """The first segment: the record's, else the alert's (None: neither has arrived)."""
    last_seq: int | None
    """The last segment: the record's, else the newest uploaded for the open incident."""
    recording: bool
    """True while the alert is stored and the record is not: the badge is still recording."""
    alert: SignedAlert | None
    record: IncidentRecord | None

    def segments(self, catalogue: Catalogue) -> tuple[StoredSegment, ...]:
        """The stored segments of the span, in order; while it records, only those of the
        press's boot or later (an earlier boot's segment cannot be footage of this press)."""
        if self.first_seq is None or self.last_seq is None:
            return ()
        found = catalogue.segments(self.badge_id, self.first_seq, self.last_seq)
        if self.recording and self.alert is not None:
            boot = self.alert.press.boot
            found = tuple(stored for stored in found if stored.header.boot >= boot)
        return found

    def inconsistencies(self, catalogue: Catalogue) -> list[str]:
        """What the alert, the record and the stored uploads say differently, one line each."""
        found: list[str] = []
        alert, record = self.alert, self.record
        if self.recording and alert is not None and self.last_seq is not None:
            early = [
                stored.seq
                for stored in catalogue.segments(self.badge_id, alert.first_seq, self.last_seq)
                if stored.header.boot < alert.press.boot
            ]
            if early:
                found.append(
                    f"{_listed(early)} came from a boot before the press's "
                    f"(boot {alert.press.boot}); not shown as this incident's"
                )
        if alert is None or record is None:
            return found
        if record.first_seq < alert.first_seq:
            found.append(
                f"the incident record starts at segment {record.first_seq}, before the first "
                f"segment its alert named ({alert.first_seq})"
            )
        elif record.first_seq > alert.first_seq:
            before = catalogue.named_in(
                self.badge_id, self.incident_id, alert.first_seq, record.first_seq - 1, _SHOWN
            )
            if before:
                found.append(
                    f"while the incident was open, {_listed(before)} came for it, but its "
                    f"record starts at segment {record.first_seq}"
                )
        after = catalogue.named_in(
            self.badge_id, self.incident_id, record.last_seq + 1, None, _SHOWN
        )
        if after:
            found.append(
                f"while the incident was open, {_listed(after)} came for it, but its record "
                f"ends at segment {record.last_seq}"
            )
        return found


def span_of(
    catalogue: Catalogue,
    badge_id: str,
    incident_id: str,
    alert: SignedAlert | None,
    record: IncidentRecord | None,
) -> IncidentSpan:
    """The span of an incident from its (parsed) alert and record, either of which may be
    missing yet."""
    if record is not None:
        return IncidentSpan(
            badge_id, incident_id, record.first_seq, record.last_seq, False, alert, record
        )
    if alert is None:
        return IncidentSpan(badge_id, incident_id, None, None, False, None, None)
    newest = catalogue.last_named(badge_id, incident_id, alert.first_seq)
    return IncidentSpan(badge_id, incident_id, alert.first_seq, newest, True, alert, None)


def _listed(seqs: list[int]) -> str:
    """"segment 4" or "segments 4, 5" (and more, past _SHOWN)."""
    text = ", ".join(str(seq) for seq in seqs[:_SHOWN])
    more = " and more" if len(seqs) >= _SHOWN else ""
    return f"segment {text}" if len(seqs) == 1 else f"segments {text}{more}"
