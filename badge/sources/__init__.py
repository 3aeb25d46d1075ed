"""Where the badge's pictures and sound come from: the three kinds of source the capture loop reads.

- a `FrameSource` yields raw BGR frames with the caption already burned in (synthetic test
  pattern, USB camera, video file); the capture loop encodes them;
- a `PacketSource` yields H.264 already encoded on the device (picamera2 and the Pi's
  hardware encoder); the capture loop only muxes them;
- an `AudioSource` yields blocks of 16-bit PCM.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from typing import Protocol, runtime_checkable

from badge.encoder import VideoPacket
from badge.media import AudioBlock, VideoFrame


@runtime_checkable
class FrameSource(Protocol):
    """Raw frames, one `VideoFrame` per picture, in capture order."""

    @property
    def width(self) -> int:
        """Frame width in pixels."""
        ...

    @property
    def height(self) -> int:
        """Frame height in pixels."""
        ...

    @property
    def fps(self) -> Fraction:
        """Nominal frame rate."""
        ...

    @property
    def realtime(self) -> bool:
        """True when frames arrive at the pace of a clock (a camera), so late ones are dropped."""
        ...

    def frames(self) -> Iterator[VideoFrame]:
        """Yield frames until the source ends or is closed; a gap in `index` is a lost frame."""
        ...

    def close(self) -> None:
        """Release the device; a running `frames()` iterator ends soon after."""
        ...


@runtime_checkable
class PacketSource(Protocol):
    """Video encoded on the device: H.264 packets with the clocks of their frames."""

    @property
    def width(self) -> int:
        """Frame width in pixels."""
        ...

    @property
    def height(self) -> int:
        """Frame height in pixels."""
        ...

    @property
    def fps(self) -> Fraction:
        """Nominal frame rate."""
        ...

    def packets(self) -> Iterator[VideoPacket]:
        """Start recording and yield packets until closed; the first one is a keyframe."""
        ...

    def take_dropped(self) -> int:
        """Return how many frames were lost since the last call, and reset the count."""
        ...

    def close(self) -> None:
        """Stop recording; a running `packets()` iterator yields what is left, then ends."""
        ...


@runtime_checkable
class AudioSource(Protocol):
    """Microphone blocks of interleaved 16-bit PCM."""

    @property
    def sample_rate(self) -> int:
        """Samples per second per channel."""
        ...

    @property
    def channels(self) -> int:
        """1 (mono) or 2 (stereo)."""
        ...

    @property
    def realtime(self) -> bool:
        """True when blocks arrive at the pace of a clock (a sound card)."""
        ...

    def blocks(self) -> Iterator[AudioBlock]:
        """Yield blocks until the source ends or is closed."""
        ...

    def close(self) -> None:
        """Release the device; a running `blocks()` iterator ends soon after."""
        ...

__all__ = ["AudioSource", "FrameSource", "PacketSource"]
