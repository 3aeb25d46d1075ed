"""The intake: every message a badge sends, checked, stored durably, and answered.

For each message, in order (docs/protocol.md): the topic parses and names an enrolled,
unrevoked badge; the payload decodes; its signature verifies under that badge's key; the
record names the same badge as the topic. A segment, once its chunks are all on disk, is
checked again as a whole (SHA-256, format, badge signature, an incident covering its seq,
the chain link to its stored neighbours), stored in the vault (fsynced) first, then given
its row, its ledger entry and its receipt (itself a ledger entry) in one database
transaction, and the receipt is sent only once that has committed. An incident is
receipted once every segment of its range is stored and the chain over the range is
intact (the completion and its receipt also commit together), and then the ledger is
checkpointed. The ledger is checked against its last checkpoint when the intake starts.

A segment's storing may be handed to a second stage (``hand_off_to``, decision 1503): a
second Intake on its own database connection, sharing this one's partial segments, stores
completed segments in order on its own thread (``store``) while this one reassembles the
next. This one then waits for that stage before whatever depends on what it stores: an
incident record, a chunk of a segment still being stored, the sweep of timed-out partials.

Anything refused gets a signed rejection (if the badge is known), a log line, a count and a
copy in quarantine; nothing raises out of ``handle`` or ``store``. The state that matters
is on disk or in the database, so a restarted or a second intake process picks up where
another left off; only the partial segments must stay with one process (decision 0701).

This module is long because each kind of message is checked, stored and answered in order in
one place; what stands alone (reassembly, the segment store, the catalogue writes, the
message checks, quarantine) has its own module.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from evidence.chain import check_chain
from evidence.errors import EvidenceError
from evidence.hashing import sha256
from evidence.identifiers import validate_incident_id
from evidence.incident import SignedIncident
from evidence.messages import Heartbeat, Receipt, Rejection, SegmentChunk, Status
from evidence.segment import SegmentHeader
from evidence.topics import badge_topic, gateway_topic, parse_badge_topic
from gateway.alerts.alerts import AlertEvent, SignedAlert, alert_event
from gateway.broker.config import DEFAULT_MAX_PACKET_BYTES
from gateway.config import IntakeLimits
from gateway.datadir import GatewayDataDir
from gateway.enrolment.registry import EnrolmentView
from gateway.errors import EnrolmentError, IntakeError, Reason, RejectedMessageError
from gateway.intake.catalogue import Cataloguer
from gateway.intake.checks import opened, same_badge, within_int64
from gateway.intake.clock import BadgeClocks
from gateway.intake.cutoff import RefusalWindow
from gateway.intake.log_limit import LogLimit
from gateway.intake.quarantine import Quarantine
from gateway.intake.reassembly import DEFAULT_TIMEOUT_NS, PartialSegment, Reassembly
from gateway.intake.segments import SegmentStore
from gateway.ledger.custody import CustodyLog
from gateway.ledger.ledger import Ledger, open_ledger
from gateway.storage.badges import EnrolledBadge
from gateway.storage.catalogue import StoredIncident, StoredSegment
from gateway.storage.clock_samples import ClockSample
from gateway.storage.cutoffs import Cutoff
from gateway.storage.reserve import DiskReserve
from gateway.storage.vault import Vault
from gateway.timestamping.timestamper import Timestamper

log = logging.getLogger(__name__)

PARTIAL_DIR = "partial"
QUARANTINE_DIR = "quarantine"
MAX_PAYLOAD_BYTES = DEFAULT_MAX_PACKET_BYTES
"""The broker refuses bigger packets; the intake refuses them too, whatever the broker does."""
MAX_SEGMENT_BYTES = 64 * 1024 * 1024
"""A 2 s segment is about 1 MB at 1080p; 64 MiB leaves room and bounds what one seq can cost."""
SWEEP_INTERVAL_NS = 60 * 1_000_000_000
_MAX_DETAIL = 300

Publish = Callable[[str, bytes], None]
AlertListener = Callable[[AlertEvent], None]


class SegmentHandoff(Protocol):
    """Where an intake hands complete segments to be stored by a second stage."""

    def store_later(self, badge: EnrolledBadge, partial: PartialSegment, received: int) -> None:
        """Store ``partial`` after every segment handed over before it."""

    def wait_stored(self, badge_id: str | None = None, seq: int | None = None) -> None:
        """Return once no segment handed over (of ``badge_id``, with ``seq``; None: any) is
        still waiting to be stored."""


class Intake:
    """Handles badge messages one at a time: call ``handle`` for each, in arrival order."""

    def __init__(
        self,
        data_dir: GatewayDataDir,
        publish: Publish,
        on_alert: AlertListener,
        *,
        clock: Callable[[], int] = time.time_ns,
        partial_timeout_ns: int = DEFAULT_TIMEOUT_NS,
        timestamper: Timestamper | None = None,
        partials: Reassembly | None = None,
        verify_ledger: bool = True,
        limits: IntakeLimits | None = None,
    ) -> None:
        """Open the data directory's storage, ledger, partial and quarantine directories.

        ``publish(topic, payload)`` sends receipts and rejections (QoS 1); ``on_alert`` is
        called with each new alert once it is stored; ``clock`` gives gateway wall time (ns);
        ``timestamper`` time-stamps ledger checkpoints; ``partials`` shares another intake's
        partial segments (a second stage's). A ledger that differs from its last checkpoint
        raises LedgerIntegrityError: the intake refuses to run on it (``verify_ledger``
        False skips that check, for a second stage opened just after an intake that made it).
        ``limits`` bound what refused messages may cost (quarantine quotas, disk reserve).
        """
        data_dir.require_initialised()
        self._storage = data_dir.storage()
        try:
            self.ledger: Ledger = open_ledger(
                data_dir, self._storage, timestamper=timestamper, clock=clock, verify=verify_ledger
            )
        except BaseException:
            self._storage.close()
            raise
        self._signing_key = data_dir.signing_key()
        self._publish = publish
        self._on_alert = on_alert
        self._clock = clock
        self._registry = EnrolmentView(self._storage.badges, self._storage.cutoffs)
        self._cataloguer = Cataloguer(self.ledger)
        self._custody = CustodyLog(self.ledger)
        self._catalogue = self._storage.catalogue
        self._states = self._storage.badge_states
        self._clocks = BadgeClocks(self._storage.clock_samples)
        self.vault: Vault = self._storage.vault
        self._segments = SegmentStore(self._cataloguer, self.vault, self._clocks)
        limits = limits or IntakeLimits()
        self.reserve = DiskReserve(data_dir.root, limits.reserve)
        self.quarantine = Quarantine(
            data_dir.root / QUARANTINE_DIR,
            quotas=limits.quarantine,
            reserve=self.reserve,
            clock=clock,
        )
        self._log_limit = LogLimit()
        self._refusals = RefusalWindow(limits.cutoff)
        self.partials = partials or Reassembly(
            data_dir.root / PARTIAL_DIR, timeout_ns=partial_timeout_ns, clock=clock
        )
        self._handoff: SegmentHandoff | None = None
        self._next_sweep_ns: int | None = None
        self._handlers: dict[str, Callable[[EnrolledBadge, bytes, int], None]] = {
            "alert": self._alert,
            "heartbeat": self._heartbeat,
            "status": self._status,
            "incident": self._incident,
            "segment": self._chunk,
        }

    def close(self) -> None:
        """Close the database connection."""
        self._storage.close()

    def counts(self) -> dict[str, int]:
        """Refusals so far per reason code (survives restarts; see Quarantine.counts)."""
        return self.quarantine.counts()

    def hand_off_to(self, handoff: SegmentHandoff) -> None:
        """Hand complete segments to ``handoff`` to store instead of storing them here."""
        self._handoff = handoff

    def handle(self, topic: str, payload: bytes) -> None:
        """Check, store and answer one message; never raises."""
        received = self._clock()
        self._sweep_if_due(received)
        badge_id = None
        kind = "message"
        try:
            badge, kind = self._sender(topic)
            badge_id = badge.badge_id
            if len(payload) > MAX_PAYLOAD_BYTES:
                raise RejectedMessageError(
                    Reason.OVERSIZED,
                    f"{kind} of {len(payload)} bytes exceeds the limit of {MAX_PAYLOAD_BYTES}",
                )
            self._handlers[kind](badge, payload, received)
        except RejectedMessageError as rejection:
            self._refuse(topic, payload, badge_id, rejection.about(kind))
        except Exception as error:
            self._failed(topic, payload, badge_id, kind, error)

    def store(self, badge: EnrolledBadge, partial: PartialSegment, received: int) -> None:
        """Store a complete segment another intake reassembled (``hand_off_to``); never raises."""
        topic = badge_topic(badge.badge_id, "segment")
        try:
            self._complete(badge, partial, received)
        except RejectedMessageError as rejection:
            self._refuse(topic, b"", badge.badge_id, rejection.about("segment"))
        except Exception as error:
            self._failed(topic, b"", badge.badge_id, "segment", error)

    def expire_partials(self) -> int:
        """Move partial segments with no chunk for the timeout into quarantine; say how many."""
        expired = self.partials.expired()
        for partial in expired:
            self._expire(partial)
        return len(expired)

    # -- who sent it ---------------------------------------------------------------------

    def _sender(self, topic: str) -> tuple[EnrolledBadge, str]:
        """The enrolled, unrevoked badge whose topic this is, and the message kind."""
        try:
            badge_id, kind = parse_badge_topic(topic)
        except EvidenceError as error:
            raise RejectedMessageError(Reason.MALFORMED, f"not a badge topic: {error}") from None
        try:
            badge = self._registry.get(badge_id)
        except EnrolmentError:
            raise RejectedMessageError(
                Reason.UNKNOWN_BADGE, f"badge {badge_id} is not enrolled", subject=kind
            ) from None
        if badge.revoked_at_ns is not None:
            raise RejectedMessageError(
                Reason.UNKNOWN_BADGE, f"badge {badge_id} is revoked", subject=kind
            )
        if self._registry.is_cut_off(badge_id):
            raise RejectedMessageError(
                Reason.CUT_OFF, f"badge {badge_id} is cut off until an administrator lifts it"
            )
        return badge, kind

    # -- the five kinds of message ---------------------------------------------------------

    def _alert(self, badge: EnrolledBadge, payload: bytes, received: int) -> None:
        where = f"alert from badge {badge.badge_id}"
        alert = opened(lambda: SignedAlert.open(payload, badge.public_key, where))
        same_badge(alert.badge_id, badge, "alert", alert.incident_id)
        within_int64(
            where, alert.press.boot, alert.press.mono_ns, alert.press.wall_ns, alert.first_seq
        )
        digest = sha256(payload)
        stored, new = self._cataloguer.add_alert(alert, payload, digest, received)
        if stored.alert_sha256 != digest:
            raise RejectedMessageError(
                Reason.CONFLICT,
                f"a different alert for incident {alert.incident_id} is already stored",
                key=alert.incident_id,
            )
        if new:
            self._announce(badge, alert, received)
        self._receipt(badge.badge_id, "alert", alert.incident_id, digest, stored.received_wall_ns)

    def _announce(self, badge: EnrolledBadge, alert: SignedAlert, received: int) -> None:
        """Give the console the alert, with the press in gateway time when the clock is known."""
        estimate = self._clocks.estimate(badge.badge_id, alert.press.boot)
        press = alert.press
        pressed = None
        if estimate is not None and estimate.boot == press.boot:
            pressed = estimate.gateway_time(press.wall_ns, press.mono_ns)
        event = alert_event(
            badge_id=badge.badge_id,
            wearer=badge.wearer,
            registered_location=badge.location,
            location=alert.location,
            incident_id=alert.incident_id,
            press=press,
            received_wall_ns=received,
            press_estimate=pressed,
        )
        try:
            self._on_alert(event)
        except Exception:
            log.exception("alert listener failed on incident %s", alert.incident_id)

    def _heartbeat(self, badge: EnrolledBadge, payload: bytes, received: int) -> None:
        where = f"heartbeat from badge {badge.badge_id}"
        heartbeat = opened(lambda: Heartbeat.open(payload, badge.public_key, where))
        same_badge(heartbeat.badge, badge, "heartbeat", "")
        within_int64(
            where,
            heartbeat.boot,
            heartbeat.mono_ns,
            heartbeat.wall_ns,
            heartbeat.battery_percent or 0,
            heartbeat.storage_free_bytes,
            heartbeat.ring_bytes,
            heartbeat.ring_segments,
            heartbeat.pinned_segments,
            heartbeat.dropped_frames,
            heartbeat.outbox_pending,
            heartbeat.battery_millivolts or 0,
            abs(heartbeat.battery_rate_millipercent_per_hour or 0),
            abs(heartbeat.soc_temperature_millicelsius or 0),
        )
        sample = ClockSample(heartbeat.boot, heartbeat.mono_ns, heartbeat.wall_ns, received)
        self._clocks.record(badge.badge_id, sample)
        estimate = self._clocks.estimate(badge.badge_id, heartbeat.boot)
        reading = None if estimate is None else estimate.reading_at(heartbeat.mono_ns)
        self._states.heartbeat(heartbeat, received, reading)

    def _status(self, badge: EnrolledBadge, payload: bytes, received: int) -> None:
        where = f"status of badge {badge.badge_id}"
        status = opened(lambda: Status.from_bytes(payload, where))
        same_badge(status.badge, badge, "status", "")
        within_int64(where, status.boot)
        self._states.status(badge.badge_id, status.state == "online", status.boot, received)

    def _incident(self, badge: EnrolledBadge, payload: bytes, received: int) -> None:
        if self._handoff is not None:  # its receipt depends on every segment being stored
            self._handoff.wait_stored(badge.badge_id)
        where = f"incident record from badge {badge.badge_id}"
        signed = opened(lambda: SignedIncident.from_bytes(payload, where))
        record = signed.record
        opened(lambda: signed.verify(badge.public_key), key=record.incident_id)
        same_badge(record.badge_id, badge, "incident", record.incident_id)
        within_int64(where, record.first_seq, record.last_seq)
        digest = sha256(payload)
        stored = self._cataloguer.add_incident(record, payload, digest, received)
        if stored.record_sha256 != digest:
            raise RejectedMessageError(
                Reason.CONFLICT,
                f"a different record for incident {record.incident_id} is already stored",
                key=record.incident_id,
            )
        self._settle(stored, resend=True)

    def _chunk(self, badge: EnrolledBadge, payload: bytes, received: int) -> None:
        where = f"segment chunk from badge {badge.badge_id}"
        chunk = opened(lambda: SegmentChunk.from_bytes(payload, where))
        key = str(chunk.seq)
        same_badge(chunk.badge, badge, "segment", key)
        opened(lambda: validate_incident_id(chunk.incident), key=key)
        within_int64(where, chunk.seq, chunk.total_size)
        if chunk.total_size > MAX_SEGMENT_BYTES:
            raise RejectedMessageError(
                Reason.OVERSIZED,
                f"segment {chunk.seq} of {chunk.total_size} bytes exceeds the limit of "
                f"{MAX_SEGMENT_BYTES}",
                key=key,
            )
        # a chunk carrying on a partial in order was checked with the partial's first chunk
        if not self.partials.continues(chunk) and self._answered_as_repeat(badge, chunk):
            return
        partial = self.partials.add(chunk, on_stale=self._expire)
        if partial.complete and self._handoff is not None:
            self._handoff.store_later(badge, partial, received)
        elif partial.complete:
            self._complete(badge, partial, received)

    # -- segments --------------------------------------------------------------------------

    def _answered_as_repeat(self, badge: EnrolledBadge, chunk: SegmentChunk) -> bool:
        """Answer a chunk of a stored segment (True); refuse one no incident covers.

        A partial carried on in order began with a chunk that passed these checks, and its
        segment cannot be stored before it is complete, so its next chunks skip them.
        """
        if self._handoff is not None:  # a repeat of a segment being stored waits for it
            self._handoff.wait_stored(badge.badge_id, chunk.seq)
        stored = self._catalogue.segment(badge.badge_id, chunk.seq)
        if stored is not None:
            self._repeat(stored, chunk.sealed_sha256)
            return True
        self._require_incident(badge.badge_id, chunk.seq, chunk.incident)
        return False

    def _repeat(self, stored: StoredSegment, sealed_sha256: bytes) -> None:
        """A chunk of a stored segment: the same receipt again, or a conflict."""
        if stored.sealed_sha256 != sealed_sha256:
            raise RejectedMessageError(
                Reason.CONFLICT,
                f"a different segment {stored.seq} is already stored",
                key=str(stored.seq),
            )
        self._segment_receipt(stored)

    def _require_incident(self, badge_id: str, seq: int, incident_id: str) -> None:
        """Refuse a segment that no incident record covers, unless the chunk names an open
        incident (its alert stored, its record not yet) whose pre-roll starts at or before it:
        the badge sends the pre-roll while the post-roll is still being recorded."""
        if self._catalogue.incidents_covering(badge_id, seq):
            return
        alert = self._catalogue.alert(badge_id, incident_id)
        if alert is not None and self._catalogue.incident(badge_id, incident_id) is None:
            where = f"stored alert of incident {incident_id}"
            first_seq = SignedAlert.read(alert.signed_alert, where).first_seq
            if first_seq <= seq:
                return
            raise RejectedMessageError(
                Reason.UNEXPECTED_SEGMENT,
                f"segment {seq} comes before the pre-roll of open incident {incident_id}, "
                f"which starts at segment {first_seq}",
                key=str(seq),
            )
        raise RejectedMessageError(
            Reason.UNEXPECTED_SEGMENT,
            f"no incident record of badge {badge_id} covers segment {seq}, and incident "
            f"{incident_id} is not open (no alert, or its record names other segments)",
            key=str(seq),
        )

    def _complete(self, badge: EnrolledBadge, partial: PartialSegment, received: int) -> None:
        """A reassembled segment: check it, store it, receipt it; quarantine it if refused.

        The segment's row, its ledger entry and its receipt's commit together, once.
        """
        try:
            accepted = self._segments.accept(badge, partial)
            with self._cataloguer.transaction():
                stored = self._segments.record(accepted, received)
                receipt = self._kept_segment_receipt(stored)
        except RejectedMessageError as rejection:
            rejection.evidence_path = partial.path
            raise
        self._send(gateway_topic(badge.badge_id, "receipt"), receipt)
        self.partials.discard(badge.badge_id, partial.seq, durably=False)
        for incident in self._catalogue.incidents_covering(badge.badge_id, partial.seq):
            self._settle(incident, resend=False)

    def _expire(self, partial: PartialSegment) -> None:
        """Quarantine a partial segment that timed out (the badge sends it again in full);
        remove one whose segment is stored already (a power cut undid its removal)."""
        stored = self._catalogue.segment(partial.badge_id, partial.seq)
        if stored is not None and stored.sealed_sha256 == partial.sealed_sha256:
            log.info(
                "badge %s: removed the leftover partial of stored segment %d",
                partial.badge_id,
                partial.seq,
            )
            self.partials.discard(partial.badge_id, partial.seq)
            return
        detail = (
            f"partial segment {partial.seq} timed out with {partial.received_bytes} of "
            f"{partial.total_size} bytes"
        )
        log.warning("badge %s: %s", partial.badge_id, detail)
        topic = badge_topic(partial.badge_id, "segment")
        self._keep(
            topic,
            b"",
            badge_id=partial.badge_id,
            reason=Reason.PARTIAL_TIMEOUT,
            detail=detail,
            path=partial.path,
        )
        self.partials.discard(partial.badge_id, partial.seq)

    def _sweep_if_due(self, now: int) -> None:
        if self._next_sweep_ns is not None and now < self._next_sweep_ns:
            return
        self._next_sweep_ns = now + SWEEP_INTERVAL_NS
        if self._handoff is not None:
            self._handoff.wait_stored()
        try:
            self.expire_partials()
        except Exception:
            log.exception("could not sweep timed-out partial segments")

    # -- incidents -------------------------------------------------------------------------

    def _settle(self, incident: StoredIncident, *, resend: bool) -> None:
        """Receipt an incident whose segments are all stored and chained (again if ``resend``).

        Closing it (the first time) also checkpoints the ledger, once the receipt is out.
        """
        if incident.complete_wall_ns is None:
            headers = self._catalogue.headers(
                incident.badge_id, incident.first_seq, incident.last_seq
            )
            if headers is None:
                return
            where = f"incident {incident.incident_id}"
            report = check_chain([SegmentHeader.decode(item, where) for item in headers])
            if not report.intact:
                self._refuse(
                    badge_topic(incident.badge_id, "incident"),
                    incident.signed_record,
                    incident.badge_id,
                    RejectedMessageError(
                        Reason.CHAIN_BREAK,
                        "; ".join(finding.message for finding in report.breaks),
                        subject="incident",
                        key=incident.incident_id,
                    ),
                )
                return
            with self._cataloguer.transaction():  # the completion and its receipt, one commit
                marked = self._cataloguer.mark_complete(
                    incident.badge_id, incident.incident_id, self._clock()
                )
                receipt = self._kept_incident_receipt(marked)
            self._send(gateway_topic(incident.badge_id, "receipt"), receipt)
            self._checkpoint(incident.incident_id)
        elif resend:
            receipt = self._kept_incident_receipt(incident)
            self._send(gateway_topic(incident.badge_id, "receipt"), receipt)

    def _checkpoint(self, incident_id: str) -> None:
        """Checkpoint the ledger; a failure is logged, as everything is stored and receipted."""
        try:
            self.ledger.checkpoint()
        except Exception:
            log.exception(
                "no ledger checkpoint after incident %s; the schedule makes one later", incident_id
            )

    # -- answers ---------------------------------------------------------------------------

    def _segment_receipt(self, stored: StoredSegment) -> None:
        self._send(gateway_topic(stored.badge_id, "receipt"), self._kept_segment_receipt(stored))

    def _kept_segment_receipt(self, stored: StoredSegment) -> bytes:
        return self._kept_receipt(
            stored.badge_id,
            "segment",
            str(stored.seq),
            stored.sealed_sha256,
            stored.received_wall_ns,
        )

    def _kept_incident_receipt(self, incident: StoredIncident) -> bytes:
        complete = incident.complete_wall_ns
        if complete is None:
            raise IntakeError(f"incident {incident.incident_id} is receipted before it is complete")
        return self._kept_receipt(
            incident.badge_id, "incident", incident.incident_id, incident.record_sha256, complete
        )

    def _receipt(self, badge_id: str, subject: str, key: str, digest: bytes, when: int) -> None:
        signed = self._kept_receipt(badge_id, subject, key, digest, when)
        self._send(gateway_topic(badge_id, "receipt"), signed)

    def _kept_receipt(
        self, badge_id: str, subject: str, key: str, digest: bytes, when: int
    ) -> bytes:
        """Sign a receipt and keep it with its ledger entry (in the caller's transaction, if
        one is open); return it for sending once that has committed."""
        receipt = Receipt(badge_id, subject, key, digest, when)
        signed = receipt.sign(self._signing_key)
        self._cataloguer.record_receipt(receipt, signed, self._clock())
        return signed

    def _refuse(
        self, topic: str, payload: bytes, badge_id: str | None, rejection: RejectedMessageError
    ) -> None:
        """Log, count and quarantine a refusal, and tell the badge when it is a known one."""
        detail = rejection.detail[:_MAX_DETAIL]
        self._keep(
            topic,
            payload,
            badge_id=badge_id,
            reason=rejection.reason,
            detail=detail,
            path=rejection.evidence_path,
        )
        if rejection.evidence_path is not None:
            self.partials.discard_path(rejection.evidence_path)
        if badge_id is None:
            return
        if self._refusals.refused(badge_id):
            self._cut_off(badge_id, f"{rejection.reason}: {detail}")
        message = Rejection(badge_id, rejection.subject, rejection.key, rejection.reason, detail)
        self._send(gateway_topic(badge_id, "reject"), message.sign(self._signing_key))

    def _cut_off(self, badge_id: str, last: str) -> None:
        """Record that ``badge_id`` is cut off (the broker disables it at once, decision
        1702), in the custody log too; never raises."""
        settings = self._refusals.settings
        window_ns = self._refusals.window_ns
        cutoff = Cutoff(badge_id, self._clock(), settings.refusals + 1, window_ns, last)
        try:
            with self._cataloguer.transaction():
                if self._storage.cutoffs.cut_off(cutoff):
                    detail = {"refusals": cutoff.refusals, "window_ns": cutoff.window_ns}
                    self._custody.record("gateway", "cut-off", badge_id, detail=detail)
        except Exception:
            log.exception("could not record the cut-off of badge %s", badge_id)
            return
        self._registry.mark_cut_off(badge_id)
        log.error(
            "badge %s cut off at the broker: more than %d refused messages within %s s "
            "(last: %s); an administrator lifts it in the badge list",
            badge_id,
            settings.refusals,
            settings.window_seconds,
            last,
        )

    def _failed(
        self, topic: str, payload: bytes, badge_id: str | None, kind: str, error: Exception
    ) -> None:
        """Log and keep a message the gateway itself failed on (``internal-error``)."""
        log.exception("intake failed on a %s message on %r", kind, topic[:200])
        detail = f"the gateway failed on this {kind}: {type(error).__name__}: {error}"
        self._keep(
            topic,
            payload,
            badge_id=badge_id,
            reason=Reason.INTERNAL_ERROR,
            detail=detail,
            path=None,
        )

    def _keep(
        self,
        topic: str,
        payload: bytes,
        *,
        badge_id: str | None,
        reason: Reason,
        detail: str,
        path: Path | None,
    ) -> None:
        """Log and quarantine (the file at ``path`` if given, else ``payload``); never raises.

        An unknown, revoked or cut-off badge's bytes are not kept, only their metadata,
        which names the badge its topic claims.
        """
        allowed, unlogged = self._log_limit.allow(badge_id)
        if allowed:
            more = f" ({unlogged} refusals before this were not logged)" if unlogged else ""
            log.warning(
                "refused (%s) from %s on %r: %s%s", reason, badge_id, topic[:200], detail, more
            )
        wanted = reason not in (Reason.UNKNOWN_BADGE, Reason.CUT_OFF)
        if badge_id is None and not wanted:
            badge_id = _claimed_badge(topic)
        try:
            if path is not None and path.exists():
                self.quarantine.keep_file(
                    path,
                    badge=badge_id,
                    topic=topic,
                    reason=reason,
                    detail=detail,
                    bytes_wanted=wanted,
                )
            else:
                self.quarantine.keep(
                    payload,
                    badge=badge_id,
                    topic=topic,
                    reason=reason,
                    detail=detail,
                    bytes_wanted=wanted,
                )
        except Exception:
            log.exception("could not quarantine a refused message on %r", topic[:200])

    def _send(self, topic: str, payload: bytes) -> None:
        try:
            self._publish(topic, payload)
        except Exception:
            # the badge keeps the item and sends it again; the duplicate gets this answer
            log.exception("could not publish on %s", topic)


def _claimed_badge(topic: str) -> str | None:
    """The badge a topic names, if it is a well-formed badge topic."""
    try:
        return parse_badge_topic(topic)[0]
    except EvidenceError:
        return None
