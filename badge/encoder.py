"""H.264 and AAC encoding with PyAV, and the encoded packets that both capture paths produce."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import numpy.typing as npt
from av.audio.codeccontext import AudioCodecContext
from av.video.codeccontext import VideoCodecContext

from badge.errors import EncoderError
from badge.media import VideoFrame

TS_CLOCK = 90_000
"""MPEG-TS presentation clock (ticks per second); video packet timestamps use it."""

AUTO_VIDEO_CODEC = "auto"
HARDWARE_VIDEO_CODEC = "h264_v4l2m2m"
SOFTWARE_VIDEO_CODEC = "libx264"

_log = logging.getLogger(__name__)

# ISO/IEC 14496-3 sampling frequency index table, as ADTS headers carry it.
_ADTS_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)
_AAC_LC_PROFILE = 1  # ADTS "profile" field: audio object type 2 (AAC LC) minus one
_ADTS_HEADER_BYTES = 7
_ADTS_MAX_FRAME = (1 << 13) - 1


@dataclass(frozen=True)
class VideoPacket:
    """One encoded H.264 access unit (Annex B byte stream) with the clocks of its frame.

    `pts` counts `TS_CLOCK` ticks from the first frame of the recording; packets carry no
    B-frames, so decode order equals presentation order.
    """

    data: bytes
    keyframe: bool
    pts: int
    mono_ns: int
    wall_ns: int


@dataclass(frozen=True)
class AudioPacket:
    """One AAC-LC frame with its ADTS header; `pts` counts samples from the first video frame."""

    data: bytes
    pts: int
    samples: int


def choose_video_codec(requested: str = AUTO_VIDEO_CODEC) -> str:
    """Return the H.264 encoder to use: the requested one, or under "auto" the first that opens.

    "auto" prefers the Raspberry Pi's V4L2 memory-to-memory hardware encoder and falls back to
    libx264 when the codec is missing from this PyAV build or its device cannot be opened.
    """
    if requested != AUTO_VIDEO_CODEC:
        if requested not in (HARDWARE_VIDEO_CODEC, SOFTWARE_VIDEO_CODEC):
            raise EncoderError(
                f"video codec {requested!r} is not supported; use 'auto', "
                f"{SOFTWARE_VIDEO_CODEC!r} or {HARDWARE_VIDEO_CODEC!r}"
            )
        return requested
    if HARDWARE_VIDEO_CODEC in av.codecs_available:
        probe = _video_context(HARDWARE_VIDEO_CODEC)
        probe.width, probe.height, probe.pix_fmt = 640, 480, "yuv420p"
        probe.time_base = Fraction(1, TS_CLOCK)
        probe.framerate = Fraction(30)
        probe.bit_rate = 1_000_000
        try:
            probe.open()
        except av.FFmpegError as exc:
            _log.info("hardware H.264 encoder unavailable (%s); using libx264", exc)
        else:
            return HARDWARE_VIDEO_CODEC
    if SOFTWARE_VIDEO_CODEC not in av.codecs_available:
        raise EncoderError("this PyAV build has neither h264_v4l2m2m nor libx264; reinstall av")
    return SOFTWARE_VIDEO_CODEC


class VideoEncoder:
    """Encodes BGR frames to H.264 with a keyframe exactly every `fps * segment_seconds` frames."""

    def __init__(
        self,
        width: int,
        height: int,
        fps: Fraction,
        segment_seconds: float,
        *,
        codec: str = AUTO_VIDEO_CODEC,
        bitrate: int | None = None,
        preset: str = "ultrafast",
    ) -> None:
        """Open the encoder; raises EncoderError when the size is odd or no encoder opens."""
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise EncoderError(f"H.264 needs an even, positive frame size, got {width}x{height}")
        self.width = width
        self.height = height
        self.keyframe_interval = max(1, round(fps * Fraction(segment_seconds)))
        self.codec_name = choose_video_codec(codec)
        context = _video_context(self.codec_name)
        context.width, context.height, context.pix_fmt = width, height, "yuv420p"
        context.time_base = Fraction(1, TS_CLOCK)
        context.framerate = fps
        context.gop_size = self.keyframe_interval
        context.max_b_frames = 0
        if self.codec_name == SOFTWARE_VIDEO_CODEC:
            interval = self.keyframe_interval
            context.options = {
                "preset": preset,
                "tune": "zerolatency",
                "x264-params": f"keyint={interval}:min-keyint={interval}:scenecut=0",
            }
            if bitrate is not None:
                context.bit_rate = bitrate
        else:
            # The V4L2 encoder has no constant-quality mode; without a bitrate it would use
            # FFmpeg's 200 kbit/s default. About 0.1 bit per pixel is plenty for H.264.
            context.bit_rate = bitrate or int(width * height * float(fps) / 10)
        try:
            context.open()
        except av.FFmpegError as exc:
            raise EncoderError(f"could not open H.264 encoder {self.codec_name}: {exc}") from exc
        self._context = context
        # Clocks of frames inside the encoder, by pts: a hardware encoder returns packets late.
        self._clocks: dict[int, tuple[int, int]] = {}

    def encode(self, frame: VideoFrame, pts: int) -> list[VideoPacket]:
        """Encode one frame (BGR or I420) shown at `pts` (TS_CLOCK ticks); return the finished
        packets."""
        image = frame.image
        planar_shape = (self.height * 3 // 2, self.width)
        if frame.pixel_format == "yuv420p" and image.shape != planar_shape:
            raise EncoderError(
                f"I420 frame {frame.index} has shape {image.shape}, but the encoder was opened "
                f"for {self.width}x{self.height} (shape {planar_shape})"
            )
        if frame.pixel_format == "bgr24" and image.shape[:2] != (self.height, self.width):
            raise EncoderError(
                f"frame {frame.index} is {image.shape[1]}x{image.shape[0]}, but the encoder "
                f"was opened for {self.width}x{self.height}"
            )
        # An I420 frame is already the encoder's planar layout; a BGR one takes one colour
        # conversion straight into it. The frame then wraps that buffer without another copy.
        planar = image if frame.pixel_format == "yuv420p" else _bgr_to_i420(image)
        picture = av.VideoFrame.from_numpy_buffer(planar, format="yuv420p")
        picture.pts = pts
        picture.time_base = self._context.time_base
        self._clocks[pts] = (frame.mono_ns, frame.wall_ns)
        return self._run(picture)

    def flush(self) -> list[VideoPacket]:
        """Drain the packets the encoder still holds; the encoder is finished afterwards."""
        return self._run(None)

    def _run(self, picture: av.VideoFrame | None) -> list[VideoPacket]:
        try:
            packets = self._context.encode(picture)
        except av.FFmpegError as exc:
            raise EncoderError(f"H.264 encoder {self.codec_name} failed: {exc}") from exc
        encoded = []
        for packet in packets:
            pts = _pts(packet.pts)
            clocks = self._clocks.pop(pts, None)
            if clocks is None:
                raise EncoderError(f"{self.codec_name} returned pts {pts}, which no frame had")
            mono_ns, wall_ns = clocks
            # Frames the encoder never returned would otherwise stay here for good.
            while self._clocks and next(iter(self._clocks)) < pts:
                del self._clocks[next(iter(self._clocks))]
            encoded.append(VideoPacket(bytes(packet), packet.is_keyframe, pts, mono_ns, wall_ns))
        return encoded


class AudioEncoder:
    """Encodes interleaved 16-bit PCM to AAC-LC frames with ADTS headers, as MPEG-TS wants."""

    def __init__(self, sample_rate: int, channels: int, bitrate: int = 64_000) -> None:
        """Open the AAC encoder; raises EncoderError for unsupported rates or channel counts."""
        if sample_rate not in _ADTS_RATES:
            raise EncoderError(f"AAC cannot carry a sample rate of {sample_rate} Hz")
        if channels not in (1, 2):
            raise EncoderError(f"the badge records mono or stereo audio, not {channels} channels")
        self.sample_rate = sample_rate
        self.channels = channels
        self._layout = "mono" if channels == 1 else "stereo"
        context = av.CodecContext.create("aac", "w")
        if not isinstance(context, AudioCodecContext):
            raise EncoderError("this PyAV build's aac codec is not an audio encoder")
        context.sample_rate = sample_rate
        context.layout = self._layout
        context.format = "fltp"
        context.bit_rate = bitrate
        context.time_base = Fraction(1, sample_rate)
        try:
            context.open()
        except av.FFmpegError as exc:
            raise EncoderError(f"could not open the AAC encoder: {exc}") from exc
        self._context = context
        self._rate_index = _ADTS_RATES.index(sample_rate)

    def encode(self, samples: npt.NDArray[np.int16], pts: int) -> list[AudioPacket]:
        """Encode interleaved samples whose first sample plays at `pts` (in samples)."""
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples, dtype=np.int16).reshape(1, -1),
            format="s16",
            layout=self._layout,
        )
        frame.sample_rate = self.sample_rate
        frame.pts = pts
        frame.time_base = self._context.time_base
        return self._run(frame)

    def flush(self) -> list[AudioPacket]:
        """Drain the frames the encoder still holds; the encoder is finished afterwards."""
        return self._run(None)

    def _run(self, frame: av.AudioFrame | None) -> list[AudioPacket]:
        try:
            packets = self._context.encode(frame)
        except av.FFmpegError as exc:
            raise EncoderError(f"AAC encoder failed: {exc}") from exc
        return [
            AudioPacket(
                data=self._adts_header(packet.size) + bytes(packet),
                pts=_pts(packet.pts),
                samples=int(packet.duration or 1024),
            )
            for packet in packets
        ]

    def _adts_header(self, payload_bytes: int) -> bytes:
        """Build the 7-byte ADTS header (no CRC) for one raw AAC frame."""
        length = payload_bytes + _ADTS_HEADER_BYTES
        if length > _ADTS_MAX_FRAME:
            raise EncoderError(f"AAC frame of {payload_bytes} bytes does not fit an ADTS header")
        return bytes(
            (
                0xFF,
                0xF1,  # sync word end, MPEG-4, layer 0, no CRC
                (_AAC_LC_PROFILE << 6) | (self._rate_index << 2) | (self.channels >> 2),
                ((self.channels & 0x3) << 6) | (length >> 11),
                (length >> 3) & 0xFF,
                ((length & 0x7) << 5) | 0x1F,  # buffer fullness 0x7FF: variable rate
                0xFC,  # rest of buffer fullness, one raw data block
            )
        )


def _video_context(codec_name: str) -> VideoCodecContext:
    context = av.CodecContext.create(codec_name, "w")
    if not isinstance(context, VideoCodecContext):
        raise EncoderError(f"{codec_name} is not a video encoder")
    return context


def _pts(value: int | None) -> int:
    if value is None:
        raise EncoderError("the encoder returned a packet without a timestamp")
    return int(value)


def _bgr_to_i420(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """BGR to planar I420 with OpenCV (4-5x faster than swscale here), loaded only by the
    sources that deliver BGR: OpenCV's own camera and file input."""
    import cv2  # noqa: PLC0415 - the synthetic and picamera2 paths never load OpenCV

    return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), dtype=np.uint8)
