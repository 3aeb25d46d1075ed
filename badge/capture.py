"""The capture loop: reads camera and microphone on their own threads, encodes, emits segments.

Threads: one reads the video source, one the microphone, one encodes and muxes. A reader of
a realtime source never waits for the encoder: when the encoder falls behind, the frame is
dropped and counted, and the next segment reports it in `dropped_frames`. Sources that are
not realtime (files, the synthetic pattern in fast mode) are read only as fast as the
encoder takes them, so nothing is dropped.

This module is long because its three threads hand frames and audio to one another and must
stop together; they stay side by side so that shutdown and the counting of every dropped
frame read in one place.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from badge.bounded import ByteBoundedQueue
from badge.encoder import AUTO_VIDEO_CODEC, TS_CLOCK, AudioEncoder, VideoEncoder
from badge.errors import BadgeError, ConfigError, EncoderError, SourceError
from badge.media import AudioBlock, CodecParameters, EncodedSegment, VideoFrame
from badge.segmenter import TsSegmenter
from badge.sources import AudioSource, FrameSource, PacketSource

_log = logging.getLogger(__name__)

_POLL_SECONDS = 0.05
_T = TypeVar("_T")


@dataclass(frozen=True)
class CaptureSettings:
    """How the capture loop encodes and cuts video; the daemon builds it from the configuration."""

    segment_seconds: float = 2.0
    video_codec: str = AUTO_VIDEO_CODEC
    """ "auto" (the V4L2 hardware encoder if it opens, else libx264), "libx264", "h264_v4l2m2m"."""
    video_bitrate: int | None = None
    """bits/s; None lets libx264 use constant quality (CRF 23)."""
    x264_preset: str = "ultrafast"
    audio_bitrate: int = 64_000
    frame_queue: int = 8
    """Frames that may wait for the encoder before a realtime source's frames are dropped."""
    frame_queue_bytes: int = 16_000_000
    """...and the bytes they may hold: five 1080p I420 frames (3.1 MB each), two BGR ones."""
    audio_queue: int = 50
    """Audio blocks that may wait for the encoder before a realtime microphone's are dropped."""
    audio_queue_bytes: int = 1_000_000
    """...and the bytes they may hold."""

    def __post_init__(self) -> None:
        """Reject values the pipeline cannot work with (ConfigError)."""
        if not 0.1 <= self.segment_seconds <= 60:
            raise ConfigError(f"segment_seconds must be 0.1 to 60, got {self.segment_seconds}")
        if self.frame_queue < 1 or self.audio_queue < 1:
            raise ConfigError("frame_queue and audio_queue must be at least 1")
        if self.frame_queue_bytes < 1 or self.audio_queue_bytes < 1:
            raise ConfigError("frame_queue_bytes and audio_queue_bytes must be at least 1")
        if self.video_bitrate is not None and self.video_bitrate <= 0:
            raise ConfigError(f"video_bitrate must be positive, got {self.video_bitrate}")
        if self.audio_bitrate <= 0:
            raise ConfigError(f"audio_bitrate must be positive, got {self.audio_bitrate}")


@dataclass(frozen=True)
class CaptureStats:
    """A snapshot of what the capture loop has done so far."""

    frames_captured: int
    """Frames the video source delivered."""
    frames_dropped: int
    """Frames missing from the delivered segments: skipped by the source, dropped because the
    encoder fell behind, or held by a segment that `on_segment` refused."""
    frames_encoded: int
    audio_blocks_dropped: int
    segments_emitted: int
    """Segments `on_segment` accepted."""
    segments_lost: int
    """Segments for which `on_segment` raised; their frames count as dropped."""


class _Counters:
    """Thread-safe tallies; `unreported` holds drops that no segment has reported yet."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.captured = 0
        self.dropped = 0
        self.unreported = 0
        self.encoded = 0
        self.audio_dropped = 0
        self.emitted = 0
        self.lost = 0

    def drop(self, frames: int) -> None:
        if frames > 0:
            with self.lock:
                self.dropped += frames
                self.unreported += frames

    def take_unreported(self) -> int:
        with self.lock:
            frames, self.unreported = self.unreported, 0
        return frames

    def snapshot(self, discarded: int) -> CaptureStats:
        with self.lock:
            return CaptureStats(
                frames_captured=self.captured,
                frames_dropped=self.dropped + discarded,
                frames_encoded=self.encoded,
                audio_blocks_dropped=self.audio_dropped,
                segments_emitted=self.emitted,
                segments_lost=self.lost,
            )


class CaptureLoop:
    """Runs capture, encoding and segmenting on background threads until stopped or the source ends.

    Callback contract: `on_segment(segment)` is called on the loop's encoding thread, once
    per finished segment, in recording order. It must return at once (hand the segment to a
    queue). If it raises, the segment is counted in `stats.segments_lost`, its frames are
    reported as dropped by the next segment, and capture goes on.
    """

    def __init__(
        self,
        video_source: FrameSource | PacketSource,
        audio_source: AudioSource | None,
        settings: CaptureSettings,
        on_segment: Callable[[EncodedSegment], None],
    ) -> None:
        """Prepare the loop; nothing is opened or started until `start()`."""
        self.video_source = video_source
        self.audio_source = audio_source
        self.settings = settings
        self._on_segment = on_segment
        self._counters = _Counters()
        self._stopping = threading.Event()  # readers: stop reading
        self._aborted = threading.Event()  # the encoding thread failed: stop waiting for it
        self._audio_done = threading.Event()
        self._frames: ByteBoundedQueue[VideoFrame | None] = ByteBoundedQueue(
            settings.frame_queue, settings.frame_queue_bytes, _frame_bytes
        )
        self._blocks: ByteBoundedQueue[AudioBlock] = ByteBoundedQueue(
            settings.audio_queue, settings.audio_queue_bytes, _block_bytes
        )
        self._period_ns = int(Fraction(1_000_000_000) / video_source.fps)
        self._failure: BadgeError | None = None
        self._segmenter: TsSegmenter | None = None
        self._audio: _AudioFeed | None = None
        self._video_reader: threading.Thread | None = None
        self._threads: list[threading.Thread] = []

    @property
    def queue_peak_bytes(self) -> tuple[int, int]:
        """The most bytes the frame queue and the audio queue have held at once."""
        return self._frames.peak_bytes, self._blocks.peak_bytes

    @property
    def stats(self) -> CaptureStats:
        """Frames captured, dropped and encoded, and segments emitted and lost, so far."""
        discarded = 0 if self._segmenter is None else self._segmenter.discarded_frames
        return self._counters.snapshot(discarded)

    @property
    def running(self) -> bool:
        """True from `start()` until every thread has finished (final segment emitted)."""
        return any(thread.is_alive() for thread in self._threads)

    @property
    def failure(self) -> BadgeError | None:
        """The first failure: a video or encoder error (which ends the loop early) or a
        microphone error (after which video continues without sound)."""
        return self._failure

    def start(self) -> None:
        """Open the encoders and muxer, then start the threads; raises EncoderError on failure."""
        if self._threads:
            raise BadgeError("capture loop was already started; make a new one to record again")
        source, microphone = self.video_source, self.audio_source
        video: VideoEncoder | None = None
        if not isinstance(source, PacketSource):
            video = VideoEncoder(
                source.width,
                source.height,
                source.fps,
                self.settings.segment_seconds,
                codec=self.settings.video_codec,
                bitrate=self.settings.video_bitrate,
                preset=self.settings.x264_preset,
            )
        sound = None
        if microphone is not None:
            sound = AudioEncoder(
                microphone.sample_rate, microphone.channels, self.settings.audio_bitrate
            )
        segmenter = TsSegmenter(
            self._codec_parameters(), self.settings.segment_seconds, self._deliver
        )
        self._segmenter = segmenter
        if microphone is not None and sound is not None:
            self._audio = _AudioFeed(
                self._blocks, sound, segmenter, self._audio_done, wait=not microphone.realtime
            )
            self._threads.append(self._thread("capture-audio", self._read_audio, microphone))
        if isinstance(source, PacketSource):
            self._threads.append(self._thread("capture-mux", self._mux_packets, source))
        elif video is not None:
            self._video_reader = self._thread("capture-video", self._read_frames, source)
            self._threads.append(self._video_reader)
            self._threads.append(self._thread("capture-encode", self._encode_frames, video))
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the sources and wait until the current, final segment has been emitted."""
        self._stopping.set()
        self.video_source.close()
        if self.audio_source is not None:
            self.audio_source.close()
        if not self.wait(timeout):
            _log.error("capture loop did not finish within %.1f s of stop()", timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the loop to finish (source ended or stopped); True if it has."""
        for thread in self._threads:
            thread.join(timeout)
        return not self.running

    # -- plumbing ------------------------------------------------------------------------

    def _thread(self, name: str, target: Callable[[_T], None], argument: _T) -> threading.Thread:
        return threading.Thread(
            target=self._guarded, args=(target, argument), name=name, daemon=True
        )

    def _guarded(self, target: Callable[[_T], None], argument: _T) -> None:
        try:
            target(argument)
        except BadgeError as exc:
            self._fail(exc)
        except Exception as exc:
            self._fail(SourceError(f"{threading.current_thread().name} failed: {exc!r}"))

    def _fail(self, error: BadgeError) -> None:
        _log.error("capture stopping early: %s", error)
        if self._failure is None:
            self._failure = error
        self._stopping.set()

    def _audio_failed(self, error: BadgeError) -> None:
        # Video goes on without sound: losing the picture because the microphone failed
        # would be worse. The failure is still reported.
        _log.error("audio lost, video continues: %s", error)
        if self._failure is None:
            self._failure = error

    def _codec_parameters(self) -> CodecParameters:
        source, audio = self.video_source, self.audio_source
        return CodecParameters(
            container="mpegts",
            video_codec="h264",
            width=source.width,
            height=source.height,
            fps_num=source.fps.numerator,
            fps_den=source.fps.denominator,
            audio_codec=None if audio is None else "aac",
            audio_sample_rate=0 if audio is None else audio.sample_rate,
            audio_channels=0 if audio is None else audio.channels,
        )

    # -- reader threads ------------------------------------------------------------------

    def _read_frames(self, source: FrameSource) -> None:
        last_index: int | None = None
        frames = source.frames()
        try:
            for frame in frames:
                with self._counters.lock:
                    self._counters.captured += 1
                if last_index is not None:
                    self._counters.drop(frame.index - last_index - 1)  # skipped by the source
                last_index = frame.index
                if not self._offer(self._frames, frame, source.realtime, self._aborted):
                    self._counters.drop(1)
                if self._stopping.is_set():
                    break
        finally:
            _close_iterator(frames)
            self._offer(self._frames, None, False, self._aborted)  # end of video

    def _read_audio(self, source: AudioSource) -> None:
        blocks = source.blocks()
        try:
            self._queue_audio(source, blocks)
        except BadgeError as exc:
            self._audio_failed(exc)
        except Exception as exc:
            self._audio_failed(SourceError(f"microphone failed: {exc!r}"))
        finally:
            _close_iterator(blocks)
            self._audio_done.set()

    def _queue_audio(self, source: AudioSource, blocks: Iterator[AudioBlock]) -> None:
        for block in blocks:
            offered = self._offer(self._blocks, block, source.realtime, self._stopping)
            if not offered and not self._stopping.is_set():
                with self._counters.lock:
                    self._counters.audio_dropped += 1
            if self._stopping.is_set():
                return

    @staticmethod
    def _offer(
        into: ByteBoundedQueue[_T], item: _T, realtime: bool, give_up: threading.Event
    ) -> bool:
        """Queue `item`; a realtime source never waits. False if the item was not queued."""
        if realtime:
            try:
                into.put_nowait(item)
            except queue.Full:
                return False
            return True
        while not give_up.is_set():
            try:
                into.put(item, timeout=_POLL_SECONDS)
            except queue.Full:
                continue
            return True
        return False

    # -- encoding threads ----------------------------------------------------------------

    def _encode_frames(self, encoder: VideoEncoder) -> None:
        segmenter = self._require_segmenter()
        clock = _VideoClock()
        end_ns: int | None = None
        try:
            while (frame := self._frames.get()) is not None:
                segmenter.report_dropped(self._counters.take_unreported())
                end_ns = frame.mono_ns + self._period_ns
                if self._audio is not None:
                    self._audio.feed_until(frame.mono_ns, end_ns)
                for packet in encoder.encode(frame, clock.pts(frame.mono_ns)):
                    segmenter.add_video(packet)
                with self._counters.lock:
                    self._counters.encoded += 1
            for packet in encoder.flush():
                segmenter.add_video(packet)
            self._finish(segmenter, end_ns)
        except BaseException:
            self._aborted.set()
            self._stopping.set()
            self._drain_frames()
            raise
        finally:
            self._close_segmenter(segmenter)

    def _mux_packets(self, source: PacketSource) -> None:
        segmenter = self._require_segmenter()
        end_ns: int | None = None
        try:
            for packet in source.packets():
                with self._counters.lock:
                    self._counters.captured += 1
                self._counters.drop(source.take_dropped())
                segmenter.report_dropped(self._counters.take_unreported())
                end_ns = packet.mono_ns + self._period_ns
                if self._audio is not None:
                    self._audio.feed_until(packet.mono_ns, end_ns)
                segmenter.add_video(packet)
                with self._counters.lock:
                    self._counters.encoded += 1
                if self._stopping.is_set():
                    source.close()  # packets() still yields what the encoder had queued
            self._counters.drop(source.take_dropped())
            self._finish(segmenter, end_ns)
        finally:
            self._stopping.set()
            source.close()
            self._close_segmenter(segmenter)

    def _finish(self, segmenter: TsSegmenter, end_ns: int | None) -> None:
        self._stopping.set()
        if self._audio is not None and end_ns is not None:
            self._audio.finish(end_ns)
        segmenter.report_dropped(self._counters.take_unreported())

    def _require_segmenter(self) -> TsSegmenter:
        if self._segmenter is None:
            raise EncoderError("capture thread ran before the segmenter was opened")
        return self._segmenter

    def _drain_frames(self) -> None:
        """After an encoder failure: count queued frames as dropped until the reader exits."""
        reader = self._video_reader
        while (reader is not None and reader.is_alive()) or not self._frames.empty():
            try:
                frame = self._frames.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
            if frame is not None:
                self._counters.drop(1)

    def _close_segmenter(self, segmenter: TsSegmenter) -> None:
        try:
            segmenter.close()
        except BadgeError as exc:
            self._fail(exc)

    def _deliver(self, segment: EncodedSegment) -> None:
        try:
            self._on_segment(segment)
        except Exception:
            _log.exception(
                "on_segment refused a segment of %d frames; the next segment reports them dropped",
                segment.video_frames,
            )
            with self._counters.lock:
                self._counters.lost += 1
                # The drops this segment reported were counted already; carry them forward.
                self._counters.unreported += segment.dropped_frames
            self._counters.drop(segment.video_frames)
            if self._segmenter is not None:
                self._segmenter.report_dropped(self._counters.take_unreported())
        else:
            with self._counters.lock:
                self._counters.emitted += 1


class _VideoClock:
    """Turns capture times into strictly increasing TS_CLOCK ticks from the first frame."""

    def __init__(self) -> None:
        self._origin_ns: int | None = None
        self._last = -1

    def pts(self, mono_ns: int) -> int:
        if self._origin_ns is None:
            self._origin_ns = mono_ns
        ticks = (mono_ns - self._origin_ns) * TS_CLOCK // 1_000_000_000
        self._last = max(ticks, self._last + 1)
        return self._last


class _AudioFeed:
    """Puts microphone blocks on the video's timeline, encodes them and hands them to the muxer.

    Audio timestamps run on without gaps from the first block heard after the first video
    frame; blocks lost on the way are replaced by the same length of silence, so the sound
    stays in step with the picture.
    """

    _MAX_SILENCE_SECONDS = 10

    def __init__(
        self,
        blocks: ByteBoundedQueue[AudioBlock],
        encoder: AudioEncoder,
        segmenter: TsSegmenter,
        source_done: threading.Event,
        *,
        wait: bool,
    ) -> None:
        self._blocks = blocks
        self._encoder = encoder
        self._segmenter = segmenter
        self._source_done = source_done
        self._wait = wait
        self._pending: AudioBlock | None = None
        self._origin_ns: int | None = None
        self._next_pts: int | None = None

    def feed_until(self, video_mono_ns: int, until_ns: int) -> None:
        """Encode the blocks captured before `until_ns`; the first call fixes the timeline."""
        if self._origin_ns is None:
            self._origin_ns = video_mono_ns
        while (block := self._pending or self._take()) is not None:
            if block.mono_ns >= until_ns:
                self._pending = block
                return
            self._pending = None
            self._encode(block, self._origin_ns)

    def finish(self, end_ns: int) -> None:
        """Encode what was heard up to the end of the last frame, then flush the encoder."""
        self.feed_until(end_ns, end_ns)
        for packet in self._encoder.flush():
            self._segmenter.add_audio(packet)

    def _take(self) -> AudioBlock | None:
        if not self._wait:
            try:
                return self._blocks.get_nowait()
            except queue.Empty:
                return None
        while True:
            try:
                return self._blocks.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if self._source_done.is_set() and self._blocks.empty():
                    return None

    def _encode(self, block: AudioBlock, origin_ns: int) -> None:
        rate, channels = self._encoder.sample_rate, self._encoder.channels
        if block.sample_rate != rate or block.channels != channels:
            raise EncoderError(
                f"microphone block of {block.sample_rate} Hz x{block.channels} given to the "
                f"{rate} Hz x{channels} audio encoder"
            )
        heard_at = (block.mono_ns - origin_ns) * rate // 1_000_000_000
        if heard_at < 0:
            return  # heard before the first frame was seen
        if self._next_pts is None:
            self._next_pts = heard_at
        gap = heard_at - self._next_pts
        if gap > rate * self._MAX_SILENCE_SECONDS:
            _log.warning("audio resumes %.1f s after it stopped; timeline gap left", gap / rate)
            self._next_pts = heard_at
        elif gap > rate // 10:
            self._encode_samples(_silence(gap * channels))
        self._encode_samples(block.samples)

    def _encode_samples(self, samples: npt.NDArray[np.int16]) -> None:
        pts = self._next_pts or 0
        for packet in self._encoder.encode(samples, pts):
            self._segmenter.add_audio(packet)
        self._next_pts = pts + len(samples) // self._encoder.channels


def _silence(samples: int) -> npt.NDArray[np.int16]:
    return np.zeros(samples, dtype=np.int16)


def _close_iterator(iterator: Iterator[object]) -> None:
    """Close a generator left early, so the source releases its device now, not at GC time."""
    close = getattr(iterator, "close", None)
    if callable(close):
        close()


def _frame_bytes(frame: VideoFrame | None) -> int:
    return 0 if frame is None else frame.image.nbytes


def _block_bytes(block: AudioBlock) -> int:
    return block.samples.nbytes
