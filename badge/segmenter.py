"""Cuts one continuous MPEG-TS stream of H.264 (and AAC) into self-contained segments at keyframes.

One muxer runs for the whole recording, so timestamps, continuity counters and the program
clock run on unbroken: concatenating the segments' bytes gives back that single stream. A
segment ends where the muxer starts the first keyframe due after `segment_seconds`; the
muxer writes PAT/PMT right before every keyframe, so each segment opens with the tables, the
parameter sets and an IDR picture and plays on its own.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import av
from av.stream import Stream

from badge.encoder import TS_CLOCK, AudioPacket, VideoPacket
from badge.errors import EncoderError
from badge.media import CodecParameters, EncodedSegment

_TS_PACKET = 188
_VIDEO_PID = 0x100
_PMT_PID = 0x1000
_TABLE_PIDS = frozenset((0x0000, 0x0011, _PMT_PID))  # PAT, SDT, PMT
# Sync byte, then payload_unit_start_indicator with the video PID: where a video PES begins.
_VIDEO_PES_START = bytes((0x47, 0x40 | (_VIDEO_PID >> 8), _VIDEO_PID & 0xFF))
_RANDOM_ACCESS = 0x40  # adaptation-field flag the muxer sets on keyframes

_START_CODE = b"\x00\x00\x01"
_LONG_START_CODE = b"\x00\x00\x00\x01"
_SLICE_TYPES = frozenset((1, 2, 3, 4, 5))
_SPS, _PPS = 7, 8


@dataclass
class _SegmentDraft:
    """The segment being assembled: its first and last frame and what it has lost."""

    first_pts: int
    first_mono_ns: int
    first_wall_ns: int
    last_mono_ns: int
    last_wall_ns: int
    frames: int = 1
    dropped: int = 0

    @classmethod
    def starting_at(cls, packet: VideoPacket, dropped: int = 0) -> _SegmentDraft:
        return cls(packet.pts, packet.mono_ns, packet.wall_ns, packet.mono_ns, packet.wall_ns,
                   dropped=dropped)

    def add(self, packet: VideoPacket) -> None:
        self.frames += 1
        self.last_mono_ns = packet.mono_ns
        self.last_wall_ns = packet.wall_ns


class _ByteSink:
    """The muxer's output file: an in-memory byte buffer the segmenter trims as it cuts."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def write(self, data: bytes) -> int:
        self.buffer += data
        return len(data)


class TsSegmenter:
    """Muxes encoded packets into MPEG-TS and hands each finished segment to `on_segment`.

    Not thread-safe: one thread feeds it. `on_segment` runs on that thread, so it must not
    block (hand the segment to a queue).
    """

    def __init__(
        self,
        codec: CodecParameters,
        segment_seconds: float,
        on_segment: Callable[[EncodedSegment], None],
    ) -> None:
        """Open the muxer; raises EncoderError for parameters MPEG-TS segments cannot carry."""
        _check_codec(codec)
        if not segment_seconds > 0:
            raise EncoderError(f"segment length must be positive, got {segment_seconds} s")
        self.codec = codec
        self._on_segment = on_segment
        fps = Fraction(codec.fps_num, codec.fps_den)
        self._frame_ns = round(1_000_000_000 / fps)
        # Cut at the first keyframe within half a frame of the target, so a keyframe that the
        # clock puts a hair early still closes the segment.
        self._cut_ticks = (Fraction(segment_seconds) - 1 / (2 * fps)) * TS_CLOCK
        self._sink = _ByteSink()
        self._container = av.open(
            self._sink,
            "w",
            format="mpegts",
            container_options={
                "flush_packets": "1",  # bytes reach the sink as each packet is muxed
                "pes_payload_size": "0",  # no audio held back inside the muxer
                "max_interleave_delta": "1000000",
                # Keep our timestamps as they are: AAC priming runs slightly below zero,
                # which MPEG-TS carries (its mux delay offsets every PTS), and shifting
                # would depend on which stream happened to be muxed first.
                "avoid_negative_ts": "disabled",
                "mpegts_start_pid": str(_VIDEO_PID),
                "mpegts_pmt_start_pid": str(_PMT_PID),
            },
        )
        self._video = self._container.add_mux_stream(
            "h264", rate=fps, width=codec.width, height=codec.height
        )
        self._time_bases = [Fraction(1, TS_CLOCK)]
        self._audio: Stream | None = None
        if codec.audio_codec is not None:
            self._audio = self._container.add_mux_stream("aac", rate=codec.audio_sample_rate)
            self._time_bases.append(Fraction(1, codec.audio_sample_rate))
        for stream, time_base in zip(self._container.streams, self._time_bases, strict=True):
            stream.time_base = time_base
        self._draft: _SegmentDraft | None = None
        self._dropped_before_start = 0
        # One entry per keyframe muxed, in order: the draft that keyframe closes, or None.
        self._keyframes: deque[_SegmentDraft | None] = deque()
        self._scan_from = 0
        self._last_video_pts: int | None = None
        self._parameter_sets = b""
        self._closed = False
        self.discarded_frames = 0
        """Video packets the segmenter could not use (before the first keyframe); each is
        also reported in the first segment's `dropped_frames`."""

    def add_video(self, packet: VideoPacket) -> None:
        """Mux one video packet; emits the previous segment when this keyframe closes it."""
        self._check_open()
        data = self._complete_parameter_sets(packet)
        if data is None:
            return
        if self._last_video_pts is not None and packet.pts <= self._last_video_pts:
            raise EncoderError(
                f"video packet at pts {packet.pts} does not follow pts {self._last_video_pts}"
            )
        draft = self._draft
        closes: _SegmentDraft | None = None
        if draft is None:
            if not packet.keyframe:
                self._dropped_before_start += 1  # undecodable without its keyframe
                self.discarded_frames += 1
                return
            self._draft = _SegmentDraft.starting_at(packet, self._dropped_before_start)
        elif packet.keyframe and packet.pts - draft.first_pts >= self._cut_ticks:
            closes = draft
            self._draft = _SegmentDraft.starting_at(packet)
        else:
            draft.add(packet)
        if packet.keyframe:
            self._keyframes.append(closes)
        self._last_video_pts = packet.pts
        self._mux(data, self._video, packet.pts, packet.keyframe)
        self._cut_finished_segments()

    def add_audio(self, packet: AudioPacket) -> None:
        """Mux one AAC packet (with ADTS header); raises EncoderError if audio is not enabled."""
        self._check_open()
        if self._audio is None:
            raise EncoderError("audio packet given to a segmenter opened without audio")
        self._mux(packet.data, self._audio, packet.pts, True)
        self._cut_finished_segments()

    def report_dropped(self, frames: int) -> None:
        """Record frames lost before encoding; the segment being assembled reports them."""
        if frames <= 0:
            return
        if self._draft is None:
            self._dropped_before_start += frames
        else:
            self._draft.dropped += frames

    def close(self) -> None:
        """Finish the stream and emit the final, possibly short, segment. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._container.close()
        except av.FFmpegError as exc:
            raise EncoderError(f"MPEG-TS muxer failed to finish the stream: {exc}") from exc
        self._cut_finished_segments()
        if any(closes is not None for closes in self._keyframes):
            raise EncoderError("MPEG-TS output lacks a keyframe the segmenter muxed")
        if self._draft is not None:
            self._emit(self._draft, len(self._sink.buffer))
            self._draft = None

    def _check_open(self) -> None:
        if self._closed:
            raise EncoderError("packet given to a segmenter that is already closed")

    def _mux(self, data: bytes, stream: Stream, pts: int, keyframe: bool) -> None:
        packet = av.Packet(data)
        packet.stream = stream
        packet.time_base = self._time_bases[stream.index]
        packet.pts = pts
        packet.dts = pts
        packet.is_keyframe = keyframe
        try:
            self._container.mux(packet)
        except av.FFmpegError as exc:
            raise EncoderError(f"MPEG-TS muxer rejected a {stream.type} packet: {exc}") from exc

    def _cut_finished_segments(self) -> None:
        """Find keyframe starts in the new output and emit the segments they close."""
        buffer = self._sink.buffer
        end = len(buffer) - len(buffer) % _TS_PACKET
        position = buffer.find(_VIDEO_PES_START, self._scan_from, end)
        while position != -1:
            if position % _TS_PACKET == 0 and _random_access(buffer, position):
                if not self._keyframes:
                    raise EncoderError("MPEG-TS output has a keyframe the segmenter never muxed")
                closes = self._keyframes.popleft()
                if closes is not None:
                    cut = _before_tables(buffer, position)
                    self._emit(closes, cut)
                    buffer = self._sink.buffer
                    position -= cut
                    end -= cut
            position = buffer.find(_VIDEO_PES_START, position + 1, end)
        self._scan_from = max(0, end - len(_VIDEO_PES_START) + 1)

    def _emit(self, draft: _SegmentDraft, cut: int) -> None:
        buffer = self._sink.buffer
        data = bytes(buffer[:cut])
        del buffer[:cut]
        self._on_segment(
            EncodedSegment(
                data=data,
                mono_start_ns=draft.first_mono_ns,
                mono_end_ns=draft.last_mono_ns + self._frame_ns,
                wall_start_ns=draft.first_wall_ns,
                wall_end_ns=draft.last_wall_ns + self._frame_ns,
                video_frames=draft.frames,
                codec=self.codec,
                dropped_frames=draft.dropped,
            )
        )

    def _complete_parameter_sets(self, packet: VideoPacket) -> bytes | None:
        """Return the packet's bytes with SPS/PPS in front of every keyframe, or None to skip it.

        Encoders that send the parameter sets once, or in a packet of their own (FFmpeg's
        V4L2 encoder), would otherwise leave every later segment undecodable on its own.
        """
        data = packet.data
        first = data.find(_START_CODE, 0, 5)
        if not packet.keyframe and (first == -1 or data[first + 3] & 0x1F not in (_SPS, _PPS)):
            return data  # the common case: a predicted picture, no scan needed
        parameter_sets, has_picture = _leading_parameter_sets(data)
        if parameter_sets:
            self._parameter_sets = parameter_sets
        if not has_picture:
            return None  # headers only: remembered, not a frame
        if not packet.keyframe or parameter_sets:
            return data
        if not self._parameter_sets:
            raise EncoderError("H.264 keyframe arrived before any SPS/PPS; the stream is unusable")
        return self._parameter_sets + data


def _check_codec(codec: CodecParameters) -> None:
    if codec.container != "mpegts" or codec.video_codec != "h264":
        raise EncoderError(
            f"segments are H.264 in MPEG-TS, not {codec.video_codec} in {codec.container}"
        )
    if codec.audio_codec not in (None, "aac"):
        raise EncoderError(f"segments carry AAC audio, not {codec.audio_codec}")
    if codec.audio_codec is not None and codec.audio_sample_rate <= 0:
        raise EncoderError("AAC audio needs a positive sample rate in the codec parameters")
    if codec.fps_num <= 0 or codec.fps_den <= 0:
        raise EncoderError(f"frame rate {codec.fps_num}/{codec.fps_den} is not positive")


def _random_access(buffer: bytearray, position: int) -> bool:
    adaptation = (buffer[position + 3] >> 4) & 0x3
    return adaptation in (2, 3) and buffer[position + 4] > 0 and bool(
        buffer[position + 5] & _RANDOM_ACCESS
    )


def _before_tables(buffer: bytearray, position: int) -> int:
    """Step back over the PAT/PMT/SDT packets the muxer put right before a keyframe."""
    while position >= _TS_PACKET:
        previous = position - _TS_PACKET
        pid = ((buffer[previous + 1] & 0x1F) << 8) | buffer[previous + 2]
        if pid not in _TABLE_PIDS:
            break
        position = previous
    return position


def _leading_parameter_sets(data: bytes) -> tuple[bytes, bool]:
    """Return the SPS/PPS units before the first coded slice, and whether a slice follows."""
    found: list[bytes] = []
    position = data.find(_START_CODE)
    while position != -1:
        begin = position + len(_START_CODE)
        if begin >= len(data):
            break
        kind = data[begin] & 0x1F
        if kind in _SLICE_TYPES:
            return b"".join(found), True
        following = data.find(_START_CODE, begin)
        if kind in (_SPS, _PPS):
            end = len(data) if following == -1 else following
            found.append(_LONG_START_CODE + data[begin:end].rstrip(b"\x00"))
        position = following
    return b"".join(found), False
