"""The caption burned into every frame: UTC time to the millisecond, frame counter and badge id."""

from __future__ import annotations

import time
from functools import lru_cache

import cv2
import numpy as np
import numpy.typing as npt

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_MARGIN = 4
_REFERENCE_HEIGHT = 720
"""At this image height the caption uses font scale 0.6; it scales with the image."""


def caption_lines(badge_id: str, wall_ns: int, frame_index: int) -> tuple[str, str]:
    """Return the two caption lines drawn on a frame (time line, counter and badge line)."""
    seconds, remainder_ns = divmod(wall_ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))
    return (
        f"{stamp}.{remainder_ns // 1_000_000:03d} UTC",
        f"#{frame_index:07d}  badge {badge_id}",
    )


def draw_overlay(
    image: npt.NDArray[np.uint8], badge_id: str, wall_ns: int, frame_index: int
) -> None:
    """Burn the caption into the top-left corner of `image` in place.

    Works on BGR (H x W x 3), BGRX (H x W x 4) and single-plane luma (H x W) images, which
    covers OpenCV frames and the buffers picamera2 maps for its ``pre_callback``.
    """
    height = image.shape[0]
    scale, thickness, line_height = _layout(height)
    lines = caption_lines(badge_id, wall_ns, frame_index)
    box_width = 2 * _MARGIN + max(
        cv2.getTextSize(line, _FONT, scale, thickness)[0][0] for line in lines
    )
    box_bottom = min(height, _MARGIN * 2 + line_height * len(lines))
    box_right = min(image.shape[1], box_width)
    # Darken rather than blank the box: the caption stays legible and the scene behind it
    # is not entirely hidden.
    region = image[:box_bottom, :box_right]
    np.right_shift(region, 2, out=region)
    for number, line in enumerate(lines, start=1):
        origin = (_MARGIN, _MARGIN + line_height * number - line_height // 4)
        cv2.putText(image, line, origin, _FONT, scale, (255, 255, 255, 255), thickness, cv2.LINE_AA)


@lru_cache(maxsize=8)
def _layout(height: int) -> tuple[float, int, int]:
    """Font scale, stroke thickness and line height for an image of this height."""
    scale = max(0.35, 0.6 * height / _REFERENCE_HEIGHT)
    thickness = 1 if scale < 0.9 else 2
    text_height = cv2.getTextSize("0:", _FONT, scale, thickness)[0][1]
    return scale, thickness, int(text_height * 1.8) + 1
