"""CaptureLoop end to end: real sources, real encoders, segments checked with ffprobe/ffmpeg."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from badge.capture import CaptureLoop, CaptureSettings
from badge.errors import BadgeError, ConfigError, SourceError
from badge.media import AudioBlock, EncodedSegment, VideoFrame
from badge.sources.audio import SyntheticMicrophone
from badge.sources.opencv_camera import OpenCVCamera
from badge.sources.synthetic import SyntheticCamera
from tests.badge.tsprobe import assert_valid_run, probe, write_segments

FPS = 30


def _run_to_end(loop: CaptureLoop) -> None:
    loop.start()
    assert loop.wait(60), "capture did not finish"
    assert not loop.running


def test_camera_and_microphone_make_valid_segments(tmp_path: Path) -> None:
    segments: list[EncodedSegment] = []
    camera = SyntheticCamera(320, 240, FPS, "B-17", realtime=False, max_frames=150)
    microphone = SyntheticMicrophone(48_000, 1, block_ms=20, realtime=False)
    loop = CaptureLoop(camera, microphone, CaptureSettings(segment_seconds=2.0), segments.append)
    _run_to_end(loop)
    assert loop.failure is None
    assert [segment.video_frames for segment in segments] == [60, 60, 30]
    stats = loop.stats
    assert (stats.frames_captured, stats.frames_encoded, stats.frames_dropped) == (150, 150, 0)
    assert (stats.segments_emitted, stats.segments_lost) == (3, 0)
    whole = assert_valid_run(tmp_path, segments, audio=True, fps=FPS)
    assert whole.video_seconds == pytest.approx(5.0, abs=1 / FPS)
    codec = segments[0].codec
    assert (codec.audio_codec, codec.audio_sample_rate, codec.audio_channels) == ("aac", 48_000, 1)


def test_without_microphone_segments_carry_no_audio(tmp_path: Path) -> None:
    segments: list[EncodedSegment] = []
    camera = SyntheticCamera(320, 240, FPS, "B-17", realtime=False, max_frames=75)
    _run_to_end(CaptureLoop(camera, None, CaptureSettings(), segments.append))
    assert [segment.video_frames for segment in segments] == [60, 15]
    assert segments[0].codec.audio_codec is None
    assert_valid_run(tmp_path, segments, audio=False, fps=FPS)


def test_video_file_is_encoded_frame_for_frame(tmp_path: Path) -> None:
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"MJPG"), 15.0, (320, 240))
    for number in range(45):
        writer.write(np.full((240, 320, 3), (number * 5, 100, 200), dtype=np.uint8))
    writer.release()
    segments: list[EncodedSegment] = []
    camera = OpenCVCamera(str(clip), badge_id="B-17")
    _run_to_end(CaptureLoop(camera, None, CaptureSettings(), segments.append))
    assert [segment.video_frames for segment in segments] == [30, 15]
    whole = assert_valid_run(tmp_path, segments, audio=False, fps=15)
    assert whole.video_seconds == pytest.approx(3.0, abs=1 / 15)


def test_frames_dropped_while_the_encoder_is_stalled_are_reported_by_the_next_segment(
    tmp_path: Path,
) -> None:
    segments: list[EncodedSegment] = []

    def slow_consumer(segment: EncodedSegment) -> None:
        segments.append(segment)
        if len(segments) == 1:
            time.sleep(1.0)  # the encoding thread is stuck here while the camera runs on

    camera = SyntheticCamera(320, 240, FPS, "B-17", realtime=True, max_frames=120)
    loop = CaptureLoop(camera, None, CaptureSettings(frame_queue=2), slow_consumer)
    _run_to_end(loop)
    stats = loop.stats
    assert stats.frames_dropped > 0
    assert sum(segment.dropped_frames for segment in segments) == stats.frames_dropped
    # A 1 s stall at 30 fps with room for 2 frames loses about 28; a loaded machine may
    # lose the odd frame elsewhere too, which is counted the same way.
    assert segments[1].dropped_frames >= 20, "the segment recorded during the stall reports it"
    assert sum(segment.video_frames for segment in segments) + stats.frames_dropped == 120
    whole = assert_valid_run(tmp_path, segments, audio=False, fps=FPS, gapless=False)
    assert whole.decoded_video_frames == 120 - stats.frames_dropped


def test_the_frame_queue_holds_its_byte_budget_while_the_encoder_is_stalled(
    tmp_path: Path,
) -> None:
    """Room for eight frames by count, two by bytes: the bytes bound the memory."""
    segments: list[EncodedSegment] = []

    def slow_consumer(segment: EncodedSegment) -> None:
        segments.append(segment)
        if len(segments) == 1:
            time.sleep(1.0)

    camera = SyntheticCamera(320, 240, FPS, "B-17", realtime=True, max_frames=120)
    frame_bytes = 320 * 240 * 3 // 2  # one I420 frame
    settings = CaptureSettings(frame_queue=8, frame_queue_bytes=2 * frame_bytes)
    loop = CaptureLoop(camera, None, settings, slow_consumer)
    _run_to_end(loop)
    assert loop.queue_peak_bytes[0] == 2 * frame_bytes
    assert segments[1].dropped_frames >= 20, "the stall's frames beyond two are dropped"
    assert sum(segment.dropped_frames for segment in segments) == loop.stats.frames_dropped
    assert sum(segment.video_frames for segment in segments) + loop.stats.frames_dropped == 120


def test_refused_segment_is_counted_and_its_frames_reported_by_the_next(tmp_path: Path) -> None:
    delivered: list[EncodedSegment] = []
    offered = 0

    def refuse_second(segment: EncodedSegment) -> None:
        nonlocal offered
        offered += 1
        if offered == 2:
            raise OSError("segment queue full")
        delivered.append(segment)

    camera = SyntheticCamera(320, 240, FPS, "B-17", realtime=False, max_frames=150)
    loop = CaptureLoop(camera, None, CaptureSettings(), refuse_second)
    _run_to_end(loop)
    assert loop.failure is None, "a refused segment does not stop capture"
    assert [segment.video_frames for segment in delivered] == [60, 30]
    assert [segment.dropped_frames for segment in delivered] == [0, 60]
    stats = loop.stats
    assert (stats.segments_emitted, stats.segments_lost, stats.frames_dropped) == (2, 1, 60)
    paths, _ = write_segments(tmp_path, delivered)
    for path, segment in zip(paths, delivered, strict=True):
        clip = probe(path)
        assert clip.decode_errors == ""
        assert clip.decoded_video_frames == segment.video_frames


def test_stop_finishes_the_current_segment(tmp_path: Path) -> None:
    segments: list[EncodedSegment] = []
    first = threading.Event()

    def collect(segment: EncodedSegment) -> None:
        segments.append(segment)
        first.set()

    camera = SyntheticCamera(320, 240, FPS, "B-17", realtime=False)  # never ends by itself
    loop = CaptureLoop(camera, None, CaptureSettings(), collect)
    loop.start()
    assert first.wait(30)
    loop.stop()
    assert not loop.running
    assert len(segments) >= 2
    assert segments[-1].video_frames > 0, "the partial segment is emitted"
    stats = loop.stats
    assert stats.frames_dropped == 0
    assert sum(segment.video_frames for segment in segments) == stats.frames_captured
    assert_valid_run(tmp_path, segments, audio=False, fps=FPS)


class _CameraUnpluggedAfter(SyntheticCamera):
    """The synthetic camera, failing the way a camera pulled from its socket does."""

    def frames(self) -> Iterator[VideoFrame]:
        for frame in super().frames():
            if frame.index == 75:
                raise SourceError("camera 0 stopped delivering frames")
            yield frame


def test_source_failure_ends_capture_with_the_frames_so_far(tmp_path: Path) -> None:
    segments: list[EncodedSegment] = []
    camera = _CameraUnpluggedAfter(320, 240, FPS, "B-17", realtime=False)
    loop = CaptureLoop(camera, None, CaptureSettings(), segments.append)
    _run_to_end(loop)
    assert isinstance(loop.failure, SourceError)
    assert [segment.video_frames for segment in segments] == [60, 15]
    assert_valid_run(tmp_path, segments, audio=False, fps=FPS)


class _MicrophoneUnpluggedAfter(SyntheticMicrophone):
    """The synthetic microphone, failing after one second like a USB microphone pulled out."""

    def blocks(self) -> Iterator[AudioBlock]:
        for number, block in enumerate(super().blocks()):
            if number == 50:
                raise SourceError("ALSA device 'default' stopped delivering audio")
            yield block


def test_microphone_failure_is_reported_and_video_goes_on(tmp_path: Path) -> None:
    segments: list[EncodedSegment] = []
    camera = SyntheticCamera(320, 240, FPS, "B-17", realtime=False, max_frames=150)
    microphone = _MicrophoneUnpluggedAfter(48_000, 1, block_ms=20, realtime=False)
    loop = CaptureLoop(camera, microphone, CaptureSettings(), segments.append)
    _run_to_end(loop)
    assert isinstance(loop.failure, SourceError)
    assert [segment.video_frames for segment in segments] == [60, 60, 30]
    assert loop.stats.frames_dropped == 0
    paths, _ = write_segments(tmp_path, segments)
    assert probe(paths[0]).streams == {"video": "h264", "audio": "aac"}
    assert probe(paths[2]).decoded_video_frames == 30


@pytest.mark.parametrize(
    "values",
    [
        {"segment_seconds": 0},
        {"segment_seconds": 120},
        {"frame_queue": 0},
        {"video_bitrate": -1},
        {"audio_bitrate": 0},
    ],
)
def test_settings_out_of_range_are_config_errors(values: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        CaptureSettings(**values)  # type: ignore[arg-type]


def test_a_loop_starts_once() -> None:
    camera = SyntheticCamera(64, 48, FPS, "B-17", realtime=False, max_frames=3)
    loop = CaptureLoop(camera, None, CaptureSettings(), lambda segment: None)
    _run_to_end(loop)
    with pytest.raises(BadgeError, match="already started"):
        loop.start()
