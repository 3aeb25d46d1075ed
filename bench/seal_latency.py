"""Press to pre-roll receipted, for a 60 s pre-roll, against the raw transfer of the same bytes.

The badge side is the badge's own code, in this process: a ring holding 30 sealed segments
of 1 MB random plaintext (60 s of 1080p at 2 s a segment, sealed and stored for real), the
outbox, the receipt store, the incident recorder (pre-roll 60 s, the default post-roll of
120 s) and the uplink (TLS, 256 KiB chunks, its default window). The press is timed from
``IncidentRecorder.press`` (alert into the outbox, pre-roll pinned) and the uplink's wake;
the incident stays open, recording its post-roll, while the uplink sends the pre-roll; the
time ends when the last of the 30 pre-roll segments' receipts, each sent by the gateway once
that segment is checked, fsynced into the vault and recorded, is kept in the receipt store
(DESIGN: "press -> pre-roll receipted at the gateway"). The gateway is a real ``gateway
run`` process behind the demo's mosquitto. The limit is the same segment bytes in the same
256 KiB chunks through the same broker listener from a paho publisher to a subscriber
process, QoS 1 on both sides.

A second figure, the floor, is the same transfer to a subscriber that also hashes every
byte twice, writes it and fsyncs it a segment at a time (``bench.durable_floor``), timed
until the last byte is on disk: the least any intake must do before a receipt, held to the
same raw transfer (decision 1504).

``python -m bench seal-radio`` measures the same with the badge and the raw publisher behind
an emulated radio link (``bench.radio``, 100 Mbit/s by default; root only): what a ward's
Wi-Fi leaves of the figure, where the badge's radio, not this machine's two cores shared by
badge, broker and gateway, is the limit (decision 1508).
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from badge.heartbeat import read_heartbeat
from badge.incident import IncidentRecorder
from badge.outbox import Outbox
from badge.receipts import ReceiptStore
from badge.ring import Ring
from badge.uplink import DEFAULT_CHUNK_BYTES, Uplink
from bench.durable_floor import FLOOR_WORK
from bench.fleet import segment_chunks
from bench.ingest import SETTLE_S
from bench.loopback import BenchHospital, RawTransfer
from bench.radio import RadioLink
from bench.report import Figure
from evidence.bundle import EnrolmentBundle
from evidence.messages import Heartbeat, Receipt
from evidence.segment import SealedSegment, SegmentFacts, seal_segment

PRE_ROLL_S = 60
POST_ROLL_S = 120
SEGMENT_S = 2
PLAINTEXT_BYTES = 1_000_000
"""About 2 s of 1080p30 H.264 at 4 Mbit/s."""
ROUNDS = 3
RADIO_MBIT = 100.0
"""The emulated link of ``seal-radio``: about what 802.11n/ac gives one client on a ward."""
WAIT_S = 120.0
_SECOND_NS = 1_000_000_000
CODEC: dict[str, str | int] = {"container": "mpegts", "video_codec": "h264"}


class TimedReceipts(ReceiptStore):
    """The badge's receipt store, noting when the last awaited segment receipt is kept."""

    def __init__(self, path: Path) -> None:
        """Open the store at ``path``."""
        super().__init__(path)
        self.awaited: set[str] = set()
        self.all_kept_ns: int | None = None
        self.kept = threading.Event()

    def await_segments(self, seqs: list[int]) -> None:
        """Time the receipts of segments ``seqs`` from now on."""
        self.awaited = {str(seq) for seq in seqs}
        self.all_kept_ns = None
        self.kept.clear()

    def add_all(self, receipts: Sequence[tuple[Receipt, bytes]]) -> list[bool]:
        """Keep ``receipts``; note the time once every awaited segment's receipt is kept."""
        added = super().add_all(receipts)
        for receipt, _ in receipts:
            if receipt.subject == "segment" and receipt.key in self.awaited:
                self.awaited.discard(receipt.key)
                if not self.awaited:
                    self.all_kept_ns = time.monotonic_ns()
                    self.kept.set()
        return added


class PressingBadge:
    """One badge's ring, outbox, receipts, recorder and uplink, without a camera."""

    def __init__(self, directory: Path, bundle: EnrolmentBundle) -> None:
        """Open the badge's stores in ``directory`` and connect its uplink."""
        self.bundle = bundle
        pre_roll_ns = PRE_ROLL_S * _SECOND_NS
        self.ring = Ring.open(directory / "ring", pre_roll_ns=pre_roll_ns, max_bytes=2 * 10**9)
        self.outbox = Outbox(directory / "outbox.db")
        self.receipts = TimedReceipts(directory / "receipts.db")
        self.uplink = Uplink(
            bundle.identity,
            bundle,
            self.ring,
            self.outbox,
            receipts=self.receipts,
            tls=True,
            heartbeat=self._heartbeat,
        )
        self.recorder = IncidentRecorder(
            directory / "incidents",
            self.ring,
            bundle.identity,
            self.outbox,
            pre_roll_ns=pre_roll_ns,
            post_roll_ns=POST_ROLL_S * _SECOND_NS,
            location="bench",
            on_change=lambda recording: None if recording else self.uplink.wake(),
        )
        self.uplink.start()
        deadline = time.monotonic() + WAIT_S
        while not self.uplink.connected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"badge {bundle.identity.badge_id} did not connect")
            time.sleep(0.01)

    def _heartbeat(self) -> Heartbeat:
        return read_heartbeat(
            self.bundle.identity.badge_id,
            self.ring,
            self.outbox,
            recording=self.recorder.open_incident is not None,
        )

    def seal_next(self, mono_start_ns: int) -> SealedSegment:
        """Seal and store the ring's next segment, ``SEGMENT_S`` long from ``mono_start_ns``."""
        wall = time.time_ns() - (time.monotonic_ns() - mono_start_ns)
        facts = SegmentFacts(
            seq=self.ring.next_seq,
            boot=self.ring.boot,
            mono_start_ns=mono_start_ns,
            mono_end_ns=mono_start_ns + SEGMENT_S * _SECOND_NS,
            wall_start_ns=wall,
            wall_end_ns=wall + SEGMENT_S * _SECOND_NS,
            codec=CODEC,
            previous_header_sha256=self.ring.last_header_digest,
        )
        sealed = seal_segment(
            os.urandom(PLAINTEXT_BYTES), facts, self.bundle.identity, self.bundle.custodian_key
        )
        self.recorder.segment_stored(self.ring.store(sealed))
        return sealed

    def fill_pre_roll(self) -> list[SealedSegment]:
        """The last 60 s of footage: 30 segments ending now."""
        count = PRE_ROLL_S // SEGMENT_S
        now = time.monotonic_ns()
        return [
            self.seal_next(now - (count - index) * SEGMENT_S * _SECOND_NS) for index in range(count)
        ]

    def press_to_receipt(self, pre_roll: list[SealedSegment]) -> float:
        """Press, and wait until every segment of the pre-roll has its receipt kept."""
        self.receipts.await_segments([segment.header.seq for segment in pre_roll])
        pressed = time.monotonic_ns()
        incident_id = self.recorder.press().incident_id
        self.uplink.wake()
        if not self.receipts.kept.wait(WAIT_S) or self.receipts.all_kept_ns is None:
            raise RuntimeError(f"the pre-roll of incident {incident_id} was not receipted")
        pins = [pin for pin in self.ring.pins() if pin.incident_id == incident_id]
        if [(pin.first_seq, pin.last_seq) for pin in pins] != [(pre_roll[0].header.seq, None)]:
            raise RuntimeError(
                f"incident {incident_id} is not open from the pre-roll's first segment "
                f"{pre_roll[0].header.seq}: its pins are {pins}"
            )
        return (self.receipts.all_kept_ns - pressed) / 1e9

    def close(self) -> None:
        """Stop the uplink and close the stores."""
        self.uplink.stop()
        self.outbox.close()
        self.receipts.close()


def run(rounds: int = ROUNDS) -> list[Figure]:
    """One warm-up and ``rounds`` measured presses on loopback, each followed by its raw
    transfer."""
    return _measure(rounds, None).figures("seal-latency", "on loopback")


def run_over_radio(rounds: int = ROUNDS, rate_mbit: float = RADIO_MBIT) -> list[Figure]:
    """As :func:`run`, with the badge and the raw publisher behind a ``rate_mbit`` link."""
    with RadioLink(rate_mbit) as link:
        totals = _measure(rounds, link)
    return totals.figures(
        "seal-radio", f"with the badge behind an emulated {rate_mbit:g} Mbit/s radio link"
    )


@dataclass
class _Totals:
    """Sums over the measured presses."""

    rounds: int
    latency_s: float = 0.0
    raw_s: float = 0.0
    floor_s: float = 0.0
    carried: int = 0
    segments: int = 0

    def figures(self, name: str, where: str) -> list[Figure]:
        """The figure ``name`` and its floor, ``where`` saying how the badge was linked."""
        rounds = self.rounds
        mean_latency, mean_raw = self.latency_s / rounds, self.raw_s / rounds
        mean_floor = self.floor_s / rounds
        return [
            Figure(
                name=name,
                value=mean_latency,
                unit="s",
                limit_value=mean_raw,
                ratio=mean_latency / mean_raw,
                goal="<= 1.2 (press to pre-roll receipted / raw transfer of the same bytes)",
                note=(
                    f"60 s pre-roll: {self.segments // rounds} sealed segments, "
                    f"{self.carried / rounds / 1e6:.1f} MB per press, receipted while the "
                    f"incident records its post-roll, mean of {rounds} presses, {where}; "
                    f"{mean_latency / mean_floor:.2f}x the floor"
                ),
            ),
            Figure(
                name=f"{name}-floor",
                value=mean_floor,
                unit="s",
                limit_value=mean_raw,
                ratio=mean_floor / mean_raw,
                goal="none: the least any intake could take here",
                note=f"the same chunks to the raw subscriber, which {FLOOR_WORK}",
            ),
        ]


def _measure(rounds: int, link: RadioLink | None) -> _Totals:
    """One warm-up and ``rounds`` measured presses, each followed by its raw and floor
    transfers; the badge side behind ``link`` if one is given."""
    totals = _Totals(rounds)
    with tempfile.TemporaryDirectory(prefix="medbadge-bench-seal-latency-") as temporary:
        root = Path(temporary)
        address = None if link is None else link.hospital_address
        hospital = BenchHospital(root, rounds + 1, broker_address=address)
        raw: RawTransfer | None = None
        try:
            hospital.start()
            raw = RawTransfer(hospital, connect=None if link is None else link.inside)
            for number, bundle in enumerate(hospital.bundles()):
                directory = root / "badges" / str(number)
                badge = (
                    PressingBadge(directory, bundle)
                    if link is None
                    else link.inside(lambda: PressingBadge(directory, bundle))  # noqa: B023
                )
                try:
                    sealed = badge.fill_pre_roll()
                    seconds = badge.press_to_receipt(sealed)
                finally:
                    badge.close()
                time.sleep(SETTLE_S)
                payloads = [
                    chunk
                    for segment in sealed
                    for chunk in segment_chunks(
                        bundle.identity.badge_id,
                        "raw",
                        segment.header.seq,
                        segment.to_bytes(),
                        DEFAULT_CHUNK_BYTES,
                    )
                ]
                raw_round = raw.send(payloads)
                floor_round = raw.send(payloads, durable=True)
                if number == 0:
                    continue  # warm-up
                totals.latency_s += seconds
                totals.raw_s += raw_round
                totals.floor_s += floor_round
                totals.carried += sum(len(segment.to_bytes()) for segment in sealed)
                totals.segments += len(sealed)
        finally:
            if raw is not None:
                raw.close()
            hospital.stop()
    return totals
