"""The intake's writes to the catalogue: each row with the ledger entry that records it.

Each accepted segment and alert, each completed incident and each receipt becomes a ledger
entry written in the same transaction as its row, whose leaf index the row keeps (decision
1101). Transactions nest by joining, so a caller can commit a segment's row and the
receipt for it at once.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TypeVar

from evidence.canonical import CanonicalValue
from evidence.hashing import sha256 as sha256_of
from evidence.incident import IncidentRecord
from evidence.messages import Receipt
from evidence.segment import CheckedSegmentBytes
from gateway.alerts.alerts import SignedAlert
from gateway.errors import IntakeError
from gateway.ledger.ledger import Ledger
from gateway.storage.catalogue import (
    CaptureTime,
    Catalogue,
    NewAlert,
    StoredAlert,
    StoredIncident,
    StoredReceipt,
    StoredSegment,
)

_Row = TypeVar("_Row")


class Cataloguer:
    """Writes what the intake accepts into the catalogue, each row with its ledger entry."""

    def __init__(self, ledger: Ledger) -> None:
        """Write to ``ledger`` and, in the same transactions, to its storage's catalogue."""
        self._ledger = ledger
        self._storage = ledger.storage
        self._rows = ledger.storage.catalogue

    @property
    def catalogue(self) -> Catalogue:
        """The catalogue it writes to, for reading."""
        return self._rows

    def transaction(self) -> AbstractContextManager[bool]:
        """One write transaction (taken at once, so concurrent writers queue, not fail).

        Inside an open one it joins it: the outermost commits everything, or nothing, once.
        """
        return self._storage.transaction()

    def insert_segment(
        self,
        *,
        segment: CheckedSegmentBytes,
        incident_id: str,
        sealed_sha256: bytes,
        sealed_size: int,
        received_wall_ns: int,
        capture: CaptureTime | None,
    ) -> StoredSegment:
        """Add a segment's row and ledger entry (inside ``transaction``, once the vault has it)."""
        header = segment.header
        with self.transaction():
            index = self._ledger.append(
                "segment",
                {
                    "badge": header.badge_id,
                    "seq": header.seq,
                    "incident": incident_id,
                    "sealed_sha256": sealed_sha256,
                    "sealed_size": sealed_size,
                    "header_sha256": header.digest(),
                    "received_wall_ns": received_wall_ns,
                    "capture_start_ns": None if capture is None else capture.start_ns,
                    "capture_end_ns": None if capture is None else capture.end_ns,
                    "capture_error_ns": None if capture is None else capture.error_ns,
                },
            )
            return self._rows.put_segment(
                segment=segment,
                incident_id=incident_id,
                sealed_sha256=sealed_sha256,
                sealed_size=sealed_size,
                received_wall_ns=received_wall_ns,
                capture=capture,
                ledger_index=index,
            )

    def add_incident(
        self, record: IncidentRecord, signed_record: bytes, sha256: bytes, received_wall_ns: int
    ) -> StoredIncident:
        """Store an incident record unless one with its id is stored; return the stored row."""
        with self.transaction():
            self._rows.add_incident(record, signed_record, sha256, received_wall_ns)
        return _present(self._rows.incident(record.badge_id, record.incident_id), "incident")

    def mark_complete(self, badge_id: str, incident_id: str, when_ns: int) -> StoredIncident:
        """Note when every segment of an incident was held, with its ledger entry (once)."""
        with self.transaction():
            if self._rows.complete_incident(badge_id, incident_id, when_ns):
                marked = _present(self._rows.incident(badge_id, incident_id), "incident")
                index = self._ledger.append("incident", _incident_body(marked))
                self._rows.set_incident_entry(badge_id, incident_id, index)
        return _present(self._rows.incident(badge_id, incident_id), "incident")

    def add_alert(
        self, alert: SignedAlert, signed_alert: bytes, sha256: bytes, received_wall_ns: int
    ) -> tuple[StoredAlert, bool]:
        """Store an alert and its ledger entry unless its incident has one; say if it is new."""
        row = NewAlert(
            alert.badge_id,
            alert.incident_id,
            signed_alert,
            sha256,
            alert.press,
            alert.location,
            received_wall_ns,
        )
        with self.transaction():
            new = self._rows.add_alert(row)
            if new:
                index = self._ledger.append("alert", _alert_body(alert, sha256, received_wall_ns))
                self._rows.set_alert_entry(alert.badge_id, alert.incident_id, index)
        stored = _present(self._rows.alert(alert.badge_id, alert.incident_id), "alert")
        return stored, new

    def record_receipt(self, receipt: Receipt, signed: bytes, sent_ns: int) -> StoredReceipt:
        """Keep a receipt about to be sent, with its ledger entry, unless it is kept already.

        A resent receipt has the same bytes (the same facts, deterministically signed), so
        the ledger holds each receipt once however often a badge asks for it.
        """
        digest = sha256_of(signed)
        if not self._storage.in_transaction:  # a resend needs no write lock
            stored = self._rows.receipt(digest)
            if stored is not None:
                return stored
        with self.transaction():
            stored = self._rows.receipt(digest)
            if stored is not None:
                return stored
            index = self._ledger.append(
                "receipt",
                {
                    "badge": receipt.badge,
                    "subject": receipt.subject,
                    "key": receipt.key,
                    "sha256": receipt.sha256,
                    "receipt_sha256": digest,
                },
            )
            kept = StoredReceipt(
                digest, receipt.badge, receipt.subject, receipt.key, signed, index, sent_ns
            )
            self._rows.add_receipt(kept)
        return kept


def _incident_body(incident: StoredIncident) -> dict[str, CanonicalValue]:
    """The ledger body of a completed incident."""
    return {
        "badge": incident.badge_id,
        "incident": incident.incident_id,
        "record_sha256": incident.record_sha256,
        "first_seq": incident.first_seq,
        "last_seq": incident.last_seq,
        "received_wall_ns": incident.received_wall_ns,
        "complete_wall_ns": incident.complete_wall_ns,
    }


def _alert_body(
    alert: SignedAlert, sha256: bytes, received_wall_ns: int
) -> dict[str, CanonicalValue]:
    """The ledger body of an alert: the badge's claims about the press, and when it arrived."""
    return {
        "badge": alert.badge_id,
        "incident": alert.incident_id,
        "alert_sha256": sha256,
        "press_boot": alert.press.boot,
        "press_mono_ns": alert.press.mono_ns,
        "press_wall_ns": alert.press.wall_ns,
        "location": alert.location,
        "received_wall_ns": received_wall_ns,
    }


def _present(row: _Row | None, what: str) -> _Row:
    """``row``, which the write just before guarantees; IntakeError if the database lost it."""
    if row is None:
        raise IntakeError(f"{what} is missing from the gateway database right after writing it")
    return row
