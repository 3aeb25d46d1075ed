"""The gateway's receipts on the badge: judged, kept durably, and only then acted on.

A receipt is what lets the badge free flash, so it is on disk (SQLite, WAL,
synchronous=FULL) before anything is deleted; the signed bytes are kept as they came, since
they are evidence that the gateway took custody. :class:`ReceiptKeeper` decides what a
receipt frees; :class:`ReceiptStore` keeps them.

This module is long because the keeper's judgement of what a receipt frees and the durable
store it keeps receipts in must agree batch by batch.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from badge.errors import BadgeError, ReceiptStoreError
from badge.outbox import Outbox, OutboxItem
from badge.ring import Ring, StoredSegment
from evidence.errors import EvidenceError
from evidence.hashing import sha256
from evidence.incident import IncidentRecord, SignedIncident
from evidence.keys import SigningPublicKey
from evidence.messages import Receipt, Rejection
from evidence.topics import parse_gateway_topic

log = logging.getLogger(__name__)

_READ_BLOCK = 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS receipts (
    subject TEXT NOT NULL CHECK (subject IN ('alert', 'segment', 'incident')),
    key TEXT NOT NULL,
    sha256 BLOB NOT NULL,
    received_wall_ns INTEGER NOT NULL,
    payload BLOB NOT NULL,
    stored_ns INTEGER NOT NULL,
    PRIMARY KEY (subject, key)
)
"""


@dataclass(frozen=True)
class StoredReceipt:
    """One accepted receipt: what it covers, the digest it names, and its signed bytes."""

    subject: str
    key: str
    sha256: bytes
    payload: bytes
    kept_wall_ns: int
    """When the badge kept it (its own wall clock)."""


class ReceiptStore:
    """Accepted receipts, one per (subject, key); safe to use from several threads."""

    def __init__(self, path: Path, busy_timeout_s: float = 5.0) -> None:
        """Open (or create) the store at ``path``; a write waits at most ``busy_timeout_s``
        for another connection's write to finish before it fails."""
        self._path = path
        try:
            self._db = sqlite3.connect(
                path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
        except sqlite3.Error as error:
            raise ReceiptStoreError(f"cannot open receipt store {path}: {error}") from None
        self._lock = threading.Lock()

    def add_all(self, receipts: Sequence[tuple[Receipt, bytes]]) -> list[bool]:
        """Keep several receipts durably in one commit (one fsync, however many there are);
        for each, False if one was already kept. On error none of them is kept."""
        if not receipts:
            return []
        added = []
        try:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for receipt, payload in receipts:
                        cursor = self._db.execute(
                            "INSERT OR IGNORE INTO receipts"
                            " (subject, key, sha256, received_wall_ns, payload, stored_ns)"
                            " VALUES (?, ?, ?, ?, ?, ?)",
                            (
                                receipt.subject,
                                receipt.key,
                                receipt.sha256,
                                receipt.received_wall_ns,
                                payload,
                                time.time_ns(),
                            ),
                        )
                        added.append(cursor.rowcount == 1)
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as error:
            what = ", ".join(f"{receipt.subject} {receipt.key!r}" for receipt, _ in receipts)
            raise ReceiptStoreError(
                f"cannot keep the receipts ({what}) in {self._path}: {error}"
            ) from None
        return added

    def get(self, subject: str, key: str) -> StoredReceipt | None:
        """The receipt kept for ``subject`` and ``key``, if any."""
        rows = self._query(
            "SELECT subject, key, sha256, payload, stored_ns FROM receipts"
            " WHERE subject = ? AND key = ?",
            (subject, key),
        )
        return StoredReceipt(*rows[0]) if rows else None

    def receipted_seqs(self, first_seq: int, last_seq: int) -> frozenset[int]:
        """Sequence numbers in ``first_seq``..``last_seq`` that have a segment receipt."""
        rows = self._query(
            "SELECT key FROM receipts WHERE subject = 'segment'"
            " AND CAST(key AS INTEGER) BETWEEN ? AND ?",
            (first_seq, last_seq),
        )
        return frozenset(int(row[0]) for row in rows)

    def all(self) -> list[StoredReceipt]:
        """Every kept receipt, oldest first."""
        rows = self._query(
            "SELECT subject, key, sha256, payload, stored_ns FROM receipts"
            " ORDER BY stored_ns, rowid",
            (),
        )
        return [StoredReceipt(*row) for row in rows]

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def _query(self, sql: str, parameters: tuple[object, ...]) -> list[tuple[Any, ...]]:
        try:
            with self._lock:
                return self._db.execute(sql, parameters).fetchall()
        except sqlite3.Error as error:
            raise ReceiptStoreError(f"cannot read receipt store {self._path}: {error}") from None


@dataclass(frozen=True)
class ReceiptCounts:
    """What the gateway has answered, as the keeper judged it."""

    receipts: int
    """Receipts accepted and kept (each frees or completes something)."""
    duplicate_receipts: int
    invalid_messages: int
    """Receipts or rejections that did not verify under the gateway's key, or not for us."""
    unmatched_receipts: int
    """Verified receipts naming something this badge does not hold, or another SHA-256."""
    rejections: Mapping[str, int]
    last_rejection: str | None
    last_error: str | None


def incident_record(item: OutboxItem) -> IncidentRecord | None:
    """The record of an outbox incident item (None, and logged, if it is not one)."""
    try:
        return SignedIncident.from_bytes(item.payload, f"outbox incident {item.key}").record
    except EvidenceError as error:
        log.error("outbox item %d is not an incident record: %s", item.item_id, error)
        return None


@dataclass(frozen=True)
class _Plan:
    """How to accept one receipt: keep it (or it was kept before), then ``free``."""

    keep: bool
    free: Callable[[], object]


class ReceiptKeeper:
    """Acts on the gateway's answers: keeps each receipt that verifies and names exactly what
    the badge holds, and only then frees it (segment released, alert or incident dequeued,
    incident unpinned once it and all its segments are receipted). Anything else frees nothing.
    """

    def __init__(
        self,
        badge_id: str,
        gateway_key: SigningPublicKey,
        ring: Ring,
        outbox: Outbox,
        store: ReceiptStore,
    ) -> None:
        """Judge receipts for ``badge_id`` against ``gateway_key``."""
        self._badge = badge_id
        self._gateway_key = gateway_key
        self._ring = ring
        self._outbox = outbox
        self.store = store
        self._lock = threading.RLock()
        self._sha: dict[int, bytes] = {}
        self._counts: dict[str, int] = {}
        self._rejections: dict[str, int] = {}
        self._last_rejection: str | None = None
        self._last_error: str | None = None

    @property
    def counts(self) -> ReceiptCounts:
        """A snapshot of the counters."""
        with self._lock:
            return ReceiptCounts(
                receipts=self._counts.get("receipts", 0),
                duplicate_receipts=self._counts.get("duplicate_receipts", 0),
                invalid_messages=self._counts.get("invalid_messages", 0),
                unmatched_receipts=self._counts.get("unmatched_receipts", 0),
                rejections=dict(self._rejections),
                last_rejection=self._last_rejection,
                last_error=self._last_error,
            )

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + 1

    def sealed_sha256(self, stored: StoredSegment) -> bytes:
        """SHA-256 of the sealed file: the ring's, or read in blocks (the file never changes
        once stored)."""
        if stored.sealed_sha256 is not None:
            return stored.sealed_sha256
        with self._lock:
            digest = self._sha.get(stored.seq)
        if digest is None:
            hasher = hashlib.sha256()
            with stored.path.open("rb") as stream:
                while block := stream.read(_READ_BLOCK):
                    hasher.update(block)
            digest = hasher.digest()
            with self._lock:
                self._sha[stored.seq] = digest
        return digest

    def receipted(self, seq: int) -> bool:
        """True when segment ``seq`` has a kept receipt."""
        return self.store.get("segment", str(seq)) is not None

    # ------------------------------------------------------------ the answers

    def on_messages(self, messages: Sequence[tuple[str, bytes]]) -> list[bool]:
        """Receipts and rejections from the gateway, as many as have arrived; for each,
        whether to acknowledge it.

        The receipts to keep are kept in one commit, and only then is anything they name
        freed. A message is acknowledged unless acting on it failed for storage reasons, in
        which case the broker delivers it again on the next connection.
        """
        answers = [True] * len(messages)
        opened = [
            (index, receipt, payload)
            for index, (topic, payload) in enumerate(messages)
            if (receipt := self._open(topic, payload)) is not None
        ]
        if not opened:
            return answers
        with self._lock:
            plans: list[tuple[int, Receipt, bytes, _Plan]] = []
            for index, receipt, payload in opened:
                try:
                    plan = self._plan(receipt)
                except (BadgeError, EvidenceError, OSError) as error:
                    answers[index] = self._failed(receipt, error)
                    continue
                if plan is not None:
                    plans.append((index, receipt, payload, plan))
            keep = [(index, receipt, payload) for index, receipt, payload, p in plans if p.keep]
            try:
                added = self.store.add_all([(receipt, payload) for _, receipt, payload in keep])
            except ReceiptStoreError as error:
                for index, receipt, _ in keep:
                    answers[index] = self._failed(receipt, error)
                plans = [item for item in plans if not item[3].keep]
                added = []
            for fresh in added:
                self._count("receipts" if fresh else "duplicate_receipts")
            for index, receipt, _, plan in plans:
                try:
                    plan.free()  # the receipt is on disk: now the badge may let go
                except (BadgeError, EvidenceError, OSError) as error:
                    answers[index] = self._failed(receipt, error)
        return answers

    def _open(self, topic: str, payload: bytes) -> Receipt | None:
        """The receipt in a gateway message; None once a rejection or a message that does not
        verify has been counted (both are acknowledged: nothing about them changes)."""
        where = f"message on {topic[:200]!r}"
        try:
            badge_id, kind = parse_gateway_topic(topic)
            if badge_id != self._badge:
                raise EvidenceError(f"{where} is for badge {badge_id}")
            if kind == "reject":
                self._rejected(Rejection.open(payload, self._gateway_key, where))
                return None
            receipt = Receipt.open(payload, self._gateway_key, where)
            if receipt.badge != self._badge:
                raise EvidenceError(f"{where} is a receipt for badge {receipt.badge}")
        except EvidenceError as error:
            self._count("invalid_messages")
            log.warning("uplink: ignored a gateway message that does not verify: %s", error)
            return None
        return receipt

    def _failed(self, receipt: Receipt, error: Exception) -> bool:
        """Note that acting on ``receipt`` failed; False: it stays unacknowledged."""
        message = f"cannot act on the {receipt.subject} receipt {receipt.key}: {error}"
        log.error("uplink: %s", message)
        with self._lock:
            self._last_error = message
        return False

    def _rejected(self, rejection: Rejection) -> None:
        text = f"{rejection.subject} {rejection.key}: {rejection.reason}: {rejection.detail}"
        log.error("uplink: the gateway rejected %s; the item stays on the badge", text)
        with self._lock:
            self._rejections[rejection.reason] = self._rejections.get(rejection.reason, 0) + 1
            self._last_rejection = text

    def _unmatched(self, receipt: Receipt, why: str) -> None:
        self._count("unmatched_receipts")
        log.error(
            "uplink: ignored the %s receipt %s: %s; nothing is freed",
            receipt.subject,
            receipt.key,
            why,
        )

    def _plan(self, receipt: Receipt) -> _Plan | None:
        """What accepting ``receipt`` takes: keep it or not, then free what it names; None
        (counted and logged) when it names nothing the badge holds."""
        kept = self.store.get(receipt.subject, receipt.key)
        if kept is not None:
            if kept.sha256 != receipt.sha256:
                self._unmatched(receipt, "it names another SHA-256 than the receipt kept")
                return None
            self._count("duplicate_receipts")
            seq = int(receipt.key) if receipt.subject == "segment" else None
            return _Plan(False, lambda: None if seq is None else self._release(seq))
        if receipt.subject == "segment":
            return self._plan_segment(receipt)
        item = next(
            (
                item
                for item in self._outbox.pending()
                if item.kind == receipt.subject and item.key == receipt.key
            ),
            None,
        )
        if item is None:
            self._unmatched(receipt, f"no {receipt.subject} {receipt.key} is waiting")
            return None
        if sha256(item.payload) != receipt.sha256:
            self._unmatched(receipt, f"its SHA-256 is not that of the {receipt.subject} sent")
            return None
        if item.kind == "alert":
            return _Plan(True, lambda: self._outbox.done(item.item_id))
        return _Plan(True, lambda: self.finish_incident(item))

    def _plan_segment(self, receipt: Receipt) -> _Plan | None:
        key = receipt.key
        stored = self._ring.segments(int(key), int(key)) if key.isdigit() else []
        if not stored or str(stored[0].seq) != key:
            self._unmatched(receipt, f"segment {key!r} is not on this badge")
            return None
        if self.sealed_sha256(stored[0]) != receipt.sha256:
            self._unmatched(receipt, "its SHA-256 is not that of the sealed segment")
            return None
        return _Plan(True, lambda: self._free_segment(stored[0].seq))

    def _free_segment(self, seq: int) -> None:
        """A segment's receipt is kept: delete it, and finish any incident it completes."""
        self._release(seq)
        for item in self._outbox.pending():
            record = incident_record(item) if item.kind == "incident" else None
            if record is not None and record.first_seq <= seq <= record.last_seq:
                self.finish_incident(item)

    def _release(self, seq: int) -> None:
        self._ring.release(seq)
        with self._lock:
            self._sha.pop(seq, None)

    def finish_incident(self, item: OutboxItem) -> bool:
        """Unpin and dequeue an incident once it and every segment of it have receipts."""
        with self._lock:
            record = incident_record(item)
            if record is None or self.store.get("incident", item.key) is None:
                return False
            receipted = self.store.receipted_seqs(record.first_seq, record.last_seq)
            if len(receipted) < record.last_seq - record.first_seq + 1:
                return False
            self._ring.unpin(record.incident_id)
            self._outbox.done(item.item_id)
        log.info("uplink: incident %s is in the gateway's custody", record.incident_id)
        return True

    def recover(self) -> None:
        """After a crash: free what the receipts kept before it allow, and nothing else."""
        with self._lock:
            for item in self._outbox.pending():
                kept = self.store.get(item.kind, item.key)
                if item.kind == "alert":
                    if kept is not None and kept.sha256 == sha256(item.payload):
                        self._outbox.done(item.item_id)
                    continue
                record = incident_record(item)
                if record is None:
                    continue
                for seq in self.store.receipted_seqs(record.first_seq, record.last_seq):
                    stored = self._ring.segments(seq, seq)
                    receipt = self.store.get("segment", str(seq))
                    if stored and receipt and self.sealed_sha256(stored[0]) == receipt.sha256:
                        self._release(seq)
                self.finish_incident(item)
