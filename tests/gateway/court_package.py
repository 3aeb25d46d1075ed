"""Test helpers: real footage through the real intake, and the court package exported from it.

The footage is the badge's own pipeline at 320x240 (synthetic camera and microphone, libx264
and AAC through PyAV, cut by TsSegmenter); it is sealed with the enrolled badge's key, sent
as signed records and chunks to a real Intake (real vault, ledger, TSA and receipts), and
exported with ``gateway.export.export``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from badge.encoder import (
    SOFTWARE_VIDEO_CODEC,
    TS_CLOCK,
    AudioEncoder,
    AudioPacket,
    VideoEncoder,
    VideoPacket,
)
from badge.media import CodecParameters, EncodedSegment
from badge.segmenter import TsSegmenter
from badge.sources.audio import SyntheticMicrophone
from badge.sources.synthetic import SyntheticCamera
from evidence.hashing import ZERO_DIGEST
from evidence.segment import SealedSegment, SegmentFacts, seal_segment
from gateway.export.export import ExportRequest, ExportResult, export_incident
from gateway.intake.intake import Intake
from tests.gateway.badge_messages import BadgeMessages, Hospital

FPS = 30
WIDTH, HEIGHT = 320, 240
RATE = 48_000
CODEC = CodecParameters("mpegts", "h264", WIDTH, HEIGHT, FPS, 1, "aac", RATE, 1)
ACTOR = "Officer Dana Bekova"
JUSTIFICATION = "Prosecutor's request 2026/117 for the assault in Ward 3"
CHUNK_BYTES = 64 * 1024


def record_footage(seconds: float, segment_seconds: float = 1.0) -> list[EncodedSegment]:
    """Encode ``seconds`` of the synthetic test pattern with sound into MPEG-TS segments."""
    camera = SyntheticCamera(
        WIDTH, HEIGHT, FPS, "B-17", realtime=False, max_frames=round(seconds * FPS)
    )
    frames = list(camera.frames())
    encoder = VideoEncoder(
        WIDTH, HEIGHT, Fraction(FPS), segment_seconds, codec=SOFTWARE_VIDEO_CODEC
    )
    video: list[VideoPacket] = []
    for frame in frames:
        video += encoder.encode(frame, (frame.mono_ns - frames[0].mono_ns) * TS_CLOCK // 10**9)
    video += encoder.flush()
    microphone = SyntheticMicrophone(RATE, 1, block_ms=20, realtime=False)
    audio_encoder = AudioEncoder(RATE, 1)
    audio: list[AudioPacket] = []
    for number, block in enumerate(microphone.blocks()):
        if number * 0.02 >= seconds:
            break
        audio += audio_encoder.encode(block.samples, number * len(block.samples))
    audio += audio_encoder.flush()
    segments: list[EncodedSegment] = []
    segmenter = TsSegmenter(CODEC, segment_seconds, segments.append)
    timeline: list[tuple[Fraction, VideoPacket | AudioPacket]] = [
        (Fraction(packet.pts, TS_CLOCK), packet) for packet in video
    ]
    timeline += [(Fraction(packet.pts, RATE), packet) for packet in audio]
    for _, packet in sorted(timeline, key=lambda item: item[0]):
        if isinstance(packet, VideoPacket):
            segmenter.add_video(packet)
        else:
            segmenter.add_audio(packet)
    segmenter.close()
    return segments


@dataclass
class DeliveredIncident:
    """An incident the gateway holds completely, and what the badge sent for it."""

    incident_id: str
    badge: BadgeMessages
    first_seq: int
    last_seq: int
    sealed: list[SealedSegment]
    plaintexts: list[bytes]
    published: list[tuple[str, bytes]] = field(default_factory=list)


def deliver_incident(
    hospital: Hospital,
    footage: list[EncodedSegment],
    *,
    badge_id: str = "badge-a",
    incident_id: str = "inc-0417",
    first_seq: int = 40,
    after: DeliveredIncident | None = None,
    heartbeats: bool = True,
) -> DeliveredIncident:
    """Seal ``footage`` as segments ``first_seq..`` and send the incident to a real Intake.

    With ``after``, the footage continues that incident's chain and clocks.
    """
    badge = BadgeMessages.of(hospital.bundles[badge_id])
    previous, shift = ZERO_DIGEST, 0
    if after is not None:
        last = after.sealed[-1].header
        previous, shift = last.digest(), last.mono_end_ns - footage[0].mono_start_ns
    delivered = DeliveredIncident(
        incident_id, badge, first_seq, first_seq + len(footage) - 1, [], []
    )
    for offset, segment in enumerate(footage):
        facts = SegmentFacts(
            seq=first_seq + offset,
            boot=badge.boot,
            mono_start_ns=segment.mono_start_ns + shift,
            mono_end_ns=segment.mono_end_ns + shift,
            wall_start_ns=segment.wall_start_ns + shift,
            wall_end_ns=segment.wall_end_ns + shift,
            codec=segment.codec.as_header_fields(),
            previous_header_sha256=previous,
            dropped_frames=segment.dropped_frames,
        )
        sealed = seal_segment(segment.data, facts, badge.identity, badge.custodian)
        previous = sealed.header.digest()
        delivered.sealed.append(sealed)
        delivered.plaintexts.append(segment.data)
    intake = Intake(
        hospital.data_dir,
        lambda topic, payload: delivered.published.append((topic, payload)),
        lambda event: None,
        timestamper=hospital.data_dir.timestamper(),
    )
    try:
        if heartbeats:
            _send_heartbeats(intake, badge, footage[0])
        intake.handle(badge.topic("alert"), badge.alert(incident_id, first_seq))
        record = badge.incident(incident_id, first_seq, delivered.last_seq)
        intake.handle(badge.topic("incident"), record)
        for sealed in delivered.sealed:
            for chunk in badge.chunks(sealed, incident_id, chunk_bytes=CHUNK_BYTES):
                intake.handle(badge.topic("segment"), chunk)
    finally:
        intake.close()
    return delivered


def _send_heartbeats(intake: Intake, badge: BadgeMessages, first: EncodedSegment) -> None:
    """Heartbeats just before the footage, so the gateway can date it in its own time."""
    wall_minus_mono = first.wall_start_ns - first.mono_start_ns
    for back in (3, 2, 1):
        mono = first.mono_start_ns - back * 1_000_000_000
        intake.handle(badge.topic("heartbeat"), badge.heartbeat(mono, mono + wall_minus_mono))
        time.sleep(0.002)


def export(
    hospital: Hospital, incident_id: str, output: Path, *, derived_mp4: bool = True
) -> ExportResult:
    """Export ``incident_id`` to ``output`` as the test officer, with a justification."""
    request = ExportRequest(incident_id, output, ACTOR, JUSTIFICATION, derived_mp4=derived_mp4)
    return export_incident(hospital.data_dir, request)
