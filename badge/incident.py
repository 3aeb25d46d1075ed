"""Incidents: one press raises an alert, pins the pre-roll and records the post-roll.

Another press during the post-roll extends it. The open incident is kept in a small file
(written atomically) so a crash or reboot neither loses it nor unpins its footage; when the
post-roll has been recorded the badge signs the incident record and queues it for upload.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from badge.outbox import Outbox
from badge.ring import Ring, StoredSegment
from evidence.durable import write_durably
from evidence.incident import IncidentRecord, Press, SignedIncident, sign_alert
from evidence.keys import BadgeIdentity

log = logging.getLogger(__name__)


@dataclass
class OpenIncident:
    """The incident being recorded, as persisted in ``open.json``."""

    incident_id: str
    presses: list[tuple[int, int, int]]
    first_seq: int
    deadline_mono_ns: int
    deadline_wall_ns: int
    last_seq: int | None = None


@dataclass(frozen=True)
class PressOutcome:
    """What a press did: opened an incident or extended the open one."""

    incident_id: str
    opened: bool
    post_roll_until_wall_ns: int
    pre_roll: tuple[int, int] | None = None
    """The first and last segment stored before the press that it pinned; None when the
    press extended an open incident or no segment of the window was stored yet."""


def new_incident_id(wall_ns: int) -> str:
    """An id that sorts by time and is unique: UTC time of the press plus random hex."""
    stamp = datetime.fromtimestamp(wall_ns / 1e9, UTC).strftime("%Y%m%dt%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"


class IncidentRecorder:
    """Turns presses into pinned, signed incidents queued in the outbox."""

    def __init__(
        self,
        directory: Path,
        ring: Ring,
        identity: BadgeIdentity,
        outbox: Outbox,
        *,
        pre_roll_ns: int,
        post_roll_ns: int,
        location: str,
        battery_percent: Callable[[], int | None] = lambda: None,
        on_change: Callable[[bool], None] = lambda recording: None,
    ) -> None:
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)
        self._ring = ring
        self._identity = identity
        self._outbox = outbox
        self._pre_roll_ns = pre_roll_ns
        self._post_roll_ns = post_roll_ns
        self._location = location
        self._battery = battery_percent
        self._on_change = on_change
        self._lock = threading.Lock()
        self._open = self._restore()
        self.closed_count = 0

    @property
    def _open_path(self) -> Path:
        return self._dir / "open.json"

    def record_path(self, incident_id: str) -> Path:
        """Where a closed incident's signed record is kept."""
        return self._dir / f"{incident_id}.incident"

    @property
    def open_incident(self) -> OpenIncident | None:
        """The incident being recorded, if any."""
        return self._open

    def _persist(self, incident: OpenIncident) -> None:
        write_durably(self._open_path, json.dumps(asdict(incident)).encode())

    def _restore(self) -> OpenIncident | None:
        """Pick up an incident that was open when the badge stopped."""
        try:
            incident = OpenIncident(**json.loads(self._open_path.read_bytes()))
        except FileNotFoundError:
            return None
        # Monotonic time may have restarted with the machine: the wall-clock deadline
        # tells how much post-roll is left, never more than one full post-roll.
        remaining = min(max(incident.deadline_wall_ns - time.time_ns(), 0), self._post_roll_ns)
        incident.deadline_mono_ns = time.monotonic_ns() + remaining
        log.warning("resuming incident %s after a restart", incident.incident_id)
        self._on_change(True)
        return incident

    def press(self, mono_ns: int | None = None, wall_ns: int | None = None) -> PressOutcome:
        """Handle one press: open an incident (alert first) or extend the open one."""
        mono_ns = time.monotonic_ns() if mono_ns is None else mono_ns
        wall_ns = time.time_ns() if wall_ns is None else wall_ns
        press = Press(self._ring.boot, mono_ns, wall_ns)
        with self._lock:
            incident = self._open
            opened = incident is None
            pre_roll = None
            if incident is None:
                incident_id = new_incident_id(wall_ns)
                last_before = self._ring.next_seq - 1  # stored before the press
                pre_roll_from = mono_ns - self._pre_roll_ns
                # the alert goes into the outbox before anything else happens; it names the
                # pre-roll's first segment, which the pin below can only find later or equal
                # (a store in between may prune the oldest), so the gateway takes them all
                first_seq = self._ring.first_seq_after(pre_roll_from)
                self._outbox.put(
                    "alert",
                    incident_id,
                    sign_alert(self._identity, incident_id, press, self._location, first_seq),
                )
                pin = self._ring.pin_since(incident_id, pre_roll_from)
                incident = OpenIncident(incident_id, [], pin.first_seq, 0, 0)
                if last_before >= pin.first_seq:
                    pre_roll = (pin.first_seq, last_before)
            incident.presses.append((press.boot, press.mono_ns, press.wall_ns))
            incident.deadline_mono_ns = mono_ns + self._post_roll_ns
            incident.deadline_wall_ns = wall_ns + self._post_roll_ns
            self._persist(incident)
            self._open = incident
        if opened:
            log.info("incident %s opened by a press", incident.incident_id)
            self._on_change(True)
        return PressOutcome(incident.incident_id, opened, incident.deadline_wall_ns, pre_roll)

    def segment_stored(self, stored: StoredSegment) -> None:
        """Called for every stored segment: closes the incident once the post-roll is in."""
        with self._lock:
            incident = self._open
            if incident is None or stored.seq < incident.first_seq:
                return
            incident.last_seq = stored.seq
            if stored.header.mono_end_ns >= incident.deadline_mono_ns:
                self._close(incident, stored.seq)

    def _close(self, incident: OpenIncident, last_seq: int) -> None:
        record = IncidentRecord(
            badge_id=self._identity.badge_id,
            incident_id=incident.incident_id,
            presses=tuple(Press(*press) for press in incident.presses),
            pre_roll_ns=self._pre_roll_ns,
            post_roll_ns=self._post_roll_ns,
            first_seq=incident.first_seq,
            last_seq=last_seq,
            location=self._location,
            battery_percent=self._battery(),
            storage_free_bytes=self._ring.status().free_bytes,
            closed_wall_ns=time.time_ns(),
        )
        signed = SignedIncident.sign(record, self._identity)
        # order matters for crash safety: record on disk, then queued, then pin closed,
        # and only then is the incident no longer open
        write_durably(self.record_path(incident.incident_id), signed.to_bytes())
        self._outbox.put("incident", incident.incident_id, signed.to_bytes())
        self._ring.close_pin(incident.incident_id, last_seq)
        self._open_path.unlink()
        self._open = None
        self.closed_count += 1
        log.info(
            "incident %s closed: segments %d to %d",
            incident.incident_id,
            incident.first_seq,
            last_seq,
        )
        self._on_change(False)
