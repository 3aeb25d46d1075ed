"""Checks on MPEG-TS segments with the real ffprobe/ffmpeg binaries, shared by the media tests."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest

from badge.media import EncodedSegment

TS_PACKET = 188


def require_ffmpeg() -> None:
    """Fail (not skip) when the binaries are missing: the checks are the point of the tests."""
    for tool in ("ffprobe", "ffmpeg"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed; run scripts/ensure-system-deps")


@dataclass(frozen=True)
class VideoPacketInfo:
    """One video packet as ffprobe reports it."""

    pts_time: float
    keyframe: bool


@dataclass(frozen=True)
class ProbedClip:
    """What ffprobe and ffmpeg say about one .ts file."""

    path: Path
    streams: dict[str, str]
    """codec_type -> codec_name"""
    video_packets: list[VideoPacketInfo]
    decoded_video_frames: int
    decode_errors: str
    audio_sample_rate: int

    @property
    def video_seconds(self) -> float:
        """Span from the first frame's pts to the last frame's end, at the packets' cadence."""
        pts = [packet.pts_time for packet in self.video_packets]
        step = (pts[-1] - pts[0]) / (len(pts) - 1) if len(pts) > 1 else 0.0
        return pts[-1] - pts[0] + step


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)


def probe(path: Path) -> ProbedClip:
    """Probe streams, video packets, decode every frame, and collect decoder complaints."""
    require_ffmpeg()
    streams = json.loads(
        _run(
            "ffprobe", "-v", "error", "-show_entries",
            "stream=codec_type,codec_name,sample_rate", "-of", "json", str(path),
        ).stdout
    )["streams"]
    packets = json.loads(
        _run(
            "ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
            "packet=pts_time,flags", "-of", "json", str(path),
        ).stdout
    ).get("packets", [])
    counted = _run(
        "ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames",
        "-show_entries", "stream=nb_read_frames", "-of", "json", str(path),
    )
    decoded = json.loads(counted.stdout)["streams"]
    decode = _run("ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-f", "null", "-")
    audio_rates = [int(s.get("sample_rate", 0)) for s in streams if s["codec_type"] == "audio"]
    return ProbedClip(
        path=path,
        streams={s["codec_type"]: s["codec_name"] for s in streams},
        video_packets=[
            VideoPacketInfo(float(p["pts_time"]), "K" in p["flags"]) for p in packets
        ],
        decoded_video_frames=int(decoded[0]["nb_read_frames"]) if decoded else 0,
        decode_errors=(counted.stderr + decode.stderr).strip(),
        audio_sample_rate=audio_rates[0] if audio_rates else 0,
    )


def write_segments(directory: Path, segments: Sequence[EncodedSegment]) -> tuple[list[Path], Path]:
    """Write each segment to its own file and their plain byte concatenation to all.ts."""
    paths = []
    for number, segment in enumerate(segments):
        path = directory / f"seg{number:03d}.ts"
        path.write_bytes(segment.data)
        paths.append(path)
    joined = directory / "all.ts"
    joined.write_bytes(b"".join(segment.data for segment in segments))
    return paths, joined


def continuity_breaks(data: bytes) -> list[str]:
    """MPEG-TS continuity-counter breaks per PID (empty for one unbroken stream)."""
    assert len(data) % TS_PACKET == 0, "not a whole number of TS packets"
    expected: dict[int, int] = {}
    breaks = []
    for offset in range(0, len(data), TS_PACKET):
        header = data[offset : offset + 4]
        assert header[0] == 0x47, f"lost TS sync at byte {offset}"
        pid = ((header[1] & 0x1F) << 8) | header[2]
        has_payload = bool(header[3] & 0x10)
        counter = header[3] & 0x0F
        if not has_payload or pid == 0x1FFF:
            continue
        if pid in expected and counter != expected[pid]:
            breaks.append(f"pid {pid:#x} at byte {offset}: {counter} != {expected[pid]}")
        expected[pid] = (counter + 1) % 16
    return breaks


def first_pid(data: bytes) -> int:
    """PID of the first TS packet."""
    return ((data[1] & 0x1F) << 8) | data[2]


def assert_valid_run(
    directory: Path,
    segments: Sequence[EncodedSegment],
    *,
    audio: bool,
    fps: float,
    gapless: bool = True,
) -> ProbedClip:
    """The checks every recording must pass; returns the probed concatenation.

    Each segment: H.264 (plus AAC when `audio`), starts with a keyframe after the PSI tables,
    decodes alone without a single decoder complaint, and holds exactly `video_frames`
    frames. The concatenation: decodes cleanly, has unbroken continuity counters, holds the
    sum of the segments' frames, with timestamps increasing across every cut and, when
    `gapless` (nothing dropped), exactly one frame apart all the way through.
    """
    assert segments, "no segments were emitted"
    paths, joined = write_segments(directory, segments)
    for path, segment in zip(paths, segments, strict=True):
        clip = probe(path)
        assert clip.decode_errors == "", f"{path.name}: {clip.decode_errors}"
        assert clip.streams.get("video") == "h264", f"{path.name}: {clip.streams}"
        assert ("audio" in clip.streams) == audio, f"{path.name}: {clip.streams}"
        if audio:
            assert clip.streams["audio"] == "aac"
        assert clip.video_packets[0].keyframe, f"{path.name} does not start with a keyframe"
        assert first_pid(segment.data) in (0x0000, 0x0011, 0x1000), "segment must open with PSI"
        assert clip.decoded_video_frames == segment.video_frames == len(clip.video_packets)
    whole = probe(joined)
    assert whole.decode_errors == "", whole.decode_errors
    assert continuity_breaks(joined.read_bytes()) == []
    assert whole.decoded_video_frames == sum(segment.video_frames for segment in segments)
    pts = [packet.pts_time for packet in whole.video_packets]
    steps = [later - earlier for earlier, later in pairwise(pts)]
    assert all(step > 0 for step in steps), "video timestamps must increase across segments"
    if gapless:
        assert all(abs(step - 1 / fps) < 1e-3 for step in steps), "a frame is missing or doubled"
    return whole
