"""System faults mid-upload: the incident still reaches the gateway exactly once.

Every scenario runs the product's own processes (as ``make demo`` does): mosquitto from
``gateway broker-config``, ``gateway run`` and ``badge run`` on the synthetic camera, a small
picture in 1 s segments, its upload held to a bandwidth cap so that the fault reliably lands
while segments are still on their way. Then one of: the broker SIGKILLed and restarted, the
gateway SIGKILLed and restarted, the badge SIGKILLed and restarted, the broker stopped
for 30 s, or the gateway's disk full for a few seconds (its data directory on a tmpfs of its
own, filled to the last byte, then freed; this one needs root to mount). Afterwards the
gateway holds one incident, one alert and one segment row per seq, every vault file
verifies (SHA-256, badge signature, custodian decryption, chain), the gateway never issued
two different receipts for one thing, every receipt the badge kept verifies under the
gateway's key, and, watched while it happened, no segment of the incident left the
badge's ring before its receipt was in the badge's receipt store.

The scenarios run at the same time (each its own hospital, broker and badge), so the file
takes about as long as the slowest one: the full disk, whose lost writes come back only when
the badge sends again what has no receipt (60 s after it was sent).
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from badge.control import send_command
from demo.run import BADGE_ID, Demo, DemoSettings, wait_for
from evidence.bundle import EnrolmentBundle
from evidence.chain import check_chain
from evidence.hashing import sha256
from evidence.incident import SignedIncident
from evidence.keys import CustodianPrivateKey
from evidence.messages import Receipt
from evidence.segment import SealedSegment
from gateway.storage.vault import DirectoryVault
from tests import small_filesystem

pytestmark = pytest.mark.slow

SETTINGS = DemoSettings(
    width=320,
    height=240,
    segment_seconds=1.0,
    pre_roll_s=4,
    post_roll_s=2,
    chunk_bytes=16 * 1024,  # a 320x240 segment (about 45 kB) travels in three chunks
    bandwidth_bytes_per_s=30_000,  # about 10 s for the incident: room to strike mid-upload
)
WATCH_INTERVAL_S = 0.01
UPLOAD_START_TIMEOUT_S = 60
RECOVERY_TIMEOUT_S = 150
GATEWAY_DISK_BYTES = 64 * 1024 * 1024
"""The gateway's own file system in the full-disk scenario: room for a small hospital."""
NO_SPACE = ("No space left on device", "database or disk is full")
"""How the gateway's log says a write failed for want of space (the OS's, SQLite's words)."""


@dataclass(frozen=True)
class Fault:
    """Something that goes wrong mid-upload: ``down``, a pause, then ``up``."""

    name: str
    down: Callable[[Demo], None]
    pause_s: float
    up: Callable[[Demo], None]
    own_gateway_disk: bool = False
    """The gateway's data directory gets a small file system of its own."""


FAULTS = (
    Fault("broker-killed", lambda demo: demo.kill("mosquitto"), 1.0, Demo.start_broker),
    Fault("gateway-killed", lambda demo: demo.kill("gateway"), 0.5, Demo.start_gateway),
    Fault("badge-killed", lambda demo: demo.kill("badge"), 0.5, Demo.start_badge),
    Fault("broker-away-30s", lambda demo: demo.terminate("mosquitto"), 30.0, Demo.start_broker),
    Fault(
        "gateway-disk-full",
        lambda demo: small_filesystem.fill(demo.gateway_data),
        4.0,
        lambda demo: small_filesystem.free(demo.gateway_data),
        own_gateway_disk=True,
    ),
)


class BadgeReceipts:
    """Reads the badge's receipt store while the badge writes it (never writes itself)."""

    def __init__(self, path: Path) -> None:
        """Open ``path`` for queries only."""
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA query_only = ON")

    def keys(self, subject: str) -> frozenset[str]:
        """The keys of every kept receipt for ``subject``."""
        for _attempt in range(50):
            try:
                rows = self._db.execute(
                    "SELECT key FROM receipts WHERE subject = ?", (subject,)
                ).fetchall()
                return frozenset(row[0] for row in rows)
            except sqlite3.OperationalError:  # the badge is recovering its WAL after a kill
                time.sleep(0.01)
        raise AssertionError("the badge's receipt store stayed unreadable")

    def close(self) -> None:
        """Close the connection."""
        self._db.close()


class RingWatch:
    """Polls the badge's ring: for each segment file that vanishes, was its receipt kept?"""

    def __init__(self, badge_data: Path) -> None:
        """Watch ``badge_data/ring/segments`` against ``badge_data/receipts.db``."""
        self._segments = badge_data / "ring" / "segments"
        self._receipts_path = badge_data / "receipts.db"
        self.freed: dict[int, bool] = {}
        """seq -> whether its segment receipt was in the store when its file had gone."""
        self.seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ring-watch", daemon=True)

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _present(self) -> set[int]:
        try:
            names = [path.name for path in self._segments.iterdir()]
        except FileNotFoundError:
            return set()
        return {int(name[:12]) for name in names if name.endswith(".mbseal")}

    def _run(self) -> None:
        wait_for(self._receipts_path.exists, 30, "the badge's receipt store")
        receipts = BadgeReceipts(self._receipts_path)
        try:
            before = self._present()
            self.seen |= before
            while not self._stop.wait(WATCH_INTERVAL_S):
                now = self._present()
                gone = before - now
                if gone:
                    kept = receipts.keys("segment")
                    for seq in gone:
                        self.freed[seq] = str(seq) in kept
                self.seen |= now
                before = now
        finally:
            receipts.close()


@dataclass(frozen=True)
class Outcome:
    """What one scenario left behind for the assertions."""

    demo: Demo
    incident_id: str
    first_seq: int
    last_seq: int
    receipted_at_fault: frozenset[int]
    incident_receipted_at_fault: bool
    badge_status: dict[str, Any]
    freed: dict[int, bool]
    """seq -> whether its receipt was kept when its file was seen to have gone."""
    seen: frozenset[int]
    """Every seq the ring watch saw on the ring."""

    @property
    def seqs(self) -> range:
        """The incident's segment range."""
        return range(self.first_seq, self.last_seq + 1)


def _closed_record(demo: Demo, incident_id: str) -> SignedIncident | None:
    path = demo.badge_data / "incidents" / f"{incident_id}.incident"
    return SignedIncident.from_bytes(path.read_bytes()) if path.exists() else None


def run_scenario(fault: Fault, root: Path, mounts: contextlib.ExitStack) -> Outcome:
    """Record, press, strike mid-upload, recover; stop every process and return the facts.

    A file system the fault needs is mounted on ``mounts`` (unmounted once checked).
    """
    demo = Demo(root, SETTINGS)
    if fault.own_gateway_disk:
        mounts.enter_context(
            small_filesystem.small_filesystem(demo.gateway_data, GATEWAY_DISK_BYTES)
        )
    watch: RingWatch | None = None
    try:
        demo.set_up_hospital()
        demo.configure_broker()
        demo.start_broker()
        demo.start_gateway()
        demo.start_badge()
        watch = RingWatch(demo.badge_data)
        watch.start()
        time.sleep(SETTINGS.pre_roll_s + 1)
        incident_id = demo.press().incident_id
        receipts = BadgeReceipts(demo.badge_data / "receipts.db")
        try:
            wait_for(
                lambda: bool(receipts.keys("segment")), UPLOAD_START_TIMEOUT_S, "a first segment"
            )
            fault.down(demo)
            # nothing can be receipted now: the broker, the gateway or the badge is down
            receipted_at_fault = frozenset(int(key) for key in receipts.keys("segment"))
            incident_receipted = incident_id in receipts.keys("incident")
            time.sleep(fault.pause_s)
            fault.up(demo)
            wait_for(
                lambda: incident_id in receipts.keys("incident"),
                RECOVERY_TIMEOUT_S,
                f"the incident receipt after {fault.name}",
            )
        finally:
            receipts.close()
        record = _closed_record(demo, incident_id)
        assert record is not None, f"incident {incident_id} was receipted but never closed"
        status = send_command(demo.badge_data / "control.sock", "status")
        # the last segment's file goes a moment after the incident receipt is kept
        time.sleep(0.5)
        watch.stop()
        return Outcome(
            demo=demo,
            incident_id=incident_id,
            first_seq=record.record.first_seq,
            last_seq=record.record.last_seq,
            receipted_at_fault=receipted_at_fault,
            incident_receipted_at_fault=incident_receipted,
            badge_status=status,
            freed=dict(watch.freed),
            seen=frozenset(watch.seen),
        )
    finally:
        if watch is not None:
            watch.stop()
        demo.stop()


@pytest.fixture(scope="module")
def outcomes(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[Outcome]]]:
    """Run every selected scenario at once, each in its own thread and directory."""
    module = sys.modules[__name__]
    wanted = [
        item.callspec.params["fault"]
        for item in request.session.items
        if getattr(item, "module", None) is module and hasattr(item, "callspec")
    ]
    with contextlib.ExitStack() as mounts, ThreadPoolExecutor(max(1, len(wanted))) as pool:
        yield {
            fault.name: pool.submit(
                run_scenario, fault, tmp_path_factory.mktemp(fault.name), mounts
            )
            for fault in wanted
        }


def gateway_db(outcome: Outcome) -> sqlite3.Connection:
    """The gateway's database, opened after every process has stopped."""
    return sqlite3.connect(outcome.demo.gateway_data / "gateway.db")


def check_exactly_once(outcome: Outcome) -> list[bytes]:
    """One incident, one alert, one row per seq at the gateway; return the sealed SHA-256s."""
    with contextlib.closing(gateway_db(outcome)) as db:
        incidents = db.execute(
            "SELECT incident_id, first_seq, last_seq, complete_wall_ns FROM incidents"
        ).fetchall()
        alerts = db.execute("SELECT incident_id FROM alerts").fetchall()
        rows = db.execute(
            "SELECT seq, incident_id, sealed_sha256 FROM segments WHERE badge_id = ? ORDER BY seq",
            (BADGE_ID,),
        ).fetchall()
        receipts = db.execute(
            "SELECT subject, key, COUNT(*) FROM receipts GROUP BY subject, key"
        ).fetchall()
    assert len(incidents) == 1, incidents
    incident_id, first_seq, last_seq, complete = incidents[0]
    assert (incident_id, first_seq, last_seq) == (
        outcome.incident_id,
        outcome.first_seq,
        outcome.last_seq,
    )
    assert complete is not None
    assert alerts == [(outcome.incident_id,)]
    assert [row[0] for row in rows] == list(outcome.seqs)
    assert {row[1] for row in rows} == {outcome.incident_id}
    # a redelivery is answered with the very same receipt, never a second one
    assert all(count == 1 for _, _, count in receipts), receipts
    assert len(receipts) == len(outcome.seqs) + 2  # every segment, the alert, the incident
    return [bytes(row[2]) for row in rows]


def check_vault(outcome: Outcome, sealed_sha256s: list[bytes]) -> None:
    """Every stored segment verifies and opens, the chain is whole, nothing else is stored."""
    gateway = outcome.demo.gateway_data
    bundle = EnrolmentBundle.load(outcome.demo.bundle)
    custodian = CustodianPrivateKey.load(gateway / "keys" / "custodian.key")
    vault = DirectoryVault(gateway / "vault")
    headers = []
    for seq, digest in zip(outcome.seqs, sealed_sha256s, strict=True):
        with vault.open(digest) as stream:
            data = stream.read()
        assert sha256(data) == digest
        segment = SealedSegment.from_bytes(data, f"segment {seq}")
        segment.verify(bundle.identity.signing_key.public_key)
        segment.open(custodian)
        assert segment.header.seq == seq
        headers.append(segment.header)
    assert check_chain(headers).intact
    assert len(list(vault.root.rglob("*.mbseal"))) == len(sealed_sha256s)


def check_badge_receipts(outcome: Outcome, sealed_sha256s: list[bytes]) -> None:
    """Every receipt the badge kept verifies under the gateway key and names what it sent."""
    bundle = EnrolmentBundle.load(outcome.demo.bundle)
    data = outcome.demo.badge_data
    with contextlib.closing(sqlite3.connect(data / "receipts.db")) as db:
        kept = db.execute("SELECT subject, key, sha256, payload FROM receipts").fetchall()
    opened = {}
    for subject, key, digest, payload in kept:
        receipt = Receipt.open(bytes(payload), bundle.gateway_key, f"{subject} {key}")
        assert (receipt.badge, receipt.subject, receipt.key) == (BADGE_ID, subject, key)
        assert receipt.sha256 == bytes(digest)
        opened[subject, key] = receipt
    assert {key for subject, key in opened if subject == "segment"} == {
        str(seq) for seq in outcome.seqs
    }
    for seq, digest in zip(outcome.seqs, sealed_sha256s, strict=True):
        assert opened["segment", str(seq)].sha256 == digest
    record = (data / "incidents" / f"{outcome.incident_id}.incident").read_bytes()
    assert opened["incident", outcome.incident_id].sha256 == sha256(record)
    assert ("alert", outcome.incident_id) in opened


@pytest.mark.parametrize("fault", FAULTS, ids=[fault.name for fault in FAULTS])
def test_incident_survives_the_fault_exactly_once(
    fault: Fault, outcomes: dict[str, Future[Outcome]]
) -> None:
    outcome = outcomes[fault.name].result(timeout=240)
    # the fault struck mid-upload: some segments receipted, not all, the incident not yet
    assert outcome.receipted_at_fault
    assert outcome.receipted_at_fault < set(outcome.seqs)
    assert not outcome.incident_receipted_at_fault
    sealed = check_exactly_once(outcome)
    check_vault(outcome, sealed)
    check_badge_receipts(outcome, sealed)
    # the ring was watched throughout: each segment of the incident left it, and only
    # once its receipt was kept
    assert set(outcome.seqs) <= outcome.seen
    assert {seq: outcome.freed.get(seq) for seq in outcome.seqs} == dict.fromkeys(
        outcome.seqs, True
    )
    uplink = outcome.badge_status["uplink"]
    assert uplink["rejections"] == {}
    assert uplink["invalid_messages"] == 0 and uplink["unmatched_receipts"] == 0
    if fault.own_gateway_disk:  # the gateway did run out of space, and said so
        log = (outcome.demo.root / "gateway.log").read_text()
        assert any(words in log for words in NO_SPACE), log[-3000:]
