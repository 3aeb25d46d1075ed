"""What travels between capture, encoder and sealer: frames, audio blocks and encoded segments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]
"""A video image, uint8: height x width x 3 BGR (OpenCV's layout, ``bgr24``), or planar
I420 (``yuv420p``: (height * 3 / 2) x width, the Y plane then U then V)."""

PixelFormat = Literal["bgr24", "yuv420p"]


@dataclass(frozen=True)
class VideoFrame:
    """One captured video frame with both clocks read at capture time."""

    image: Image
    index: int
    mono_ns: int
    wall_ns: int
    pixel_format: PixelFormat = "bgr24"
    """``yuv420p`` goes to the H.264 encoder as it is; ``bgr24`` is converted first."""


@dataclass(frozen=True)
class AudioBlock:
    """A block of captured audio: interleaved signed 16-bit samples."""

    samples: npt.NDArray[np.int16]
    sample_rate: int
    channels: int
    mono_ns: int
    wall_ns: int


@dataclass(frozen=True)
class CodecParameters:
    """How a segment is encoded; recorded in every sealed segment's header."""

    container: str
    video_codec: str
    width: int
    height: int
    fps_num: int
    fps_den: int
    audio_codec: str | None = None
    audio_sample_rate: int = 0
    audio_channels: int = 0

    def as_header_fields(self) -> dict[str, str | int]:
        """Return the parameters as the flat map the segment header carries."""
        fields: dict[str, str | int] = {
            "container": self.container,
            "video_codec": self.video_codec,
            "width": self.width,
            "height": self.height,
            "fps_num": self.fps_num,
            "fps_den": self.fps_den,
        }
        if self.audio_codec is not None:
            fields["audio_codec"] = self.audio_codec
            fields["audio_sample_rate"] = self.audio_sample_rate
            fields["audio_channels"] = self.audio_channels
        return fields


@dataclass(frozen=True)
class EncodedSegment:
    """A complete, self-contained MPEG-TS segment starting at a keyframe, not yet sealed."""

    data: bytes
    mono_start_ns: int
    mono_end_ns: int
    wall_start_ns: int
    wall_end_ns: int
    video_frames: int
    codec: CodecParameters
    dropped_frames: int = 0
    """Frames lost before encoding since the previous segment (never silent)."""
