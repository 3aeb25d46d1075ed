"""The catalogue: the database rows for what the gateway holds (alerts, incidents, segments).

The bytes of a segment are in the vault; its row here names them by SHA-256 and keeps the
signed header, the badge-claimed clocks, the gateway's receipt time and the estimated
capture time with its error bound (DESIGN decision 7). Each accepted segment and alert,
each completed incident and each receipt also becomes a ledger entry, written in the same
transaction as its row, whose leaf index the row keeps (decision 1101). Transactions nest
by joining, so a caller can commit a segment's row and the receipt for it at once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from evidence.canonical import CanonicalValue
from evidence.hashing import sha256 as sha256_of
from evidence.incident import IncidentRecord
from evidence.messages import Receipt
from evidence.segment import CheckedSegmentBytes, SegmentHeader
from gateway.alerts.alerts import SignedAlert
from gateway.errors import IntakeError
from gateway.ledger.ledger import Ledger, write_transaction

_Row = TypeVar("_Row")


@dataclass(frozen=True)
class CaptureTime:
    """When a segment was captured, in gateway time, as far as the badge's clock model says."""

    start_ns: int
    end_ns: int
    error_ns: int
    offset_ns: int
    samples: int


@dataclass(frozen=True)
class StoredSegment:
    """A segment's row."""

    badge_id: str
    seq: int
    incident_id: str
    sealed_sha256: bytes
    sealed_size: int
    header_bytes: bytes
    received_wall_ns: int
    capture: CaptureTime | None
    ledger_index: int | None = None
    """The ledger leaf that records the segment (None for rows older than the ledger)."""

    @property
    def header(self) -> SegmentHeader:
        """The badge-signed header (checked when the segment was accepted)."""
        return SegmentHeader.decode(self.header_bytes, f"stored segment {self.seq}")


@dataclass(frozen=True)
class StoredIncident:
    """An incident record's row; ``complete_wall_ns`` is set once every segment is held."""

    badge_id: str
    incident_id: str
    first_seq: int
    last_seq: int
    signed_record: bytes
    record_sha256: bytes
    received_wall_ns: int
    complete_wall_ns: int | None
    ledger_index: int | None = None
    """The ledger leaf that records the completed incident (None until it is complete)."""


@dataclass(frozen=True)
class StoredAlert:
    """An alert's row."""

    badge_id: str
    incident_id: str
    signed_alert: bytes
    alert_sha256: bytes
    received_wall_ns: int
    ledger_index: int | None = None
    """The ledger leaf that records the alert."""


@dataclass(frozen=True)
class StoredReceipt:
    """A receipt the gateway signed, as first sent, and the ledger leaf that records it."""

    receipt_sha256: bytes
    badge_id: str
    subject: str
    key: str
    receipt: bytes
    ledger_index: int
    first_sent_ns: int


_SEGMENT_COLUMNS = (
    "badge_id, seq, incident_id, sealed_sha256, sealed_size, header, received_wall_ns,"
    " capture_start_ns, capture_end_ns, capture_error_ns, clock_offset_ns, clock_samples,"
    " ledger_index"
)
_INCIDENT_COLUMNS = (
    "badge_id, incident_id, first_seq, last_seq, signed_record, record_sha256,"
    " received_wall_ns, complete_wall_ns, ledger_index"
)
_RECEIPT_COLUMNS = "receipt_sha256, badge_id, subject, key, receipt, ledger_index, first_sent_ns"


class Catalogue:
    """Reads and writes the intake's rows in the gateway database."""

    def __init__(self, connection: sqlite3.Connection, ledger: Ledger | None = None) -> None:
        """Use the gateway database ``connection`` (schema from gateway.storage.database).

        ``ledger`` must be on the same connection; without it the catalogue only reads.
        """
        self._db = connection
        self._ledger = ledger

    def _ledger_for(self, what: str) -> Ledger:
        if self._ledger is None:
            raise IntakeError(f"this catalogue has no ledger, so it cannot store {what}")
        return self._ledger

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction (taken at once, so concurrent writers queue, not fail).

        Inside an open one it joins it: the outermost commits everything, or nothing, once.
        """
        with write_transaction(self._db):
            yield

    def segment(self, badge_id: str, seq: int) -> StoredSegment | None:
        """The row of segment ``seq`` of ``badge_id``, if stored."""
        row = self._db.execute(
            f"SELECT {_SEGMENT_COLUMNS} FROM segments WHERE badge_id = ? AND seq = ?",  # noqa: S608
            (badge_id, seq),
        ).fetchone()
        return None if row is None else _segment(row)

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
        header_sha256 = header.digest()  # encoded once: the ledger's and the row's
        index = self._ledger_for(f"segment {header.seq}").append(
            "segment",
            {
                "badge": header.badge_id,
                "seq": header.seq,
                "incident": incident_id,
                "sealed_sha256": sealed_sha256,
                "sealed_size": sealed_size,
                "header_sha256": header_sha256,
                "received_wall_ns": received_wall_ns,
                "capture_start_ns": None if capture is None else capture.start_ns,
                "capture_end_ns": None if capture is None else capture.end_ns,
                "capture_error_ns": None if capture is None else capture.error_ns,
            },
        )
        self._db.execute(
            "INSERT INTO segments (badge_id, seq, incident_id, sealed_sha256, sealed_size,"
            " header, header_sha256, prev_sha256, boot, mono_start_ns, mono_end_ns,"
            " badge_wall_start_ns, badge_wall_end_ns, received_wall_ns, capture_start_ns,"
            " capture_end_ns, capture_error_ns, clock_offset_ns, clock_samples, ledger_index)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                header.badge_id,
                header.seq,
                incident_id,
                sealed_sha256,
                sealed_size,
                segment.header_bytes,
                header_sha256,
                header.previous_header_sha256,
                header.boot,
                header.mono_start_ns,
                header.mono_end_ns,
                header.wall_start_ns,
                header.wall_end_ns,
                received_wall_ns,
                None if capture is None else capture.start_ns,
                None if capture is None else capture.end_ns,
                None if capture is None else capture.error_ns,
                None if capture is None else capture.offset_ns,
                0 if capture is None else capture.samples,
                index,
            ),
        )
        return StoredSegment(
            header.badge_id,
            header.seq,
            incident_id,
            sealed_sha256,
            sealed_size,
            segment.header_bytes,
            received_wall_ns,
            capture,
            index,
        )

    def headers(self, badge_id: str, first_seq: int, last_seq: int) -> list[bytes] | None:
        """The header bytes of every segment ``first_seq..last_seq``, or None if any is missing."""
        (count,) = self._db.execute(
            "SELECT COUNT(*) FROM segments WHERE badge_id = ? AND seq BETWEEN ? AND ?",
            (badge_id, first_seq, last_seq),
        ).fetchone()
        if count != last_seq - first_seq + 1:
            return None
        rows = self._db.execute(
            "SELECT header FROM segments WHERE badge_id = ? AND seq BETWEEN ? AND ? ORDER BY seq",
            (badge_id, first_seq, last_seq),
        ).fetchall()
        return [row[0] for row in rows]

    def incident(self, badge_id: str, incident_id: str) -> StoredIncident | None:
        """The row of an incident, if its record was received."""
        row = self._db.execute(
            f"SELECT {_INCIDENT_COLUMNS} FROM incidents"  # noqa: S608
            " WHERE badge_id = ? AND incident_id = ?",
            (badge_id, incident_id),
        ).fetchone()
        return None if row is None else StoredIncident(*row)

    def incidents_covering(self, badge_id: str, seq: int) -> list[StoredIncident]:
        """Every incident of ``badge_id`` whose segment range includes ``seq``."""
        rows = self._db.execute(
            f"SELECT {_INCIDENT_COLUMNS} FROM incidents"  # noqa: S608
            " WHERE badge_id = ? AND first_seq <= ? AND last_seq >= ? ORDER BY incident_id",
            (badge_id, seq, seq),
        ).fetchall()
        return [StoredIncident(*row) for row in rows]

    def add_incident(
        self, record: IncidentRecord, signed_record: bytes, sha256: bytes, received_wall_ns: int
    ) -> StoredIncident:
        """Store an incident record unless one with its id is stored; return the stored row."""
        with self.transaction():
            self._db.execute(
                "INSERT OR IGNORE INTO incidents (badge_id, incident_id, first_seq, last_seq,"
                " signed_record, record_sha256, received_wall_ns) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.badge_id,
                    record.incident_id,
                    record.first_seq,
                    record.last_seq,
                    signed_record,
                    sha256,
                    received_wall_ns,
                ),
            )
        return _present(self.incident(record.badge_id, record.incident_id), "incident")

    def mark_complete(self, badge_id: str, incident_id: str, when_ns: int) -> StoredIncident:
        """Note when every segment of an incident was held, with its ledger entry (once)."""
        ledger = self._ledger_for(f"incident {incident_id}")
        with self.transaction():
            cursor = self._db.execute(
                "UPDATE incidents SET complete_wall_ns = ? WHERE badge_id = ?"
                " AND incident_id = ? AND complete_wall_ns IS NULL",
                (when_ns, badge_id, incident_id),
            )
            if cursor.rowcount == 1:
                marked = _present(self.incident(badge_id, incident_id), "incident")
                index = ledger.append("incident", _incident_body(marked))
                self._db.execute(
                    "UPDATE incidents SET ledger_index = ? WHERE badge_id = ? AND incident_id = ?",
                    (index, badge_id, incident_id),
                )
        return _present(self.incident(badge_id, incident_id), "incident")

    def alert(self, badge_id: str, incident_id: str) -> StoredAlert | None:
        """The row of an alert, if received."""
        row = self._db.execute(
            "SELECT badge_id, incident_id, signed_alert, alert_sha256, received_wall_ns,"
            " ledger_index FROM alerts WHERE badge_id = ? AND incident_id = ?",
            (badge_id, incident_id),
        ).fetchone()
        return None if row is None else StoredAlert(*row)

    def add_alert(
        self, alert: SignedAlert, signed_alert: bytes, sha256: bytes, received_wall_ns: int
    ) -> tuple[StoredAlert, bool]:
        """Store an alert and its ledger entry unless its incident has one; say if it is new."""
        ledger = self._ledger_for(f"the alert of incident {alert.incident_id}")
        with self.transaction():
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO alerts (badge_id, incident_id, signed_alert, alert_sha256,"
                " press_boot, press_mono_ns, press_wall_ns, location, received_wall_ns)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    alert.badge_id,
                    alert.incident_id,
                    signed_alert,
                    sha256,
                    alert.press.boot,
                    alert.press.mono_ns,
                    alert.press.wall_ns,
                    alert.location,
                    received_wall_ns,
                ),
            )
            new = cursor.rowcount == 1
            if new:
                index = ledger.append("alert", _alert_body(alert, sha256, received_wall_ns))
                self._db.execute(
                    "UPDATE alerts SET ledger_index = ? WHERE badge_id = ? AND incident_id = ?",
                    (index, alert.badge_id, alert.incident_id),
                )
        stored = _present(self.alert(alert.badge_id, alert.incident_id), "alert")
        return stored, new

    def record_receipt(self, receipt: Receipt, signed: bytes, sent_ns: int) -> StoredReceipt:
        """Keep a receipt about to be sent, with its ledger entry, unless it is kept already.

        A resent receipt has the same bytes (the same facts, deterministically signed), so
        the ledger holds each receipt once however often a badge asks for it.
        """
        digest = sha256_of(signed)
        if not self._db.in_transaction:  # a resend needs no write lock
            stored = self._receipt(digest)
            if stored is not None:
                return stored
        ledger = self._ledger_for(f"the receipt for {receipt.subject} {receipt.key}")
        with self.transaction():
            stored = self._receipt(digest)
            if stored is not None:
                return stored
            index = ledger.append(
                "receipt",
                {
                    "badge": receipt.badge,
                    "subject": receipt.subject,
                    "key": receipt.key,
                    "sha256": receipt.sha256,
                    "receipt_sha256": digest,
                },
            )
            self._db.execute(
                f"INSERT INTO receipts ({_RECEIPT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                (digest, receipt.badge, receipt.subject, receipt.key, signed, index, sent_ns),
            )
        return StoredReceipt(
            digest, receipt.badge, receipt.subject, receipt.key, signed, index, sent_ns
        )

    def receipts(self, badge_id: str, subject: str, key: str) -> list[StoredReceipt]:
        """Every receipt kept for one subject (``segment`` and a seq, ``incident`` and an id)."""
        rows = self._db.execute(
            f"SELECT {_RECEIPT_COLUMNS} FROM receipts"  # noqa: S608
            " WHERE badge_id = ? AND subject = ? AND key = ? ORDER BY ledger_index",
            (badge_id, subject, key),
        ).fetchall()
        return [StoredReceipt(*row) for row in rows]

    def _receipt(self, receipt_sha256: bytes) -> StoredReceipt | None:
        row = self._db.execute(
            f"SELECT {_RECEIPT_COLUMNS} FROM receipts WHERE receipt_sha256 = ?",  # noqa: S608
            (receipt_sha256,),
        ).fetchone()
        return None if row is None else StoredReceipt(*row)


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


def _segment(row: Any) -> StoredSegment:
    """A StoredSegment from a row in ``_SEGMENT_COLUMNS`` order."""
    badge_id, seq, incident_id, sha, size, header, received, start, end, error, offset, n, leaf = (
        row
    )
    capture = None if start is None else CaptureTime(start, end, error, offset, n)
    return StoredSegment(badge_id, seq, incident_id, sha, size, header, received, capture, leaf)


def _present(row: _Row | None, what: str) -> _Row:
    """``row``, which the write just before guarantees; IntakeError if the database lost it."""
    if row is None:
        raise IntakeError(f"{what} is missing from the gateway database right after writing it")
    return row
