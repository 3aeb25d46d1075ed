"""The caption burned into every frame: UTC time to the millisecond, frame counter and badge id.

Drawn with the bitmap font in :mod:`badge.glyphs` and numpy alone, so the synthetic and
picamera2 paths never load OpenCV (tens of MB resident on a 512 MB board).
"""

from __future__ import annotations

import time
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from badge.glyphs import GLYPH_HEIGHT, text_mask

_REFERENCE_HEIGHT = 720
"""At this image height a font dot is 2 x 2 pixels; it scales with the image."""


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
) -> tuple[int, int]:
    """Burn the caption into the top-left corner of `image` in place; return the bottom and
    right edges of the box it darkened.

    Works on BGR (H x W x 3), BGRX (H x W x 4) and single-plane luma (H x W) images, which
    covers OpenCV frames, the buffers picamera2 maps for its ``pre_callback`` and the Y plane
    of an I420 frame.
    """
    height, width = image.shape[:2]
    scale, margin, line_height = _layout(height)
    masks = [text_mask(line, scale) for line in caption_lines(badge_id, wall_ns, frame_index)]
    box_right = min(width, 2 * margin + max(mask.shape[1] for mask in masks))
    box_bottom = min(height, 2 * margin + line_height * len(masks))
    # Darken rather than blank the box: the caption stays legible and the scene behind it
    # is not entirely hidden.
    region = image[:box_bottom, :box_right]
    np.right_shift(region, 2, out=region)
    for number, mask in enumerate(masks):
        top = margin + number * line_height
        rows = max(0, min(mask.shape[0], height - top))
        columns = max(0, min(mask.shape[1], width - margin))
        target = image[top : top + rows, margin : margin + columns]
        target[mask[:rows, :columns]] = 255
    return box_bottom, box_right


@lru_cache(maxsize=8)
def _layout(height: int) -> tuple[int, int, int]:
    """Pixels per font dot, margin and line height for an image of this height."""
    scale = max(1, round(2 * height / _REFERENCE_HEIGHT))
    return scale, 2 * scale, (GLYPH_HEIGHT + 3) * scale
