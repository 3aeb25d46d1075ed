"""The Raspberry Pi camera: picamera2 encodes H.264 on the device; we caption frames, queue packets.

The caption is drawn into each camera buffer in picamera2's `pre_callback` (camera thread),
the encoder (hardware on Pi 4 / Zero 2 W, libx264 inside picamera2 on Pi 5) puts a keyframe
every `fps * segment_seconds` frames with SPS/PPS repeated, and `SegmentPacketOutput` only
puts each packet on a bounded queue from the encoder's thread. The capture loop takes the
packets off that queue and muxes them, so neither picamera2 thread ever waits for us.

picamera2 is imported lazily: it exists only on a Pi (`pip install medbadge[pi]`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, NamedTuple, cast

from badge.encoder import TS_CLOCK, VideoPacket
from badge.errors import SourceError
from badge.overlay import draw_overlay

_log = logging.getLogger(__name__)

PI_EXTRA_HINT = "install medbadge[pi] on a Raspberry Pi"
_MAIN_FORMAT = "RGB888"  # picamera2's name for 24-bit pixels stored B, G, R: OpenCV's layout
_MATCH_TOLERANCE_US = 500


@dataclass(frozen=True)
class Picamera2Library:
    """The picamera2 names this module uses: the real library, or a stand-in with the same API."""

    picamera2: Callable[..., Any]
    """`picamera2.Picamera2`"""
    h264_encoder: Callable[..., Any]
    """`picamera2.encoders.H264Encoder` (hardware on Pi 4 and Zero 2 W, libx264 on Pi 5)"""
    mapped_array: Callable[..., Any]
    """`picamera2.MappedArray`"""
    output: type
    """`picamera2.outputs.Output`, the base class every encoder output must derive from"""


def load_picamera2() -> Picamera2Library:
    """Import picamera2; raises SourceError when it is not installed."""
    try:
        from picamera2 import MappedArray, Picamera2  # noqa: PLC0415 - only on a Pi
        from picamera2.encoders import H264Encoder  # noqa: PLC0415
        from picamera2.outputs import Output  # noqa: PLC0415
    except (ImportError, OSError) as exc:
        raise SourceError(f"picamera2 is unavailable ({exc}); {PI_EXTRA_HINT}") from exc
    return Picamera2Library(Picamera2, H264Encoder, MappedArray, Output)


class EncodedFrame(NamedTuple):
    """What the encoder thread hands over: the H.264 bytes, keyframe flag, microseconds."""

    data: bytes
    keyframe: bool
    timestamp_us: int


class SegmentPacketOutput:
    """A picamera2 `Output` that puts each encoded frame on a bounded queue and nothing more.

    picamera2 calls `outputframe` on its encoder thread, so it never blocks: when the queue
    is full the frame is dropped and counted, and so is every frame after it up to the next
    keyframe (they could not be decoded). Use `bind_output` to derive it from picamera2's
    `Output` class, which picamera2 requires of every output.
    """

    def __init__(self, frames: queue.Queue[EncodedFrame]) -> None:
        """Hand frames to `frames`; recording starts when the encoder calls `start()`."""
        super().__init__()
        self._frames = frames
        self._lock = threading.Lock()
        self._dropped = 0
        self._waiting_for_keyframe = False

    def outputframe(
        self,
        frame: bytes | None,
        keyframe: bool = True,
        timestamp: int | None = None,
        packet: object = None,
        audio: bool = False,
    ) -> None:
        """Queue one encoded video frame (called by picamera2 on the encoder's thread)."""
        if audio or frame is None:
            return  # picamera2's own audio path is not used; audio comes from our microphone
        if timestamp is None or (self._waiting_for_keyframe and not keyframe):
            self._count_drop()
            return
        try:
            self._frames.put_nowait(EncodedFrame(bytes(frame), keyframe, int(timestamp)))
        except queue.Full:
            self._count_drop()
            self._waiting_for_keyframe = True
            return
        self._waiting_for_keyframe = False

    def take_dropped(self) -> int:
        """Return the frames dropped since the last call and reset the count."""
        with self._lock:
            dropped, self._dropped = self._dropped, 0
        return dropped

    def _count_drop(self) -> None:
        with self._lock:
            self._dropped += 1


def bind_output(output_base: type) -> type[SegmentPacketOutput]:
    """Return `SegmentPacketOutput` derived from picamera2's `Output` (or a stand-in of it)."""
    return cast(
        "type[SegmentPacketOutput]",
        type("SegmentPacketOutput", (SegmentPacketOutput, output_base), {}),
    )


class _FrameClock(NamedTuple):
    relative_us: int
    mono_ns: int
    wall_ns: int


class PicameraSource:
    """A `PacketSource` over picamera2: the camera is opened and configured on construction."""

    def __init__(
        self,
        width: int,
        height: int,
        fps: int | Fraction,
        segment_seconds: float,
        *,
        badge_id: str,
        camera_num: int = 0,
        bitrate: int | None = None,
        queue_packets: int = 120,
        library: Picamera2Library | None = None,
    ) -> None:
        """Open and configure the camera; raises SourceError if picamera2 or a camera is absent."""
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise SourceError(f"camera size must be even and positive, got {width}x{height}")
        if fps <= 0 or segment_seconds <= 0 or queue_packets <= 0:
            raise SourceError("camera frame rate, segment length and queue size must be positive")
        self._library = library if library is not None else load_picamera2()
        self.fps = Fraction(fps)
        self.badge_id = badge_id
        self.bitrate = bitrate
        self.iperiod = max(1, round(self.fps * Fraction(segment_seconds)))
        self.camera_num = camera_num
        self._period_ns = Fraction(1_000_000_000) / self.fps
        self._frames: queue.Queue[EncodedFrame] = queue.Queue(maxsize=queue_packets)
        self._output = bind_output(self._library.output)(self._frames)
        self._clocks: deque[_FrameClock] = deque()
        self._clock_lock = threading.Lock()
        self._first: _FrameClock | None = None
        self._first_sensor_ns = 0
        self._last_index = -1
        self._camera_dropped = 0
        self._started = False
        self._closing = False
        self._close_lock = threading.Lock()
        self._stopped = threading.Event()
        self._camera = self._open_camera(width, height)
        size = self._camera.camera_configuration()["main"]["size"]
        self.width, self.height = int(size[0]), int(size[1])

    def packets(self) -> Iterator[VideoPacket]:
        """Start recording and yield packets until `close()`; raises SourceError if it cannot.

        After `close()` it yields nothing; a second call while recording is an error.
        """
        with self._close_lock:
            if self._closing:
                return
            if self._started:
                raise SourceError(f"camera {self.camera_num} is already recording")
            self._started = True
        encoder = self._library.h264_encoder(
            bitrate=self.bitrate, repeat=True, iperiod=self.iperiod, framerate=float(self.fps)
        )
        try:
            self._camera.start_recording(encoder, self._output)
        except Exception as exc:
            self._stopped.set()
            raise SourceError(f"camera {self.camera_num} could not start recording: {exc}") from exc
        while True:
            try:
                frame = self._frames.get(timeout=0.1)
            except queue.Empty:
                if self._stopped.is_set():
                    return
                continue
            mono_ns, wall_ns = self._clock_for(frame.timestamp_us)
            pts = frame.timestamp_us * TS_CLOCK // 1_000_000
            yield VideoPacket(frame.data, frame.keyframe, pts, mono_ns, wall_ns)

    def take_dropped(self) -> int:
        """Frames lost since the last call: skipped by the camera or dropped at the queue."""
        with self._clock_lock:
            camera_dropped, self._camera_dropped = self._camera_dropped, 0
        return camera_dropped + self._output.take_dropped()

    def close(self) -> None:
        """Stop recording and release the camera; `packets()` yields what is queued, then ends."""
        with self._close_lock:
            if self._closing:
                return
            self._closing = True
        try:
            if self._started:
                self._camera.stop_recording()
            self._camera.close()
        except Exception:
            _log.exception("camera %s did not stop cleanly", self.camera_num)
        finally:
            self._stopped.set()

    def _open_camera(self, width: int, height: int) -> Any:
        period_us = round(self._period_ns / 1000)
        try:
            camera = self._library.picamera2(self.camera_num)
        except Exception as exc:
            raise SourceError(f"cannot open Raspberry Pi camera {self.camera_num}: {exc}") from exc
        try:
            config = camera.create_video_configuration(
                main={"size": (width, height), "format": _MAIN_FORMAT},
                controls={"FrameDurationLimits": (period_us, period_us)},
                display=None,
                encode="main",
            )
            camera.configure(config)
        except Exception as exc:
            camera.close()
            raise SourceError(
                f"camera {self.camera_num} cannot record {width}x{height} at {self.fps} fps: {exc}"
            ) from exc
        camera.pre_callback = self._caption
        return camera

    def _caption(self, request: Any) -> None:
        """picamera2 `pre_callback` (camera thread): stamp the clocks and draw the caption."""
        try:
            sensor_ns = int(request.get_metadata()["SensorTimestamp"])
            # SensorTimestamp runs on CLOCK_MONOTONIC, the clock time.monotonic_ns() reads.
            wall_ns = time.time_ns() - (time.monotonic_ns() - sensor_ns)
            if self._first is None:
                self._first_sensor_ns = sensor_ns
            index = round((sensor_ns - self._first_sensor_ns) / self._period_ns)
            clock = _FrameClock(
                sensor_ns // 1000 - self._first_sensor_ns // 1000, sensor_ns, wall_ns
            )
            with self._clock_lock:
                if self._first is None:
                    self._first = clock
                # Frames the sensor delivered that never reached us: the caption counter
                # skips them too, so the gap is visible in the picture as well.
                self._camera_dropped += max(0, index - self._last_index - 1)
                self._last_index = max(index, self._last_index)
                self._clocks.append(clock)
            with self._library.mapped_array(request, "main") as mapped:
                draw_overlay(mapped.array, self.badge_id, wall_ns, index)
        except Exception:
            _log.exception("caption failed on a frame of camera %s", self.camera_num)

    def _clock_for(self, timestamp_us: int) -> tuple[int, int]:
        """The clocks of the frame the encoder stamped `timestamp_us` (from its first frame)."""
        with self._clock_lock:
            clocks = self._clocks
            while clocks and clocks[0].relative_us < timestamp_us - _MATCH_TOLERANCE_US:
                clocks.popleft()  # a frame the encoder never returned
            if clocks and clocks[0].relative_us <= timestamp_us + _MATCH_TOLERANCE_US:
                clock = clocks.popleft()
                return clock.mono_ns, clock.wall_ns
            first = self._first
        if first is None:
            now_mono, now_wall = time.monotonic_ns(), time.time_ns()
            return now_mono, now_wall
        return first.mono_ns + timestamp_us * 1000, first.wall_ns + timestamp_us * 1000
