"""Gateway test helpers: an initialised hospital with enrolled badges, and badge-side messages.

Everything is real: keys from enrolment bundles, segments sealed with ``seal_segment``,
incident records signed with ``SignedIncident.sign``, chunks built with ``SegmentChunk``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from demo.enrolment import enroll_badge
from evidence.bundle import EnrolmentBundle
from evidence.hashing import ZERO_DIGEST, sha256
from evidence.incident import IncidentRecord, Press, SignedIncident, sign_alert
from evidence.keys import BadgeIdentity, CustodianPublicKey, HpkeSuite, SigningPublicKey
from evidence.messages import Heartbeat, Receipt, Rejection, SegmentChunk, Status
from evidence.segment import SealedSegment, SegmentFacts, seal_segment
from evidence.topics import badge_topic, parse_gateway_topic
from gateway.datadir import GatewayDataDir

CODEC: dict[str, str | int] = {
    "container": "mpegts",
    "video_codec": "h264",
    "width": 1280,
    "height": 720,
    "fps_num": 30,
    "fps_den": 1,
}
SEGMENT_NS = 2_000_000_000
BASE_WALL_NS = 1_790_000_000_000_000_000
BOOT_MONO_NS = 50_000_000_000


@dataclass(frozen=True)
class Hospital:
    """An initialised gateway data directory and the bundles of its enrolled badges."""

    data_dir: GatewayDataDir
    bundles: dict[str, EnrolmentBundle]

    @property
    def gateway_key(self) -> SigningPublicKey:
        """The gateway's public signing key (what badges verify receipts with)."""
        return self.data_dir.signing_key().public_key


def make_hospital(
    root: Path, badge_ids: tuple[str, ...] = ("badge-a", "badge-b"), config: str = ""
) -> Hospital:
    """Initialise a gateway in ``root / "gateway"`` and enroll ``badge_ids``; ``config`` is
    the text of its gateway.toml (the default: none, so SQLite and the vault directory)."""
    data_dir = GatewayDataDir(root / "gateway")
    if config:
        data_dir.root.mkdir(parents=True, exist_ok=True)
        (data_dir.root / "gateway.toml").write_text(config)
    data_dir.initialise("Test Hospital", HpkeSuite.X25519, None)
    bundles = {}
    for badge_id in badge_ids:
        bundle_dir = root / "bundles" / badge_id
        enroll_badge(data_dir, badge_id, bundle_dir, wearer=f"Nurse {badge_id}", location="Ward 3")
        bundles[badge_id] = EnrolmentBundle.load(bundle_dir)
    return Hospital(data_dir, bundles)


@dataclass
class BadgeMessages:
    """Builds what one badge sends: sealed segments in one chain, records, chunks, heartbeats."""

    identity: BadgeIdentity
    custodian: CustodianPublicKey
    boot: int = 1
    previous: bytes = ZERO_DIGEST
    next_seq: int = 0
    sealed: dict[int, SealedSegment] = field(default_factory=dict)

    @classmethod
    def of(cls, bundle: EnrolmentBundle) -> BadgeMessages:
        """The messages of the badge ``bundle`` was made for."""
        return cls(bundle.identity, bundle.custodian_key)

    @property
    def badge_id(self) -> str:
        """The badge's id."""
        return self.identity.badge_id

    def topic(self, kind: str) -> str:
        """The badge's topic for ``kind``."""
        return badge_topic(self.badge_id, kind)

    def seal(self, count: int, *, size: int = 3000) -> list[SealedSegment]:
        """Seal the next ``count`` segments of the chain (random plaintext of ``size`` bytes)."""
        made = []
        for _ in range(count):
            segment = self.seal_one(self.next_seq, self.previous, size=size)
            self.previous = segment.header.digest()
            self.sealed[segment.header.seq] = segment
            self.next_seq += 1
            made.append(segment)
        return made

    def seal_one(
        self,
        seq: int,
        previous: bytes,
        *,
        size: int = 3000,
        identity: BadgeIdentity | None = None,
    ) -> SealedSegment:
        """Seal one segment at ``seq`` linking to ``previous`` (outside the kept chain)."""
        mono = BOOT_MONO_NS + seq * SEGMENT_NS
        facts = SegmentFacts(
            seq=seq,
            boot=self.boot,
            mono_start_ns=mono,
            mono_end_ns=mono + SEGMENT_NS,
            wall_start_ns=BASE_WALL_NS + seq * SEGMENT_NS,
            wall_end_ns=BASE_WALL_NS + (seq + 1) * SEGMENT_NS,
            codec=CODEC,
            previous_header_sha256=previous,
        )
        return seal_segment(os.urandom(size), facts, identity or self.identity, self.custodian)

    def record(self, incident_id: str, first_seq: int, last_seq: int) -> IncidentRecord:
        """An incident record over ``first_seq..last_seq``."""
        return IncidentRecord(
            badge_id=self.badge_id,
            incident_id=incident_id,
            presses=(self.press(first_seq),),
            pre_roll_ns=30 * SEGMENT_NS,
            post_roll_ns=30 * SEGMENT_NS,
            first_seq=first_seq,
            last_seq=last_seq,
            location="Ward 3",
            battery_percent=80,
            storage_free_bytes=10**9,
            closed_wall_ns=BASE_WALL_NS + (last_seq + 1) * SEGMENT_NS,
        )

    def incident(self, incident_id: str, first_seq: int, last_seq: int) -> bytes:
        """The signed incident record's payload."""
        record = self.record(incident_id, first_seq, last_seq)
        return SignedIncident.sign(record, self.identity).to_bytes()

    def press(self, seq: int) -> Press:
        """A press during segment ``seq``."""
        return Press(self.boot, BOOT_MONO_NS + seq * SEGMENT_NS, BASE_WALL_NS + seq * SEGMENT_NS)

    def alert(self, incident_id: str, seq: int = 0, *, first_seq: int = 0) -> bytes:
        """The signed alert of a press during segment ``seq``, its pre-roll from ``first_seq``."""
        return sign_alert(self.identity, incident_id, self.press(seq), "Ward 3", first_seq)

    def chunks(
        self, segment: SealedSegment, incident_id: str, *, chunk_bytes: int = 1024
    ) -> list[bytes]:
        """The chunk payloads that carry ``segment``."""
        data = segment.to_bytes()
        count = -(-len(data) // chunk_bytes)
        return [
            SegmentChunk(
                badge=self.badge_id,
                incident=incident_id,
                seq=segment.header.seq,
                index=index,
                count=count,
                offset=index * chunk_bytes,
                total_size=len(data),
                sealed_sha256=sha256(data),
                data=data[index * chunk_bytes : (index + 1) * chunk_bytes],
            ).to_bytes()
            for index in range(count)
        ]

    def heartbeat(self, mono_ns: int, wall_ns: int, *, battery_percent: int = 77) -> bytes:
        """A signed heartbeat read at ``mono_ns`` / ``wall_ns``."""
        return Heartbeat(
            badge=self.badge_id,
            boot=self.boot,
            mono_ns=mono_ns,
            wall_ns=wall_ns,
            battery_percent=battery_percent,
            storage_free_bytes=5 * 10**9,
            ring_bytes=123_456,
            ring_segments=30,
            pinned_segments=5,
            dropped_frames=2,
            outbox_pending=1,
            recording=True,
            battery_millivolts=3_912,
            battery_rate_millipercent_per_hour=-2_080,
            soc_temperature_millicelsius=51_540,
            clock_synchronised=True,
        ).sign(self.identity.signing_key)

    def status(self, state: str) -> bytes:
        """A status payload."""
        return Status(self.badge_id, state, self.boot).to_bytes()


def receipts(published: list[tuple[str, bytes]], key: SigningPublicKey) -> list[Receipt]:
    """Every receipt in ``published``, each checked against the gateway key and its topic."""
    found = []
    for topic, payload in published:
        badge_id, kind = parse_gateway_topic(topic)
        if kind == "receipt":
            receipt = Receipt.open(payload, key, topic)
            assert receipt.badge == badge_id
            found.append(receipt)
    return found


def rejections(published: list[tuple[str, bytes]], key: SigningPublicKey) -> list[Rejection]:
    """Every rejection in ``published``, each checked against the gateway key and its topic."""
    found = []
    for topic, payload in published:
        badge_id, kind = parse_gateway_topic(topic)
        if kind == "reject":
            rejection = Rejection.open(payload, key, topic)
            assert rejection.badge == badge_id
            found.append(rejection)
    return found
