"""The console's case file of one incident: its stored parts, a timeline, and a store check.

The store check is the gateway checking its own store before anything is exported, not the
court's verifier (``evidence.verify`` checks an exported package): every segment's bytes in
the vault hash to what was receipted and carry the badge's signature, the headers form one
unbroken chain over the incident's range, the incident record is signed by the badge, and
every ledger leaf is included under the latest signed checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from evidence.chain import check_chain
from evidence.errors import EvidenceError
from evidence.hashing import sha256
from evidence.incident import IncidentRecord, Press, SignedIncident
from evidence.keys import CustodianPrivateKey, SigningPublicKey
from evidence.ledger.checkpoint import open_note
from evidence.ledger.merkle import leaf_hash, verify_inclusion
from evidence.segment import SealedSegment
from gateway.alerts.alerts import SignedAlert
from gateway.console.span import IncidentSpan, span_of
from gateway.errors import GatewayError, PlaybackError
from gateway.ledger.custody import CustodyEntry
from gateway.ledger.ledger import Ledger, SignedCheckpoint
from gateway.storage.badges import BadgeRegistry
from gateway.storage.catalogue import (
    StoredAlert,
    StoredIncident,
    StoredReceipt,
    StoredSegment,
)
from gateway.storage.incident_index import IncidentSummary
from gateway.storage.vault import Vault

Verdict = Literal["verified", "incomplete", "failed"]


@dataclass(frozen=True)
class CaseFile:
    """Everything stored about one incident."""

    summary: IncidentSummary
    alert: StoredAlert | None
    incident: StoredIncident | None
    record: IncidentRecord | None
    span: IncidentSpan
    segments: tuple[StoredSegment, ...]
    """The stored segments of the span: the pre-roll on, from the alert's first segment."""
    receipts: tuple[StoredReceipt, ...]
    checkpoint: SignedCheckpoint | None

    @property
    def expected_segments(self) -> int:
        """How many segments the incident record names (0 before the record arrives)."""
        return 0 if self.record is None else self.record.last_seq - self.record.first_seq + 1

    @property
    def presses(self) -> tuple[Press, ...]:
        """Every press: the record's, or while it records the alert's one."""
        if self.record is not None:
            return self.record.presses
        return () if self.span.alert is None else (self.span.alert.press,)

    @property
    def recording(self) -> bool:
        """True while the badge still records the incident (alert stored, record not yet)."""
        return self.span.recording

    @property
    def complete(self) -> bool:
        """True once the gateway holds every segment the record names."""
        return self.incident is not None and self.incident.complete_wall_ns is not None


@dataclass(frozen=True)
class TimelineEvent:
    """One moment in an incident's history."""

    at_ns: int
    kind: str
    text: str
    clock: str = "gateway"
    """Whose clock dates it: "gateway" (trusted), "estimated" (badge clock corrected), "badge"."""


@dataclass(frozen=True)
class StoreCheck:
    """The outcome of checking what the gateway stores of an incident."""

    verdict: Verdict
    findings: tuple[str, ...]
    """What was checked and passed, or what failed or is still missing."""
    checkpoint: SignedCheckpoint | None


def gather(ledger: Ledger, summary: IncidentSummary) -> CaseFile:
    """Read an incident's alert, record, segments, receipts and the latest checkpoint."""
    catalogue = ledger.storage.catalogue
    badge, incident_id = summary.badge_id, summary.incident_id
    incident = catalogue.incident(badge, incident_id)
    alert = catalogue.alert(badge, incident_id)
    record = None
    if incident is not None:
        record = SignedIncident.from_bytes(incident.signed_record, "stored incident").record
    signed_alert = None if alert is None else SignedAlert.read(alert.signed_alert, "stored alert")
    span = span_of(catalogue, badge, incident_id, signed_alert, record)
    segments = span.segments(catalogue)
    receipts = [
        *catalogue.receipts(badge, "alert", incident_id),
        *catalogue.receipts(badge, "incident", incident_id),
        *catalogue.segment_receipts(badge, [segment.seq for segment in segments]),
    ]
    return CaseFile(
        summary=summary,
        alert=alert,
        incident=incident,
        record=record,
        span=span,
        segments=segments,
        receipts=tuple(receipts),
        checkpoint=ledger.latest_checkpoint(),
    )


def timeline(
    case: CaseFile,
    actions: Sequence[tuple[str, str, int]],
    custody: Sequence[CustodyEntry],
) -> list[TimelineEvent]:
    """The incident's history in time order: presses, arrivals, segments, receipts, actions."""
    events: list[TimelineEvent] = []
    for number, press in enumerate(case.presses, start=1):
        events.append(
            TimelineEvent(press.wall_ns, "press", f"button press {number}", clock="badge")
        )
    if case.alert is not None:
        events.append(
            TimelineEvent(case.alert.received_wall_ns, "alert", "alert received by the gateway")
        )
    if case.incident is not None:
        events.append(
            TimelineEvent(
                case.incident.received_wall_ns,
                "record",
                f"incident record received: segments {case.incident.first_seq}"
                f"..{case.incident.last_seq}",
            )
        )
        if case.incident.complete_wall_ns is not None:
            events.append(
                TimelineEvent(case.incident.complete_wall_ns, "complete", "every segment held")
            )
    for segment in case.segments:
        if segment.capture is not None:
            events.append(
                TimelineEvent(
                    segment.capture.start_ns,
                    "capture",
                    f"segment {segment.seq} recorded (+/- {segment.capture.error_ns / 1e6:.0f} ms)",
                    clock="estimated",
                )
            )
        events.append(
            TimelineEvent(segment.received_wall_ns, "segment", f"segment {segment.seq} stored")
        )
    for receipt in case.receipts:
        events.append(
            TimelineEvent(
                receipt.first_sent_ns,
                "receipt",
                f"receipt sent for {receipt.subject} {receipt.key}",
            )
        )
    for action, username, at_ns in actions:
        events.append(TimelineEvent(at_ns, action, f"{action} by {username}"))
    for entry in custody:
        if entry.action in ("acknowledge", "resolve"):
            continue  # shown once, from the alert's actions
        why = f": {entry.justification}" if entry.justification else ""
        text = f"{entry.action} by {entry.actor}{why}"
        events.append(TimelineEvent(entry.at_ns, "custody", text))
    if case.checkpoint is not None:
        events.append(
            TimelineEvent(
                case.checkpoint.created_at_ns,
                "checkpoint",
                f"latest ledger checkpoint: {case.checkpoint.size} entries",
            )
        )
    return sorted(events, key=lambda event: event.at_ns)


def check_store(
    case: CaseFile, registry: BadgeRegistry, vault: Vault, ledger: Ledger
) -> StoreCheck:
    """Check the stored evidence of one incident; never raises for what it finds."""
    findings: list[str] = []
    failures: list[str] = []
    missing: list[str] = []
    badge_id = case.summary.badge_id
    keys = [key for _, key in registry.key_history(badge_id)]
    failures.extend(case.span.inconsistencies(ledger.storage.catalogue))
    if case.incident is None:
        missing.append("the incident record has not arrived yet")
        if case.segments:
            _check_segments(case.segments, keys, vault, findings, failures)
    else:
        _check_record(case.incident, keys, findings, failures)
        held = len(case.segments)
        if held < case.expected_segments:
            missing.append(f"{held} of {case.expected_segments} segments are held so far")
        if case.segments:
            _check_segments(case.segments, keys, vault, findings, failures)
    _check_ledger(case, ledger, findings, failures, missing)
    verdict: Verdict = "failed" if failures else "incomplete" if missing else "verified"
    return StoreCheck(verdict, tuple(failures + missing + findings), case.checkpoint)


def _check_record(
    incident: StoredIncident, keys: list[SigningPublicKey], findings: list[str], failures: list[str]
) -> None:
    signed = SignedIncident.from_bytes(incident.signed_record, "stored incident record")
    if _signed_by_any(signed.verify, keys):
        findings.append("the incident record carries the badge's signature")
    else:
        failures.append("the incident record's signature does not verify under the badge's keys")
    if sha256(incident.signed_record) != incident.record_sha256:
        failures.append("the incident record does not hash to its receipted SHA-256")


def _check_segments(
    segments: tuple[StoredSegment, ...],
    keys: list[SigningPublicKey],
    vault: Vault,
    findings: list[str],
    failures: list[str],
) -> None:
    for stored in segments:
        where = f"segment {stored.seq}"
        try:
            data = _read(vault, stored)
            if sha256(data) != stored.sealed_sha256:
                failures.append(f"{where}: the vault's bytes do not hash to the receipted SHA-256")
                continue
            sealed = SealedSegment.from_bytes(data, where)
        except (GatewayError, EvidenceError, OSError) as error:
            failures.append(f"{where}: {error}")
            continue
        if not _signed_by_any(sealed.verify, keys):
            failures.append(f"{where}: the badge's signature does not verify")
    report = check_chain([stored.header for stored in segments])
    if report.intact:
        findings.append(
            f"{len(segments)} segments: bytes match their receipts, badge signatures verify, "
            "the chain is unbroken"
        )
    else:
        failures.extend(finding.message for finding in report.breaks)


def _check_ledger(
    case: CaseFile,
    ledger: Ledger,
    findings: list[str],
    failures: list[str],
    missing: list[str],
) -> None:
    indexes = [segment.ledger_index for segment in case.segments]
    for stored in (case.alert, case.incident):
        indexes.append(None if stored is None else stored.ledger_index)
    leaves = [index for index in indexes if index is not None]
    checkpoint = case.checkpoint
    if checkpoint is None:
        missing.append("no signed ledger checkpoint exists yet")
        return
    try:
        open_note(checkpoint.note, [ledger.verifier])
    except EvidenceError as error:
        failures.append(f"the latest checkpoint's signature does not verify: {error}")
        return
    covered = [index for index in leaves if index < checkpoint.size]
    if len(covered) < len(leaves):
        missing.append(
            f"{len(leaves) - len(covered)} ledger entries are newer than the latest checkpoint"
        )
    for index in covered:
        try:
            proof = ledger.inclusion_proof(index, checkpoint.size)
            verify_inclusion(
                leaf_hash(ledger.leaf(index)), index, checkpoint.size, proof, checkpoint.root
            )
        except EvidenceError as error:
            failures.append(f"ledger entry {index}: {error}")
            return
    if covered:
        stamp = "time-stamped" if checkpoint.timestamp_token else "not time-stamped"
        findings.append(
            f"{len(covered)} ledger entries are included under signed checkpoint "
            f"{checkpoint.number} ({checkpoint.size} entries, {stamp})"
        )


def _signed_by_any(check: Callable[[SigningPublicKey], None], keys: list[SigningPublicKey]) -> bool:
    for key in keys:
        try:
            check(key)
        except EvidenceError:
            continue
        return True
    return False


def plaintexts(
    segments: Sequence[StoredSegment], vault: Vault, custodian: CustodianPrivateKey
) -> Iterator[bytes]:
    """Each segment's decrypted MPEG-TS bytes, in order, decrypting one at a time."""
    for stored in segments:
        where = f"segment {stored.seq} of badge {stored.badge_id}"
        try:
            sealed = SealedSegment.from_bytes(_read(vault, stored), where)
            yield sealed.open(custodian)
        except (GatewayError, EvidenceError, OSError) as error:
            raise PlaybackError(f"{where} cannot be opened for playback: {error}") from None


def _read(vault: Vault, stored: StoredSegment) -> bytes:
    """The sealed segment as the vault holds it."""
    with vault.open(stored.sealed_sha256) as stream:
        return stream.read()
