"""The Raspberry Pi path (picamera2 and its H.264 encoder) against FakePicamera2, no camera."""

from __future__ import annotations

import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from badge.capture import CaptureLoop, CaptureSettings
from badge.errors import SourceError
from badge.media import EncodedSegment
from badge.sources import PacketSource
from badge.sources.audio import SyntheticMicrophone
from badge.sources.picamera import (
    EncodedFrame,
    Picamera2Library,
    PicameraSource,
    bind_output,
    load_picamera2,
)
from tests.badge.tsprobe import assert_valid_run
from tests.fakes.fake_picamera2 import (
    FakeCompletedRequest,
    FakeH264Encoder,
    FakeMappedArray,
    FakeOutput,
    FakePicamera2,
)

FPS = 30


@dataclass
class FakeRig:
    """A picamera2 stand-in whose cameras and encoders the test can look at afterwards."""

    cameras: list[FakePicamera2] = field(default_factory=list)
    encoders: list[FakeH264Encoder] = field(default_factory=list)

    def library(
        self, *, attached: int = 1, lost_frames: frozenset[int] = frozenset()
    ) -> Picamera2Library:
        rig = self

        class Camera(FakePicamera2):
            realtime = False
            cameras = attached

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                rig.cameras.append(self)

        Camera.lost_frames = lost_frames

        class Encoder(FakeH264Encoder):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                rig.encoders.append(self)

        return Picamera2Library(Camera, Encoder, FakeMappedArray, FakeOutput)


def _record(
    source: PicameraSource,
    segment_count: int,
    *,
    microphone: SyntheticMicrophone | None = None,
    on_segment_delay: float = 0.0,
) -> tuple[list[EncodedSegment], CaptureLoop]:
    segments: list[EncodedSegment] = []
    enough = threading.Event()

    def collect(segment: EncodedSegment) -> None:
        segments.append(segment)
        if len(segments) <= 2:
            time.sleep(on_segment_delay)
        if len(segments) >= segment_count:
            enough.set()

    loop = CaptureLoop(source, microphone, CaptureSettings(segment_seconds=2.0), collect)
    loop.start()
    assert enough.wait(60), f"only {len(segments)} segments: {loop.failure}"
    loop.stop()
    assert not loop.running and loop.failure is None
    return segments, loop


def test_without_picamera2_the_error_names_the_pi_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails as on a laptop
    with pytest.raises(SourceError, match=r"install medbadge\[pi\] on a Raspberry Pi"):
        load_picamera2()
    with pytest.raises(SourceError, match=r"install medbadge\[pi\] on a Raspberry Pi"):
        PicameraSource(320, 240, FPS, 2.0, badge_id="B-17")


def test_no_camera_attached_is_a_source_error() -> None:
    with pytest.raises(SourceError, match="cannot open Raspberry Pi camera 0"):
        PicameraSource(320, 240, FPS, 2.0, badge_id="B-17", library=FakeRig().library(attached=0))


def test_camera_and_encoder_are_set_up_for_segments() -> None:
    rig = FakeRig()
    source = PicameraSource(320, 240, FPS, 2.0, badge_id="B-17", library=rig.library())
    assert isinstance(source, PacketSource)
    camera = rig.cameras[0]
    config = camera.camera_configuration()
    assert config is not None
    assert config["main"]["format"] == "RGB888" and config["main"]["size"] == (320, 240)
    assert config["controls"]["FrameDurationLimits"] == (33333, 33333)
    assert config["encode"] == "main" and config["display"] is None
    packets = source.packets()
    next(packets)
    encoder = rig.encoders[0]
    assert (encoder.iperiod, encoder.repeat, encoder.framerate) == (60, True, 30.0)
    assert isinstance(encoder.output, FakeOutput), "picamera2 accepts only Output subclasses"
    source.close()
    list(packets)  # yields what the encoder had queued, then ends
    assert not camera.is_open
    # the callback picamera2 runs on each frame draws the caption into the camera's buffer
    black = np.zeros(config["main"]["framesize"], dtype=np.uint8)
    camera.pre_callback(
        FakeCompletedRequest(camera, {"main": black}, {"SensorTimestamp": time.monotonic_ns()})
    )
    stride = config["main"]["stride"]
    assert black.reshape((240, stride))[:40, : 110 * 3].max() > 200, "no caption drawn"


def test_output_only_queues_and_drops_until_the_next_keyframe_when_full() -> None:
    frames: queue.Queue[EncodedFrame] = queue.Queue(maxsize=2)
    output = bind_output(FakeOutput)(frames)
    assert isinstance(output, FakeOutput)
    output.start()
    output.outputframe(b"key-1", True, 0)
    output.outputframe(b"p-1", False, 33_333)
    output.outputframe(b"p-2", False, 66_666)  # queue full: dropped, and returns at once
    frames.get_nowait()
    frames.get_nowait()
    output.outputframe(b"p-3", False, 100_000)  # room again, but undecodable without p-2
    output.outputframe(b"key-2", True, 133_333)
    output.outputframe(b"p-4", False, 166_666)
    output.outputframe(None, True, 170_000, None, True)  # picamera2's own audio: ignored
    assert [frames.get_nowait() for _ in range(2)] == [
        EncodedFrame(b"key-2", True, 133_333),
        EncodedFrame(b"p-4", False, 166_666),
    ]
    assert output.take_dropped() == 2
    assert output.take_dropped() == 0


def test_segments_from_the_pi_path_are_valid_and_captioned(tmp_path: Path) -> None:
    rig = FakeRig()
    source = PicameraSource(320, 240, FPS, 2.0, badge_id="PI-7", library=rig.library())
    segments, loop = _record(source, 3)
    assert all(segment.video_frames == 60 for segment in segments[:3])
    assert sum(segment.video_frames for segment in segments) == rig.encoders[0].frames_encoded
    assert loop.stats.frames_dropped == 0
    assert_valid_run(tmp_path, segments, audio=False, fps=FPS)
    for earlier, later in pairwise(segments[:3]):
        # Sensor timestamps: 60 frames of 33 333 us (FrameDurationLimits) per segment.
        assert later.mono_start_ns - earlier.mono_start_ns == 60 * 33_333_000
        assert later.wall_start_ns - earlier.wall_start_ns == pytest.approx(
            60 * 33_333_000, abs=1e6
        )
    # Frame 60 opens segment 1; the sweeping bar is far right, so bright pixels in the
    # top-left corner can only be the caption drawn in pre_callback.
    with av.open(str(tmp_path / "seg001.ts")) as clip:
        luma = next(clip.decode(video=0)).to_ndarray(format="gray")
    assert luma[:40, :110].max() > 200, "caption missing"
    assert luma[100:200, :110].max() < 120, "the scene itself is dark there"


def test_pi_path_carries_microphone_audio(tmp_path: Path) -> None:
    source = PicameraSource(320, 240, FPS, 2.0, badge_id="PI-7", library=FakeRig().library())
    microphone = SyntheticMicrophone(48_000, 1, block_ms=20, realtime=False)
    segments, _ = _record(source, 2, microphone=microphone)
    assert segments[0].codec.audio_codec == "aac"
    assert_valid_run(tmp_path, segments, audio=True, fps=FPS)


def test_packets_dropped_at_a_full_queue_are_reported_and_the_stream_resyncs(
    tmp_path: Path,
) -> None:
    rig = FakeRig()
    source = PicameraSource(
        320, 240, FPS, 2.0, badge_id="PI-7", queue_packets=1, library=rig.library()
    )
    segments, loop = _record(source, 4, on_segment_delay=0.3)
    stats = loop.stats
    assert stats.frames_dropped > 0
    assert sum(segment.dropped_frames for segment in segments) == stats.frames_dropped
    encoded = rig.encoders[0].frames_encoded
    assert sum(segment.video_frames for segment in segments) + stats.frames_dropped == encoded
    assert_valid_run(tmp_path, segments, audio=False, fps=FPS, gapless=False)


def test_frames_the_sensor_never_delivered_are_reported(tmp_path: Path) -> None:
    library = FakeRig().library(lost_frames=frozenset({10, 11, 12}))
    source = PicameraSource(320, 240, FPS, 2.0, badge_id="PI-7", library=library)
    segments, loop = _record(source, 2)
    assert segments[0].dropped_frames == 3
    assert loop.stats.frames_dropped == 3
    assert_valid_run(tmp_path, segments, audio=False, fps=FPS, gapless=False)


def test_close_before_recording_releases_the_camera() -> None:
    rig = FakeRig()
    source = PicameraSource(320, 240, FPS, 2.0, badge_id="PI-7", library=rig.library())
    source.close()
    assert not rig.cameras[0].is_open
    assert list(source.packets()) == [], "a closed camera records nothing"
    assert rig.encoders == [], "no encoder was started"


def test_recording_twice_from_one_camera_is_refused() -> None:
    source = PicameraSource(320, 240, FPS, 2.0, badge_id="PI-7", library=FakeRig().library())
    first = source.packets()
    next(first)
    with pytest.raises(SourceError, match="already recording"):
        next(source.packets())
    source.close()
    list(first)
