"""The built-in test camera: colour bars, a moving block and the burned-in caption; no hardware.

It draws in I420 (what the H.264 encoder takes) unless asked for BGR, so the badge on the
synthetic camera needs no colour conversion and never loads OpenCV.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from badge.errors import SourceError
from badge.media import Image, PixelFormat, VideoFrame
from badge.overlay import draw_overlay

# BGR: white, yellow, cyan, green, magenta, red, blue, black (the classic bar order).
_BARS = np.array(
    [
        (235, 235, 235),
        (16, 235, 235),
        (235, 235, 16),
        (16, 235, 16),
        (235, 16, 235),
        (16, 16, 235),
        (235, 16, 16),
        (16, 16, 16),
    ],
    dtype=np.uint8,
)
_SECONDS_PER_CROSSING = 4  # the block crosses the picture in this many seconds


class Schedule:
    """Timestamps for a stream of items at a fixed period, and pacing to the monotonic clock.

    The wall clock is read once, with the monotonic clock, when the schedule starts, so the
    two clocks of every item stay consistent even if the system time is stepped meanwhile.
    """

    def __init__(self, period_ns: Fraction) -> None:
        """Start the schedule now; item 0 is due immediately."""
        self.period_ns = period_ns
        self.mono_origin_ns = time.monotonic_ns()
        self.wall_origin_ns = time.time_ns()

    def mono_ns(self, index: int) -> int:
        """Monotonic time (ns) at which item `index` is captured."""
        return self.mono_origin_ns + int(index * self.period_ns)

    def wall_ns(self, index: int) -> int:
        """Wall-clock time (ns since the epoch) at which item `index` is captured."""
        return self.wall_origin_ns + int(index * self.period_ns)

    def wait_until_due(self, index: int) -> int:
        """Sleep until item `index` is due; return the index to produce now.

        When the caller is a whole period or more late, the items it missed are skipped (the
        returned index is larger), exactly as a real sensor keeps running while nobody reads.
        """
        lateness = time.monotonic_ns() - self.mono_ns(index)
        if lateness < 0:
            time.sleep(-lateness / 1e9)
            return index
        return max(index, int((time.monotonic_ns() - self.mono_origin_ns) // self.period_ns))


class SyntheticCamera:
    """A moving test pattern with the caption burned in, as fast as asked or paced like a camera."""

    def __init__(
        self,
        width: int,
        height: int,
        fps: int | Fraction,
        badge_id: str,
        realtime: bool,
        *,
        max_frames: int | None = None,
        pixel_format: PixelFormat = "yuv420p",
    ) -> None:
        """Prepare the pattern in ``pixel_format``; raises SourceError for sizes H.264 cannot
        take or a bad rate."""
        if width < 16 or height < 16 or width % 2 or height % 2:
            raise SourceError(
                f"synthetic camera size must be even and at least 16, got {width}x{height}"
            )
        if fps <= 0:
            raise SourceError(f"synthetic camera frame rate must be positive, got {fps}")
        self.width = width
        self.height = height
        self.fps = Fraction(fps)
        self.badge_id = badge_id
        self.realtime = realtime
        self.max_frames = max_frames
        self._closed = False
        if pixel_format not in ("yuv420p", "bgr24"):
            raise SourceError(f"synthetic camera pixel format {pixel_format!r} is unknown")
        self.pixel_format: PixelFormat = pixel_format
        self._background = (
            _colour_bars(width, height)
            if pixel_format == "bgr24"
            else _stacked(_bgr_to_i420(_colour_bars(width, 2)), width, height)
        )
        self._block = max(8, height // 6)
        self._block_top = (height - self._block) // 2
        travel = width - self._block
        self._pixels_per_frame = travel / float(self.fps * _SECONDS_PER_CROSSING)

    def __iter__(self) -> Iterator[VideoFrame]:
        """Iterate over `frames()`."""
        return self.frames()

    def frames(self) -> Iterator[VideoFrame]:
        """Yield frames until closed (or `max_frames` reached); a skipped index is a lost frame."""
        schedule = Schedule(Fraction(1_000_000_000) / self.fps)
        index = 0
        while not self._closed and (self.max_frames is None or index < self.max_frames):
            if self.realtime:
                index = schedule.wait_until_due(index)
            wall_ns = schedule.wall_ns(index)
            image = self._draw(index, wall_ns)
            yield VideoFrame(image, index, schedule.mono_ns(index), wall_ns, self.pixel_format)
            index += 1

    def close(self) -> None:
        """Stop the frame iterator after the frame it is producing."""
        self._closed = True

    def _draw(self, index: int, wall_ns: int) -> Image:
        image = self._background.copy()
        travel = self.width - self._block
        offset = int(index * self._pixels_per_frame) % (2 * travel)
        left = offset if offset < travel else 2 * travel - offset  # bounce off the edges
        top = self._block_top
        size = self._block
        inner = size // 4
        if self.pixel_format == "bgr24":
            image[top : top + size, left : left + size] = 0
            image[top + inner : top + size - inner, left + inner : left + size - inner] = 255
            draw_overlay(image, self.badge_id, wall_ns, index)
            return image
        luma, u, v = _planes(image, self.width, self.height)
        luma[top : top + size, left : left + size] = 16  # video-range black and white
        luma[top + inner : top + size - inner, left + inner : left + size - inner] = 235
        bottom, right = draw_overlay(luma, self.badge_id, wall_ns, index)
        half = (slice(top // 2, (top + size + 1) // 2), slice(left // 2, (left + size + 1) // 2))
        for chroma in (u, v):  # the block and the caption box are grey: no colour
            chroma[half] = 128
            chroma[: (bottom + 1) // 2, : (right + 1) // 2] = 128
        return image


def _colour_bars(width: int, height: int) -> Image:
    columns = np.minimum(np.arange(width) * len(_BARS) // width, len(_BARS) - 1)
    row = _BARS[columns]
    return np.ascontiguousarray(np.broadcast_to(row, (height, width, 3)))


def _planes(image: Image, width: int, height: int) -> tuple[Image, Image, Image]:
    """Views of the Y, U and V planes of an I420 image."""
    flat = image.reshape(-1)
    luma_size = width * height
    chroma = (height // 2, width // 2)
    chroma_size = chroma[0] * chroma[1]
    return (
        flat[:luma_size].reshape(height, width),
        flat[luma_size : luma_size + chroma_size].reshape(chroma),
        flat[luma_size + chroma_size :].reshape(chroma),
    )


def _bgr_to_i420(bgr: Image) -> Image:
    """BT.601 video-range I420 of a full-range BGR image (once, for the background), as
    OpenCV's ``COLOR_BGR2YUV_I420`` converts it, averaging each 2 x 2 for chroma."""
    height, width = bgr.shape[:2]
    b, g, r = (bgr[..., channel].astype(np.float32) / 255 for channel in range(3))
    y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    u = 128 - 37.797 * r - 74.203 * g + 112.0 * b
    v = 128 + 112.0 * r - 93.786 * g - 18.214 * b

    def half(plane: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.floating[Any]]:
        return np.asarray(plane.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3)))

    planar = np.empty((height * 3 // 2, width), dtype=np.uint8)
    luma, u_plane, v_plane = _planes(planar, width, height)
    luma[:] = np.clip(np.rint(y), 0, 255)
    u_plane[:] = np.clip(np.rint(half(u)), 0, 255)
    v_plane[:] = np.clip(np.rint(half(v)), 0, 255)
    return planar


def _stacked(two_rows: Image, width: int, height: int) -> Image:
    """An I420 picture of ``height`` rows each like the two of ``two_rows`` (the bars do
    not change down the picture), made without a full-size temporary."""
    luma_row, u_row, v_row = (plane[0] for plane in _planes(two_rows, width, 2))
    planar = np.empty((height * 3 // 2, width), dtype=np.uint8)
    luma, u, v = _planes(planar, width, height)
    luma[:] = luma_row
    u[:] = u_row
    v[:] = v_row
    return planar
