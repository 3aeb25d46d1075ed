"""The catalogue: the database rows for what the gateway holds (alerts, incidents, segments).

The bytes of a segment are in the vault; its row here names them by SHA-256 and keeps the
signed header, the badge-claimed clocks, the gateway's receipt time and the estimated
capture time with its error bound (DESIGN decision 7). Each accepted segment and alert,
each completed incident and each receipt is also a ledger entry whose leaf index its row
keeps (decision 1101); ``gateway.intake.catalogue`` writes the two in one transaction.
Alerts and incident records carry an arrival number, one more than the last, by which the
console's incident index catches up (decision 1402).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from evidence.incident import IncidentRecord, Press
from evidence.segment import CheckedSegmentBytes, SegmentHeader
from gateway.storage.database import Database, Row, blob


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
class NewAlert:
    """An alert to store: the badge-signed bytes and what the gateway read from them."""

    badge_id: str
    incident_id: str
    signed_alert: bytes
    alert_sha256: bytes
    press: Press
    location: str
    received_wall_ns: int


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
_ALERT_COLUMNS = "badge_id, incident_id, signed_alert, alert_sha256, received_wall_ns, ledger_index"
_RECEIPT_COLUMNS = "receipt_sha256, badge_id, subject, key, receipt, ledger_index, first_sent_ns"
_LAST_SEQ = 2**63 - 1
"""The largest seq SQLite can hold: the open end of a range."""
_KEYS_PER_QUERY = 500
"""Segment receipts are looked up this many seqs at a time (a bound on bound parameters)."""


class Catalogue:
    """The rows of what the gateway holds: segments, incident records, alerts and receipts."""

    def __init__(self, db: Database) -> None:
        """Use ``db``."""
        self._db = db

    # -- segments --------------------------------------------------------------------------

    def segment(self, badge_id: str, seq: int) -> StoredSegment | None:
        """The row of segment ``seq`` of ``badge_id``, if stored."""
        row = self._db.fetch_one(
            f"SELECT {_SEGMENT_COLUMNS} FROM segments WHERE badge_id = ? AND seq = ?",  # noqa: S608
            (badge_id, seq),
        )
        return None if row is None else _segment(row)

    def segments(self, badge_id: str, first_seq: int, last_seq: int) -> tuple[StoredSegment, ...]:
        """The stored segments ``first_seq..last_seq`` of a badge, in order (a key range)."""
        rows = self._db.fetch_all(
            f"SELECT {_SEGMENT_COLUMNS} FROM segments"  # noqa: S608 - fixed columns
            " WHERE badge_id = ? AND seq BETWEEN ? AND ? ORDER BY seq",
            (badge_id, first_seq, last_seq),
        )
        return tuple(_segment(row) for row in rows)

    def named_in(
        self, badge_id: str, incident_id: str, low_seq: int, high_seq: int | None, limit: int
    ) -> list[int]:
        """The seqs ``low_seq..high_seq`` (no upper bound for None) of the badge's segments
        uploaded naming ``incident_id``, in order, at most ``limit`` (a key range, filtered)."""
        rows = self._db.fetch_all(
            "SELECT seq FROM segments WHERE badge_id = ? AND seq BETWEEN ? AND ?"
            " AND incident_id = ? ORDER BY seq LIMIT ?",
            (badge_id, low_seq, _LAST_SEQ if high_seq is None else high_seq, incident_id, limit),
        )
        return [int(row[0]) for row in rows]

    def last_named(self, badge_id: str, incident_id: str, from_seq: int) -> int | None:
        """The highest seq from ``from_seq`` on of the badge's segments uploaded naming
        ``incident_id`` (None: none was)."""
        row = self._db.fetch_one(
            "SELECT MAX(seq) FROM segments WHERE badge_id = ? AND seq >= ? AND incident_id = ?",
            (badge_id, from_seq, incident_id),
        )
        return None if row is None or row[0] is None else int(row[0])

    def put_segment(
        self,
        *,
        segment: CheckedSegmentBytes,
        incident_id: str,
        sealed_sha256: bytes,
        sealed_size: int,
        received_wall_ns: int,
        capture: CaptureTime | None,
        ledger_index: int,
    ) -> StoredSegment:
        """Add a segment's row, naming the ledger leaf that records it (the caller's
        transaction holds both)."""
        header = segment.header
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
                header.digest(),
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
                ledger_index,
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
            ledger_index,
        )

    def headers(self, badge_id: str, first_seq: int, last_seq: int) -> list[bytes] | None:
        """The header bytes of every segment ``first_seq..last_seq``, or None if any is missing."""
        row = self._db.fetch_one(
            "SELECT COUNT(*) FROM segments WHERE badge_id = ? AND seq BETWEEN ? AND ?",
            (badge_id, first_seq, last_seq),
        )
        if row is None or row[0] != last_seq - first_seq + 1:
            return None
        rows = self._db.fetch_all(
            "SELECT header FROM segments WHERE badge_id = ? AND seq BETWEEN ? AND ? ORDER BY seq",
            (badge_id, first_seq, last_seq),
        )
        return [blob(row[0]) for row in rows]

    # -- incidents -------------------------------------------------------------------------

    def incident(self, badge_id: str, incident_id: str) -> StoredIncident | None:
        """The row of an incident, if its record was received."""
        row = self._db.fetch_one(
            f"SELECT {_INCIDENT_COLUMNS} FROM incidents"  # noqa: S608
            " WHERE badge_id = ? AND incident_id = ?",
            (badge_id, incident_id),
        )
        return None if row is None else StoredIncident(*row)

    def badges_with_incident(self, incident_id: str) -> list[str]:
        """Every badge that sent a record for an incident of this id, by badge id."""
        rows = self._db.fetch_all(
            "SELECT badge_id FROM incidents WHERE incident_id = ? ORDER BY badge_id",
            (incident_id,),
        )
        return [str(row[0]) for row in rows]

    def incidents_covering(self, badge_id: str, seq: int) -> list[StoredIncident]:
        """Every incident of ``badge_id`` whose segment range includes ``seq``."""
        rows = self._db.fetch_all(
            f"SELECT {_INCIDENT_COLUMNS} FROM incidents"  # noqa: S608
            " WHERE badge_id = ? AND first_seq <= ? AND last_seq >= ? ORDER BY incident_id",
            (badge_id, seq, seq),
        )
        return [StoredIncident(*row) for row in rows]

    def add_incident(
        self, record: IncidentRecord, signed_record: bytes, sha256: bytes, received_wall_ns: int
    ) -> bool:
        """Store an incident record unless one with its id is stored; say whether it was."""
        return (
            self._db.execute(
                "INSERT INTO incidents (badge_id, incident_id, first_seq, last_seq, signed_record,"
                " record_sha256, received_wall_ns, arrival) VALUES (?, ?, ?, ?, ?, ?, ?,"
                " (SELECT COALESCE(MAX(arrival), 0) + 1 FROM incidents))"
                " ON CONFLICT (badge_id, incident_id) DO NOTHING",
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
            == 1
        )

    def complete_incident(self, badge_id: str, incident_id: str, when_ns: int) -> bool:
        """Note when every segment of an incident was held, unless noted already; say if now."""
        return (
            self._db.execute(
                "UPDATE incidents SET complete_wall_ns = ? WHERE badge_id = ?"
                " AND incident_id = ? AND complete_wall_ns IS NULL",
                (when_ns, badge_id, incident_id),
            )
            == 1
        )

    def set_incident_entry(self, badge_id: str, incident_id: str, ledger_index: int) -> None:
        """Name the ledger leaf that records the completed incident."""
        self._db.execute(
            "UPDATE incidents SET ledger_index = ? WHERE badge_id = ? AND incident_id = ?",
            (ledger_index, badge_id, incident_id),
        )

    # -- alerts ----------------------------------------------------------------------------

    def alert(self, badge_id: str, incident_id: str) -> StoredAlert | None:
        """The row of an alert, if received."""
        row = self._db.fetch_one(
            f"SELECT {_ALERT_COLUMNS} FROM alerts"  # noqa: S608
            " WHERE badge_id = ? AND incident_id = ?",
            (badge_id, incident_id),
        )
        return None if row is None else StoredAlert(*row)

    def add_alert(self, alert: NewAlert) -> bool:
        """Store an alert unless its incident has one; say whether it was stored."""
        return (
            self._db.execute(
                "INSERT INTO alerts (badge_id, incident_id, signed_alert, alert_sha256,"
                " press_boot, press_mono_ns, press_wall_ns, location, received_wall_ns, arrival)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?,"
                " (SELECT COALESCE(MAX(arrival), 0) + 1 FROM alerts))"
                " ON CONFLICT (badge_id, incident_id) DO NOTHING",
                (
                    alert.badge_id,
                    alert.incident_id,
                    alert.signed_alert,
                    alert.alert_sha256,
                    alert.press.boot,
                    alert.press.mono_ns,
                    alert.press.wall_ns,
                    alert.location,
                    alert.received_wall_ns,
                ),
            )
            == 1
        )

    def set_alert_entry(self, badge_id: str, incident_id: str, ledger_index: int) -> None:
        """Name the ledger leaf that records the alert."""
        self._db.execute(
            "UPDATE alerts SET ledger_index = ? WHERE badge_id = ? AND incident_id = ?",
            (ledger_index, badge_id, incident_id),
        )

    # -- receipts --------------------------------------------------------------------------

    def receipt(self, receipt_sha256: bytes) -> StoredReceipt | None:
        """The receipt with these bytes' SHA-256, if kept."""
        row = self._db.fetch_one(
            f"SELECT {_RECEIPT_COLUMNS} FROM receipts WHERE receipt_sha256 = ?",  # noqa: S608
            (receipt_sha256,),
        )
        return None if row is None else StoredReceipt(*row)

    def add_receipt(self, receipt: StoredReceipt) -> None:
        """Keep a receipt about to be sent (inside the caller's transaction, with its entry)."""
        self._db.execute(
            f"INSERT INTO receipts ({_RECEIPT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
            (
                receipt.receipt_sha256,
                receipt.badge_id,
                receipt.subject,
                receipt.key,
                receipt.receipt,
                receipt.ledger_index,
                receipt.first_sent_ns,
            ),
        )

    def receipts(self, badge_id: str, subject: str, key: str) -> list[StoredReceipt]:
        """Every receipt kept for one subject (``segment`` and a seq, ``incident`` and an id)."""
        rows = self._db.fetch_all(
            f"SELECT {_RECEIPT_COLUMNS} FROM receipts"  # noqa: S608
            " WHERE badge_id = ? AND subject = ? AND key = ? ORDER BY ledger_index",
            (badge_id, subject, key),
        )
        return [StoredReceipt(*row) for row in rows]

    def segment_receipts(self, badge_id: str, seqs: Sequence[int]) -> list[StoredReceipt]:
        """Every receipt kept for the segments ``seqs`` of a badge, in ledger order."""
        found: list[StoredReceipt] = []
        keys = [str(seq) for seq in seqs]
        for start in range(0, len(keys), _KEYS_PER_QUERY):
            batch = keys[start : start + _KEYS_PER_QUERY]
            marks = ", ".join("?" * len(batch))
            rows = self._db.fetch_all(
                f"SELECT {_RECEIPT_COLUMNS} FROM receipts"  # noqa: S608 - placeholders only
                f" WHERE badge_id = ? AND subject = 'segment' AND key IN ({marks})",
                (badge_id, *batch),
            )
            found += (StoredReceipt(*row) for row in rows)
        return sorted(found, key=lambda receipt: receipt.ledger_index)


def _segment(row: Row) -> StoredSegment:
    """A StoredSegment from a row in ``_SEGMENT_COLUMNS`` order."""
    badge_id, seq, incident_id, sha, size, header, received, start, end, error, offset, n, leaf = (
        row
    )
    capture = None if start is None else CaptureTime(start, end, error, offset, n)
    return StoredSegment(
        badge_id, seq, incident_id, blob(sha), size, blob(header), received, capture, leaf
    )
