"""TsSegmenter with real PyAV encoders: cut at keyframes, each plays alone, joined they are one."""

from __future__ import annotations

from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import av
import pytest
from av.video.codeccontext import VideoCodecContext

from badge.encoder import (
    SOFTWARE_VIDEO_CODEC,
    TS_CLOCK,
    AudioEncoder,
    AudioPacket,
    VideoEncoder,
    VideoPacket,
    choose_video_codec,
)
from badge.errors import EncoderError
from badge.media import CodecParameters, EncodedSegment, VideoFrame
from badge.segmenter import TsSegmenter
from badge.sources.audio import SyntheticMicrophone
from badge.sources.synthetic import SyntheticCamera
from tests.badge.tsprobe import assert_valid_run, probe

FPS = 30
WIDTH, HEIGHT = 320, 240
RATE = 48_000
VIDEO_ONLY = CodecParameters("mpegts", "h264", WIDTH, HEIGHT, FPS, 1)
WITH_AUDIO = CodecParameters("mpegts", "h264", WIDTH, HEIGHT, FPS, 1, "aac", RATE, 1)
FRAME_NS = 1_000_000_000 // FPS


def _frames(seconds: float) -> list[VideoFrame]:
    camera = SyntheticCamera(
        WIDTH,
        HEIGHT,
        FPS,
        "B-17",
        realtime=False,
        max_frames=round(seconds * FPS),
        pixel_format="bgr24",  # the helper below feeds PyAV BGR itself
    )
    return list(camera.frames())


def _pts(frame: VideoFrame, origin: VideoFrame) -> int:
    return (frame.mono_ns - origin.mono_ns) * TS_CLOCK // 1_000_000_000


def _encode(frames: list[VideoFrame], keyframe_seconds: float = 2.0) -> list[VideoPacket]:
    encoder = VideoEncoder(
        WIDTH, HEIGHT, Fraction(FPS), keyframe_seconds, codec=SOFTWARE_VIDEO_CODEC
    )
    packets = []
    for frame in frames:
        packets += encoder.encode(frame, _pts(frame, frames[0]))
    return packets + encoder.flush()


def _encode_audio(seconds: float) -> list[AudioPacket]:
    microphone = SyntheticMicrophone(RATE, 1, block_ms=20, realtime=False)
    encoder = AudioEncoder(RATE, 1)
    packets = []
    for number, block in enumerate(microphone.blocks()):
        if number * 0.02 >= seconds:
            break
        packets += encoder.encode(block.samples, number * len(block.samples))
    return packets + encoder.flush()


def _segment(
    video: list[VideoPacket],
    audio: list[AudioPacket] | None = None,
    segment_seconds: float = 2.0,
) -> list[EncodedSegment]:
    segments: list[EncodedSegment] = []
    segmenter = TsSegmenter(
        VIDEO_ONLY if audio is None else WITH_AUDIO, segment_seconds, segments.append
    )
    # Feed in presentation order, as the capture loop does.
    timeline: list[tuple[Fraction, VideoPacket | AudioPacket]] = [
        (Fraction(packet.pts, TS_CLOCK), packet) for packet in video
    ]
    timeline += [(Fraction(packet.pts, RATE), packet) for packet in audio or []]
    for _, packet in sorted(timeline, key=lambda item: item[0]):
        if isinstance(packet, VideoPacket):
            segmenter.add_video(packet)
        else:
            segmenter.add_audio(packet)
    segmenter.close()
    return segments


def test_segments_cut_at_keyframes_play_alone_and_concatenate(tmp_path: Path) -> None:
    segments = _segment(_encode(_frames(5.0)))
    assert [segment.video_frames for segment in segments] == [60, 60, 30]
    whole = assert_valid_run(tmp_path, segments, audio=False, fps=FPS)
    assert whole.video_seconds == pytest.approx(5.0, abs=1 / FPS)
    assert "audio" not in whole.streams


def test_segments_carry_audio_when_enabled(tmp_path: Path) -> None:
    segments = _segment(_encode(_frames(5.0)), _encode_audio(5.0))
    assert [segment.video_frames for segment in segments] == [60, 60, 30]
    whole = assert_valid_run(tmp_path, segments, audio=True, fps=FPS)
    assert whole.audio_sample_rate == RATE
    assert whole.video_seconds == pytest.approx(5.0, abs=1 / FPS)


def test_segment_clocks_span_first_frame_to_end_of_last_and_abut() -> None:
    frames = _frames(5.0)
    segments = _segment(_encode(frames))
    starts = [0, 60, 120]
    lasts = [59, 119, 149]
    for segment, start, last in zip(segments, starts, lasts, strict=True):
        assert segment.mono_start_ns == frames[start].mono_ns
        assert segment.wall_start_ns == frames[start].wall_ns
        assert segment.mono_end_ns == frames[last].mono_ns + FRAME_NS
        assert segment.wall_end_ns == frames[last].wall_ns + FRAME_NS
        assert segment.codec == VIDEO_ONLY
        assert segment.dropped_frames == 0
    for earlier, later in pairwise(segments):
        assert abs(later.mono_start_ns - earlier.mono_end_ns) <= 1


def test_keyframes_more_often_than_segments_still_cut_every_segment_length(tmp_path: Path) -> None:
    segments = _segment(_encode(_frames(5.0), keyframe_seconds=1.0))
    assert [segment.video_frames for segment in segments] == [60, 60, 30]
    assert_valid_run(tmp_path, segments, audio=False, fps=FPS)


def test_segment_ends_at_first_keyframe_after_its_length(tmp_path: Path) -> None:
    segments = _segment(_encode(_frames(5.0), keyframe_seconds=0.8))  # keyframe every 24 frames
    assert [segment.video_frames for segment in segments] == [72, 72, 6]
    assert_valid_run(tmp_path, segments, audio=False, fps=FPS)


def test_keyframe_stamped_a_little_early_still_closes_the_segment() -> None:
    packets = _encode(_frames(3.0))
    early = [
        VideoPacket(
            p.data, p.keyframe, p.pts - 300 if p.keyframe and p.pts else p.pts, p.mono_ns, p.wall_ns
        )
        for p in packets
    ]
    assert [segment.video_frames for segment in _segment(early)] == [60, 30]


def _encode_headers_once(frames: list[VideoFrame], separate_header: bool) -> list[VideoPacket]:
    """An encoder that sends SPS/PPS once (like V4L2 without repeat), inline or on its own."""
    context = av.CodecContext.create("libx264", "w")
    assert isinstance(context, VideoCodecContext)
    context.width, context.height, context.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    context.time_base = Fraction(1, TS_CLOCK)
    context.framerate = Fraction(FPS)
    context.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "x264-params": "keyint=60:scenecut=0",
    }
    context.flags |= av.codec.context.Flags.global_header
    context.open()
    packets: list[VideoPacket] = []
    for frame in frames:
        picture = av.VideoFrame.from_ndarray(frame.image, format="bgr24").reformat(format="yuv420p")
        picture.pts = _pts(frame, frames[0])
        for packet in context.encode(picture):
            assert packet.pts is not None
            data = bytes(packet)
            if not packets:
                header = context.extradata or b""
                assert header.startswith(b"\x00\x00\x00\x01"), "x264 writes Annex B extradata"
                if separate_header:
                    packets.append(
                        VideoPacket(header, False, packet.pts, frame.mono_ns, frame.wall_ns)
                    )
                    packets.append(
                        VideoPacket(data, True, packet.pts, frame.mono_ns, frame.wall_ns)
                    )
                    continue
                data = header + data
            packets.append(
                VideoPacket(data, packet.is_keyframe, packet.pts, frame.mono_ns, frame.wall_ns)
            )
    return packets


@pytest.mark.parametrize("separate_header", [False, True], ids=["inline-once", "own-packet"])
def test_parameter_sets_sent_once_are_repeated_so_every_segment_plays_alone(
    tmp_path: Path, separate_header: bool
) -> None:
    packets = _encode_headers_once(_frames(5.0), separate_header)
    segments = _segment(packets)
    assert [segment.video_frames for segment in segments] == [60, 60, 30]
    assert_valid_run(tmp_path, segments, audio=False, fps=FPS)


def test_dropped_frames_are_reported_by_the_segment_that_lost_them() -> None:
    packets = _encode(_frames(5.0))
    segments: list[EncodedSegment] = []
    segmenter = TsSegmenter(VIDEO_ONLY, 2.0, segments.append)
    segmenter.report_dropped(3)  # lost before anything was recorded
    for packet in packets[1:3]:
        segmenter.add_video(packet)  # predicted frames with no keyframe before them
    assert segmenter.discarded_frames == 2
    for number, packet in enumerate(packets):
        if number == 90:
            segmenter.report_dropped(4)
        segmenter.add_video(packet)
    segmenter.close()
    assert [segment.dropped_frames for segment in segments] == [5, 4, 0]
    assert [segment.video_frames for segment in segments] == [60, 60, 30]


def test_close_emits_the_partial_segment_once_and_refuses_more_packets(tmp_path: Path) -> None:
    packets = _encode(_frames(1.0))
    segments: list[EncodedSegment] = []
    segmenter = TsSegmenter(VIDEO_ONLY, 2.0, segments.append)
    for packet in packets:
        segmenter.add_video(packet)
    assert segments == [], "nothing is emitted before the segment is complete"
    segmenter.close()
    segmenter.close()
    assert [segment.video_frames for segment in segments] == [30]
    clip = tmp_path / "partial.ts"
    clip.write_bytes(segments[0].data)
    assert probe(clip).decoded_video_frames == 30
    with pytest.raises(EncoderError, match="closed"):
        segmenter.add_video(packets[0])


def test_close_without_packets_emits_nothing() -> None:
    segments: list[EncodedSegment] = []
    TsSegmenter(VIDEO_ONLY, 2.0, segments.append).close()
    assert segments == []


def test_timestamps_that_go_backwards_are_refused() -> None:
    packets = _encode(_frames(0.2))
    segmenter = TsSegmenter(VIDEO_ONLY, 2.0, lambda segment: None)
    segmenter.add_video(packets[0])
    segmenter.add_video(packets[1])
    with pytest.raises(EncoderError, match="does not follow"):
        segmenter.add_video(packets[1])


def test_audio_packet_without_audio_stream_is_refused() -> None:
    segmenter = TsSegmenter(VIDEO_ONLY, 2.0, lambda segment: None)
    with pytest.raises(EncoderError, match="without audio"):
        segmenter.add_audio(AudioPacket(b"\xff\xf1", 0, 1024))


@pytest.mark.parametrize(
    "codec",
    [
        CodecParameters("mp4", "h264", WIDTH, HEIGHT, FPS, 1),
        CodecParameters("mpegts", "hevc", WIDTH, HEIGHT, FPS, 1),
        CodecParameters("mpegts", "h264", WIDTH, HEIGHT, FPS, 1, "opus", RATE, 1),
        CodecParameters("mpegts", "h264", WIDTH, HEIGHT, 0, 1),
    ],
    ids=["container", "video", "audio", "rate"],
)
def test_parameters_segments_cannot_carry_are_refused(codec: CodecParameters) -> None:
    with pytest.raises(EncoderError):
        TsSegmenter(codec, 2.0, lambda segment: None)


def test_unknown_video_codec_is_refused() -> None:
    with pytest.raises(EncoderError, match="not supported"):
        choose_video_codec("mpeg2video")
    with pytest.raises(EncoderError, match="even"):
        VideoEncoder(321, 240, Fraction(FPS), 2.0)
