"""The badge's receipt keeper on its own: real SQLite, a real ring and real signatures.

A batch of gateway answers is kept in one commit and only then acted on; a batch that
cannot be kept frees nothing and is left unacknowledged, so the broker delivers it again.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from badge.outbox import Outbox
from badge.receipts import ReceiptKeeper, ReceiptStore
from badge.ring import Ring
from evidence.hashing import sha256
from evidence.incident import Press, sign_alert
from evidence.keys import BadgeIdentity, CustodianPrivateKey, SigningKey
from evidence.messages import Receipt, Rejection
from evidence.topics import gateway_topic
from tests.badge.recording import Recorder

SECOND = 1_000_000_000
BADGE = "badge-r"


@dataclass
class Keeping:
    """A badge's ring, outbox and receipt store, the keeper over them and the gateway's key."""

    ring: Ring
    outbox: Outbox
    store: ReceiptStore
    keeper: ReceiptKeeper
    gateway_key: SigningKey
    identity: BadgeIdentity
    recorder: Recorder

    def store_segments(self, count: int) -> list[int]:
        stored = self.recorder.store(self.ring, count, first_index=self.ring.next_seq, size=20_000)
        return [segment.seq for segment in stored]

    def segment_receipt(self, seq: int) -> tuple[str, bytes]:
        stored = self.ring.segments(seq, seq)[0]
        digest = sha256(stored.path.read_bytes())
        receipt = Receipt(BADGE, "segment", str(seq), digest, time.time_ns())
        return gateway_topic(BADGE, "receipt"), receipt.sign(self.gateway_key)

    def alert_receipt(self, incident_id: str, payload: bytes) -> tuple[str, bytes]:
        receipt = Receipt(BADGE, "alert", incident_id, sha256(payload), time.time_ns())
        return gateway_topic(BADGE, "receipt"), receipt.sign(self.gateway_key)

    def on_ring(self) -> list[int]:
        return [stored.seq for stored in self.ring.segments(0)]


@pytest.fixture
def keeping(tmp_path: Path) -> Iterator[Keeping]:
    ring = Ring.open(tmp_path / "ring", pre_roll_ns=3600 * SECOND, max_bytes=50_000_000)
    outbox = Outbox(tmp_path / "outbox.db")
    store = ReceiptStore(tmp_path / "receipts.db", busy_timeout_s=0.2)
    gateway_key = SigningKey.generate()
    keeper = ReceiptKeeper(BADGE, gateway_key.public_key, ring, outbox, store)
    identity = BadgeIdentity.generate(BADGE)
    recorder = Recorder(identity, CustodianPrivateKey.generate())
    yield Keeping(ring, outbox, store, keeper, gateway_key, identity, recorder)
    outbox.close()
    store.close()


def queued_alert(keeping: Keeping, incident_id: str) -> bytes:
    press = Press(keeping.ring.boot, time.monotonic_ns(), time.time_ns())
    alert = sign_alert(keeping.identity, incident_id, press, "ER", 0)
    keeping.outbox.put("alert", incident_id, alert)
    return alert


def test_a_batch_is_kept_then_everything_it_names_is_freed(keeping: Keeping) -> None:
    seqs = keeping.store_segments(3)
    alert = queued_alert(keeping, "incident-1")
    batch = [keeping.segment_receipt(seq) for seq in seqs]
    batch.append(keeping.alert_receipt("incident-1", alert))

    assert keeping.keeper.on_messages(batch) == [True] * 4

    assert keeping.on_ring() == []
    assert keeping.outbox.pending() == []
    kept = {(receipt.subject, receipt.key) for receipt in keeping.store.all()}
    assert kept == {("segment", str(seq)) for seq in seqs} | {("alert", "incident-1")}
    assert keeping.keeper.counts.receipts == 4


def test_a_batch_that_cannot_be_kept_frees_nothing_and_is_not_acknowledged(
    keeping: Keeping, tmp_path: Path
) -> None:
    seqs = keeping.store_segments(3)
    alert = queued_alert(keeping, "incident-2")
    batch = [keeping.segment_receipt(seq) for seq in seqs]
    batch.append(keeping.alert_receipt("incident-2", alert))
    batch.append((gateway_topic(BADGE, "receipt"), b"not a receipt"))

    other = sqlite3.connect(tmp_path / "receipts.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another writer holds the store past the busy timeout
    try:
        answers = keeping.keeper.on_messages(batch)
    finally:
        other.execute("ROLLBACK")
        other.close()

    assert answers == [False, False, False, False, True], "only the invalid one is acknowledged"
    assert keeping.on_ring() == seqs, "nothing was freed"
    assert [item.kind for item in keeping.outbox.pending()] == ["alert"]
    assert keeping.store.all() == []
    counts = keeping.keeper.counts
    assert counts.receipts == 0 and counts.invalid_messages == 1
    assert counts.last_error is not None and "locked" in counts.last_error

    # the broker delivers the unacknowledged ones again: now they are kept and acted on
    assert keeping.keeper.on_messages(batch[:4]) == [True] * 4
    assert keeping.on_ring() == []
    assert keeping.outbox.pending() == []
    assert keeping.keeper.counts.receipts == 4


def test_the_same_receipt_twice_in_a_batch_is_kept_once(keeping: Keeping) -> None:
    (seq,) = keeping.store_segments(1)
    receipt = keeping.segment_receipt(seq)

    assert keeping.keeper.on_messages([receipt, receipt]) == [True, True]

    assert keeping.on_ring() == []
    assert [(kept.subject, kept.key) for kept in keeping.store.all()] == [("segment", str(seq))]
    counts = keeping.keeper.counts
    assert (counts.receipts, counts.duplicate_receipts) == (1, 1)


def test_a_rejection_in_a_batch_is_counted_and_frees_nothing(keeping: Keeping) -> None:
    seqs = keeping.store_segments(2)
    rejection = Rejection(BADGE, "segment", str(seqs[0]), "chain-break", "refused")
    batch = [
        (gateway_topic(BADGE, "reject"), rejection.sign(keeping.gateway_key)),
        keeping.segment_receipt(seqs[1]),
    ]

    assert keeping.keeper.on_messages(batch) == [True, True]

    assert keeping.on_ring() == [seqs[0]]
    assert keeping.keeper.counts.rejections == {"chain-break": 1}
