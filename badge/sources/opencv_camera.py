"""Frames from a USB camera (by index) or a video file (by path) via OpenCV, caption burned in."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from badge.errors import SourceError
from badge.media import Image, VideoFrame
from badge.overlay import draw_overlay
from badge.sources.synthetic import Schedule

_DEFAULT_FPS = 30


class OpenCVCamera:
    """A `FrameSource` over `cv2.VideoCapture`: a camera index, or a file path or stream URL.

    Cameras are realtime: each frame is stamped with the clocks when it was read. Files are
    read as fast as the consumer takes them (unless `realtime=True`), stamped at the file's
    nominal frame rate from the moment the first frame was read.
    """

    def __init__(
        self,
        device: int | str,
        *,
        badge_id: str,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        realtime: bool | None = None,
    ) -> None:
        """Open the device and read its first frame; raises SourceError if either fails."""
        self.device = device
        self.badge_id = badge_id
        self._is_camera = isinstance(device, int)
        self.realtime = self._is_camera if realtime is None else realtime
        if isinstance(device, str) and "://" not in device and not Path(device).is_file():
            raise SourceError(f"video file {device!r} does not exist or is not a file")
        self._capture = cv2.VideoCapture(device)
        if not self._capture.isOpened():
            self._capture.release()
            kind = "camera" if self._is_camera else "video source"
            raise SourceError(f"cannot open {kind} {device!r} with OpenCV; is it connected?")
        if self._is_camera:
            self._request(width, height, fps)
        self._lock = threading.Lock()
        self._released = False
        self._closed = False
        self._first_mono_ns = time.monotonic_ns()
        self._first_wall_ns = time.time_ns()
        first = self._read()
        if first is None:
            self._release()
            raise SourceError(f"{device!r} opened but delivered no frame")
        if first.shape[0] % 2 or first.shape[1] % 2:
            self._release()
            raise SourceError(
                f"{device!r} delivers {first.shape[1]}x{first.shape[0]} frames; "
                "H.264 needs even sizes"
            )
        self._first = first
        self.height, self.width = int(first.shape[0]), int(first.shape[1])
        reported = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        nominal = reported if reported > 0 else (fps or _DEFAULT_FPS)
        self.fps = Fraction(nominal).limit_denominator(1001)

    def __iter__(self) -> Iterator[VideoFrame]:
        """Iterate over `frames()`."""
        return self.frames()

    def frames(self) -> Iterator[VideoFrame]:
        """Yield frames until the file ends or the source is closed.

        Raises SourceError when a camera stops delivering frames.
        """
        schedule = Schedule(Fraction(1_000_000_000) / self.fps)
        schedule.mono_origin_ns, schedule.wall_origin_ns = self._first_mono_ns, self._first_wall_ns
        image: Image | None = self._first
        index = 0
        try:
            while image is not None and not self._closed:
                if self._is_camera:
                    mono_ns, wall_ns = time.monotonic_ns(), time.time_ns()
                else:
                    if self.realtime:
                        schedule.wait_until_due(index)
                    mono_ns, wall_ns = schedule.mono_ns(index), schedule.wall_ns(index)
                draw_overlay(image, self.badge_id, wall_ns, index)
                yield VideoFrame(image, index, mono_ns, wall_ns)
                index += 1
                image = self._read()
                if image is None and self._is_camera and not self._closed:
                    raise SourceError(f"camera {self.device!r} stopped delivering frames")
        finally:
            self._release()

    def close(self) -> None:
        """Release the device; a running `frames()` iterator ends after the current frame."""
        self._closed = True
        self._release()

    def _request(self, width: int | None, height: int | None, fps: float | None) -> None:
        if width is not None:
            self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height is not None:
            self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if fps is not None:
            self._capture.set(cv2.CAP_PROP_FPS, fps)

    def _read(self) -> Image | None:
        with self._lock:
            if self._released:
                return None
            ok, image = self._capture.read()
        if not ok or image is None:
            return None
        return np.asarray(image, dtype=np.uint8)

    def _release(self) -> None:
        with self._lock:
            if not self._released:
                self._capture.release()
                self._released = True
