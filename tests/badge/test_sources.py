"""Sources and caption: synthetic camera and microphone, OpenCV file/camera input, ALSA errors."""

from __future__ import annotations

import calendar
import time
from fractions import Fraction
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import pytest

from badge.errors import SourceError
from badge.overlay import caption_lines, draw_overlay
from badge.sources import AudioSource, FrameSource
from badge.sources.audio import AlsaMicrophone, SyntheticMicrophone
from badge.sources.opencv_camera import OpenCVCamera
from badge.sources.synthetic import SyntheticCamera

WALL_NS = (calendar.timegm((2024, 1, 2, 3, 4, 5)) * 1_000_000_000) + 678_900_000


# -- caption -------------------------------------------------------------------------------


def test_caption_reads_utc_time_to_the_millisecond_counter_and_badge() -> None:
    assert caption_lines("B-17", WALL_NS, 42) == (
        "2024-01-02 03:04:05.678 UTC",
        "#0000042  badge B-17",
    )


def test_overlay_draws_in_the_top_left_corner_only() -> None:
    image = np.full((240, 320, 3), 128, dtype=np.uint8)
    draw_overlay(image, "B-17", WALL_NS, 42)
    corner = image[:40, :160]
    assert (corner < 40).any(), "the box behind the text is dark"
    assert (corner > 200).any(), "the text is bright"
    assert (image[120:, 200:] == 128).all(), "nothing outside the caption changes"


def test_overlay_differs_when_time_or_frame_differs() -> None:
    images = [np.zeros((240, 320, 3), dtype=np.uint8) for _ in range(3)]
    draw_overlay(images[0], "B-17", WALL_NS, 42)
    draw_overlay(images[1], "B-17", WALL_NS + 1_000_000, 42)
    draw_overlay(images[2], "B-17", WALL_NS, 43)
    assert not np.array_equal(images[0], images[1])
    assert not np.array_equal(images[0], images[2])


@pytest.mark.parametrize("shape", [(480, 640, 4), (480, 640)], ids=["bgrx", "luma"])
def test_overlay_works_on_the_buffers_picamera2_maps(shape: tuple[int, ...]) -> None:
    image = np.full(shape, 100, dtype=np.uint8)
    draw_overlay(image, "B-17", WALL_NS, 1)
    assert (image[:50, :200] > 200).any()


# -- synthetic camera ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pixel_format", "shape"), [("yuv420p", (360, 320)), ("bgr24", (240, 320, 3))]
)
def test_synthetic_camera_fast_mode_has_exact_frame_timestamps_and_moving_picture(
    pixel_format: Literal["yuv420p", "bgr24"], shape: tuple[int, ...]
) -> None:
    camera = SyntheticCamera(
        320, 240, 30, "B-17", realtime=False, max_frames=45, pixel_format=pixel_format
    )
    assert isinstance(camera, FrameSource)
    frames = list(camera.frames())
    assert [frame.index for frame in frames] == list(range(45))
    period = 1_000_000_000 / 30
    for frame in frames:
        assert frame.pixel_format == pixel_format
        assert frame.image.shape == shape and frame.image.dtype == np.uint8
        assert abs(frame.mono_ns - frames[0].mono_ns - frame.index * period) < 1
        assert frame.wall_ns - frames[0].wall_ns == frame.mono_ns - frames[0].mono_ns
    # The moving block (below the caption) changes the picture from frame to frame.
    assert not np.array_equal(frames[0].image[100:], frames[10].image[100:])
    # The caption shows each frame's own counter.
    assert not np.array_equal(frames[0].image[:40], frames[1].image[:40])


def test_synthetic_camera_realtime_never_delivers_a_frame_before_its_time() -> None:
    camera = SyntheticCamera(64, 48, 30, "B-17", realtime=True, max_frames=5)
    for frame in camera.frames():
        assert frame.mono_ns <= time.monotonic_ns()


def test_synthetic_camera_realtime_skips_frames_a_slow_reader_missed() -> None:
    camera = SyntheticCamera(64, 48, 30, "B-17", realtime=True)
    frames = camera.frames()
    first = next(frames)
    time.sleep(0.2)  # six frame periods: the sensor does not wait
    second = next(frames)
    camera.close()
    assert second.index - first.index > 1


def test_synthetic_camera_close_ends_the_iterator() -> None:
    camera = SyntheticCamera(64, 48, 30, "B-17", realtime=False)
    frames = camera.frames()
    next(frames)
    camera.close()
    assert len(list(frames)) <= 1


@pytest.mark.parametrize(("width", "height"), [(321, 240), (320, 241), (8, 8)])
def test_synthetic_camera_rejects_sizes_h264_cannot_take(width: int, height: int) -> None:
    with pytest.raises(SourceError, match="even"):
        SyntheticCamera(width, height, 30, "B-17", realtime=False)


# -- OpenCV camera / file --------------------------------------------------------------------


def _write_clip(path: Path, frames: int, fps: float = 10.0) -> list[tuple[int, int, int]]:
    """Write a clip of solid-colour frames with OpenCV; return each frame's BGR colour."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (320, 240))
    assert writer.isOpened()
    colours = [(40 + 5 * n, 120, 200 - 5 * n) for n in range(frames)]
    for colour in colours:
        writer.write(np.full((240, 320, 3), colour, dtype=np.uint8))
    writer.release()
    return colours


def test_opencv_source_reads_a_video_file_with_caption_and_file_timing(tmp_path: Path) -> None:
    clip = tmp_path / "clip.avi"
    colours = _write_clip(clip, 20)
    camera = OpenCVCamera(str(clip), badge_id="B-17")
    assert isinstance(camera, FrameSource)
    assert (camera.width, camera.height, camera.fps) == (320, 240, Fraction(10))
    assert not camera.realtime
    frames = list(camera.frames())
    assert [frame.index for frame in frames] == list(range(20))
    for frame, colour in zip(frames, colours, strict=True):
        body = frame.image[150:, 200:].reshape(-1, 3).mean(axis=0)
        assert np.allclose(body, colour, atol=6), "the picture is the file's frame"
        corner = frame.image[:40, :150].astype(np.int16)
        assert np.abs(corner - colour).max() > 60, "the caption is burned in"
        assert frame.mono_ns - frames[0].mono_ns == frame.index * 100_000_000


def test_opencv_source_missing_file_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        OpenCVCamera(str(tmp_path / "missing.avi"), badge_id="B-17")


def test_opencv_source_file_that_is_not_video_is_a_source_error(tmp_path: Path) -> None:
    notes = tmp_path / "notes.avi"
    notes.write_text("not a video")
    with pytest.raises(SourceError, match=r"notes\.avi"):
        OpenCVCamera(str(notes), badge_id="B-17")


def test_opencv_source_absent_camera_is_a_source_error() -> None:
    with pytest.raises(SourceError, match="camera 63"):
        OpenCVCamera(63, badge_id="B-17")


def test_opencv_source_close_releases_and_ends_frames(tmp_path: Path) -> None:
    clip = tmp_path / "clip.avi"
    _write_clip(clip, 20)
    camera = OpenCVCamera(str(clip), badge_id="B-17")
    frames = camera.frames()
    next(frames)
    camera.close()
    assert list(frames) == []


# -- microphones -----------------------------------------------------------------------------


def test_synthetic_microphone_blocks_tone_and_beeps() -> None:
    microphone = SyntheticMicrophone(48_000, 1, block_ms=20, realtime=False)
    assert isinstance(microphone, AudioSource)
    blocks = []
    for block in microphone.blocks():
        blocks.append(block)
        if len(blocks) == 60:
            microphone.close()
    assert len(blocks) == 60
    assert all(block.samples.shape == (960,) for block in blocks)
    assert all(block.samples.dtype == np.int16 for block in blocks)
    starts = [block.mono_ns - blocks[0].mono_ns for block in blocks[:3]]
    assert starts == [0, 20_000_000, 40_000_000]

    def loudness(index: int) -> float:
        return float(np.sqrt(np.mean(blocks[index].samples.astype(np.float64) ** 2)))

    beep, tone = loudness(0), loudness(25)  # 0-20 ms: beep; 500-520 ms: tone only
    assert tone > 500, "the tone is audible"
    assert beep > 4 * tone, "the beep stands out"
    assert np.array_equal(blocks[0].samples, blocks[50].samples), "one beep per second"


def test_synthetic_microphone_stereo_interleaves_both_channels() -> None:
    microphone = SyntheticMicrophone(48_000, 2, block_ms=10, realtime=False)
    block = next(microphone.blocks())
    assert block.channels == 2 and block.samples.shape == (960,)
    assert np.array_equal(block.samples[0::2], block.samples[1::2])


def test_synthetic_microphone_rejects_blocks_that_are_not_whole_samples() -> None:
    with pytest.raises(SourceError, match="whole number of samples"):
        SyntheticMicrophone(44_100, 1, block_ms=3)


def test_alsa_microphone_absent_device_is_a_source_error() -> None:
    device = "hw:CARD=medbadge_absent_card"
    with pytest.raises(SourceError, match="medbadge_absent_card"):
        AlsaMicrophone(device)


def test_the_synthetic_i420_picture_is_the_bgr_picture() -> None:
    """The two formats draw the same scene: I420 decoded back to BGR matches the BGR frame."""
    frames = {
        pixel_format: next(
            SyntheticCamera(
                320, 240, 30, "B-17", realtime=False, max_frames=1, pixel_format=pixel_format
            ).frames()
        )
        for pixel_format in ("yuv420p", "bgr24")
    }
    decoded = cv2.cvtColor(frames["yuv420p"].image, cv2.COLOR_YUV2BGR_I420).astype(np.int16)
    bgr = frames["bgr24"].image.astype(np.int16)
    body = (slice(60, None), slice(None))  # below the caption (whose box is grey in I420)
    assert np.median(np.abs(decoded[body] - bgr[body])) <= 3
    assert (decoded[:20, :100] > 200).any() and (decoded[:20, :100] < 40).any()
