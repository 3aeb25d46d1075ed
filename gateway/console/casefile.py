"""What the console shows of one incident: its stored parts, a timeline, and their verification.

Verification here is the gateway checking its own store, as the court's verifier later checks
an export: every segment's bytes in the vault hash to what was receipted and carry the
badge's signature, the headers form one unbroken chain over the incident's range, the
incident record is signed by the badge, and every ledger leaf is included under the latest
signed checkpoint.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from evidence.chain import check_chain
from evidence.errors import EvidenceError
from evidence.hashing import sha256
from evidence.incident import IncidentRecord, SignedIncident
from evidence.keys import CustodianPrivateKey, SigningPublicKey
from evidence.ledger.checkpoint import open_note
from evidence.ledger.merkle import leaf_hash, verify_inclusion
from evidence.segment import SealedSegment
from gateway.errors import GatewayError, PlaybackError
from gateway.ledger.custody import CustodyEntry
from gateway.ledger.ledger import Ledger, SignedCheckpoint
from gateway.storage.badges import BadgeRegistry
from gateway.storage.catalogue import (
    CaptureTime,
    Catalogue,
    StoredAlert,
    StoredIncident,
    StoredReceipt,
    StoredSegment,
)
from gateway.storage.incident_index import IncidentSummary
from gateway.storage.vault import Vault

Verdict = Literal["verified", "incomplete", "failed"]
_SEGMENT_COLUMNS = (
    "badge_id, seq, incident_id, sealed_sha256, sealed_size, header, received_wall_ns,"
    " capture_start_ns, capture_end_ns, capture_error_ns, clock_offset_ns, clock_samples,"
    " ledger_index"
)


@dataclass(frozen=True)
class IncidentEvidence:
    """Everything stored about one incident."""

    summary: IncidentSummary
    alert: StoredAlert | None
    incident: StoredIncident | None
    record: IncidentRecord | None
    segments: tuple[StoredSegment, ...]
    receipts: tuple[StoredReceipt, ...]
    checkpoint: SignedCheckpoint | None

    @property
    def expected_segments(self) -> int:
        """How many segments the incident record names (0 before the record arrives)."""
        return 0 if self.record is None else self.record.last_seq - self.record.first_seq + 1

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
class Verification:
    """The outcome of checking an incident's stored evidence."""

    verdict: Verdict
    findings: tuple[str, ...]
    """What was checked and passed, or what failed or is still missing."""
    checkpoint: SignedCheckpoint | None


def gather(
    connection: sqlite3.Connection, ledger: Ledger, summary: IncidentSummary
) -> IncidentEvidence:
    """Read an incident's alert, record, segments, receipts and the latest checkpoint."""
    catalogue = Catalogue(connection)
    badge, incident_id = summary.badge_id, summary.incident_id
    incident = catalogue.incident(badge, incident_id)
    record = None
    segments: tuple[StoredSegment, ...] = ()
    if incident is not None:
        record = SignedIncident.from_bytes(incident.signed_record, "stored incident").record
        segments = segments_between(connection, badge, incident.first_seq, incident.last_seq)
    receipts = [
        *catalogue.receipts(badge, "alert", incident_id),
        *catalogue.receipts(badge, "incident", incident_id),
        *_segment_receipts(connection, badge, [segment.seq for segment in segments]),
    ]
    return IncidentEvidence(
        summary=summary,
        alert=catalogue.alert(badge, incident_id),
        incident=incident,
        record=record,
        segments=segments,
        receipts=tuple(receipts),
        checkpoint=ledger.latest_checkpoint(),
    )


def segments_between(
    connection: sqlite3.Connection, badge_id: str, first_seq: int, last_seq: int
) -> tuple[StoredSegment, ...]:
    """The stored segments ``first_seq..last_seq`` of a badge, in order (a primary-key range)."""
    rows = connection.execute(
        f"SELECT {_SEGMENT_COLUMNS} FROM segments"  # noqa: S608 - fixed columns
        " WHERE badge_id = ? AND seq BETWEEN ? AND ? ORDER BY seq",
        (badge_id, first_seq, last_seq),
    ).fetchall()
    return tuple(_stored_segment(row) for row in rows)


def _stored_segment(row: Sequence[Any]) -> StoredSegment:
    badge_id, seq, incident_id, sha, size, header, received, start, end, error, offset, n, leaf = (
        row
    )
    capture = None if start is None else CaptureTime(start, end, error, offset, n)
    return StoredSegment(badge_id, seq, incident_id, sha, size, header, received, capture, leaf)


def _segment_receipts(
    connection: sqlite3.Connection, badge_id: str, seqs: list[int]
) -> list[StoredReceipt]:
    if not seqs:
        return []
    rows = connection.execute(
        "SELECT receipt_sha256, badge_id, subject, key, receipt, ledger_index, first_sent_ns"
        " FROM receipts WHERE badge_id = ? AND subject = 'segment'"
        " AND key IN (SELECT value FROM json_each(?)) ORDER BY ledger_index",
        (badge_id, "[" + ",".join(f'"{seq}"' for seq in seqs) + "]"),
    ).fetchall()
    return [StoredReceipt(*row) for row in rows]


def timeline(
    evidence: IncidentEvidence,
    actions: Sequence[tuple[str, str, int]],
    custody: Sequence[CustodyEntry],
) -> list[TimelineEvent]:
    """The incident's history in time order: presses, arrivals, segments, receipts, actions."""
    events: list[TimelineEvent] = []
    record = evidence.record
    if record is not None:
        for number, press in enumerate(record.presses, start=1):
            events.append(
                TimelineEvent(press.wall_ns, "press", f"button press {number}", clock="badge")
            )
    if evidence.alert is not None:
        events.append(
            TimelineEvent(evidence.alert.received_wall_ns, "alert", "alert received by the gateway")
        )
    if evidence.incident is not None:
        events.append(
            TimelineEvent(
                evidence.incident.received_wall_ns,
                "record",
                f"incident record received: segments {evidence.incident.first_seq}"
                f"..{evidence.incident.last_seq}",
            )
        )
        if evidence.incident.complete_wall_ns is not None:
            events.append(
                TimelineEvent(evidence.incident.complete_wall_ns, "complete", "every segment held")
            )
    for segment in evidence.segments:
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
    for receipt in evidence.receipts:
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
    if evidence.checkpoint is not None:
        events.append(
            TimelineEvent(
                evidence.checkpoint.created_at_ns,
                "checkpoint",
                f"latest ledger checkpoint: {evidence.checkpoint.size} entries",
            )
        )
    return sorted(events, key=lambda event: event.at_ns)


def verify(
    evidence: IncidentEvidence, registry: BadgeRegistry, vault: Vault, ledger: Ledger
) -> Verification:
    """Check the stored evidence of one incident; never raises for what it finds."""
    findings: list[str] = []
    failures: list[str] = []
    missing: list[str] = []
    badge_id = evidence.summary.badge_id
    keys = [key for _, key in registry.key_history(badge_id)]
    if evidence.incident is None:
        missing.append("the incident record has not arrived yet")
    else:
        _check_record(evidence.incident, keys, findings, failures)
        held = len(evidence.segments)
        if held < evidence.expected_segments:
            missing.append(f"{held} of {evidence.expected_segments} segments are held so far")
        if evidence.segments:
            _check_segments(evidence.segments, keys, vault, findings, failures)
    _check_ledger(evidence, ledger, findings, failures, missing)
    verdict: Verdict = "failed" if failures else "incomplete" if missing else "verified"
    return Verification(verdict, tuple(failures + missing + findings), evidence.checkpoint)


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
            data = vault.get(stored.sealed_sha256).read_bytes()
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
    evidence: IncidentEvidence,
    ledger: Ledger,
    findings: list[str],
    failures: list[str],
    missing: list[str],
) -> None:
    indexes = [segment.ledger_index for segment in evidence.segments]
    for stored in (evidence.alert, evidence.incident):
        indexes.append(None if stored is None else stored.ledger_index)
    leaves = [index for index in indexes if index is not None]
    checkpoint = evidence.checkpoint
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
            sealed = SealedSegment.from_bytes(vault.get(stored.sealed_sha256).read_bytes(), where)
            yield sealed.open(custodian)
        except (GatewayError, EvidenceError, OSError) as error:
            raise PlaybackError(f"{where} cannot be opened for playback: {error}") from None
