"""Microphones: a synthetic tone with beeps for tests and demos, and ALSA capture via PyAV."""

from __future__ import annotations

import time
from collections.abc import Iterator
from fractions import Fraction

import av
import numpy as np
import numpy.typing as npt
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from av.container import InputContainer

from badge.errors import SourceError
from badge.media import AudioBlock
from badge.sources.synthetic import Schedule

_TONE_HZ = 440
_BEEP_HZ = 1000
_BEEP_SECONDS = 0.1  # a beep at the start of every second makes sync and gaps audible
_TONE_LEVEL = 0.05
_BEEP_LEVEL = 0.4


class SyntheticMicrophone:
    """A quiet 440 Hz tone with a louder 1 kHz beep each second, in fixed-length blocks."""

    def __init__(
        self,
        sample_rate: int = 48_000,
        channels: int = 1,
        block_ms: int = 20,
        realtime: bool = True,
    ) -> None:
        """Prepare one second of signal; raises SourceError for a rate/block that do not divide."""
        if channels not in (1, 2):
            raise SourceError(f"synthetic microphone has 1 or 2 channels, not {channels}")
        if sample_rate <= 0 or block_ms <= 0 or sample_rate * block_ms % 1000:
            raise SourceError(
                f"{block_ms} ms blocks are not a whole number of samples at {sample_rate} Hz"
            )
        self.sample_rate = sample_rate
        self.channels = channels
        self.realtime = realtime
        self.block_samples = sample_rate * block_ms // 1000
        self._closed = False
        second = _tone_with_beep(sample_rate)
        # Two seconds back to back, so any block is one slice even across the wrap.
        self._signal = np.repeat(np.concatenate((second, second)), channels)

    def __iter__(self) -> Iterator[AudioBlock]:
        """Iterate over `blocks()`."""
        return self.blocks()

    def blocks(self) -> Iterator[AudioBlock]:
        """Yield blocks until closed; timestamps advance by exactly one block each."""
        schedule = Schedule(Fraction(self.block_samples * 1_000_000_000, self.sample_rate))
        index = 0
        while not self._closed:
            if self.realtime:
                index = schedule.wait_until_due(index)
            start = (index * self.block_samples) % self.sample_rate * self.channels
            samples = self._signal[start : start + self.block_samples * self.channels].copy()
            yield AudioBlock(
                samples,
                self.sample_rate,
                self.channels,
                schedule.mono_ns(index),
                schedule.wall_ns(index),
            )
            index += 1

    def close(self) -> None:
        """Stop the block iterator after the block it is producing."""
        self._closed = True


class AlsaMicrophone:
    """An ALSA capture device read through PyAV's `alsa` input, converted to 16-bit PCM."""

    def __init__(
        self, device: str = "default", sample_rate: int = 48_000, channels: int = 1
    ) -> None:
        """Open the device now; raises SourceError when it is absent or busy."""
        if "alsa" not in av.formats_available:
            raise SourceError("this PyAV build has no ALSA input; install av from PyPI wheels")
        self.device = device
        self.sample_rate = sample_rate
        self.channels = channels
        self.realtime = True
        self._closed = False
        try:
            container = av.open(
                device,
                format="alsa",
                options={"sample_rate": str(sample_rate), "channels": str(channels)},
            )
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise SourceError(
                f"cannot open ALSA capture device {device!r}: {exc}; list devices with `arecord -L`"
            ) from exc
        if not isinstance(container, InputContainer) or not container.streams.audio:
            container.close()
            raise SourceError(f"ALSA device {device!r} offers no audio stream")
        self._container = container
        layout = "mono" if channels == 1 else "stereo"
        self._resampler = AudioResampler(format="s16", layout=layout, rate=sample_rate)

    def __iter__(self) -> Iterator[AudioBlock]:
        """Iterate over `blocks()`."""
        return self.blocks()

    def blocks(self) -> Iterator[AudioBlock]:
        """Yield blocks as the sound card delivers them; raises SourceError if it stops."""
        stream = self._container.streams.audio[0]
        try:
            for frame in self._container.decode(stream):
                for converted in self._resampler.resample(frame):
                    yield self._block(converted)
                if self._closed:
                    return
        except av.FFmpegError as exc:
            if not self._closed:
                raise SourceError(
                    f"ALSA device {self.device!r} stopped delivering audio: {exc}"
                ) from exc
        finally:
            self._container.close()

    def close(self) -> None:
        """Stop the block iterator after the block it is reading."""
        self._closed = True

    def _block(self, frame: AudioFrame) -> AudioBlock:
        samples: npt.NDArray[np.int16] = frame.to_ndarray().reshape(-1).astype(np.int16, copy=False)
        # The block was captured over the time it lasts, ending about now.
        duration_ns = frame.samples * 1_000_000_000 // self.sample_rate
        return AudioBlock(
            samples,
            self.sample_rate,
            self.channels,
            time.monotonic_ns() - duration_ns,
            time.time_ns() - duration_ns,
        )


def _tone_with_beep(sample_rate: int) -> npt.NDArray[np.int16]:
    t = np.arange(sample_rate) / sample_rate
    signal = _TONE_LEVEL * np.sin(2 * np.pi * _TONE_HZ * t)
    beep = t < _BEEP_SECONDS
    signal[beep] += _BEEP_LEVEL * np.sin(2 * np.pi * _BEEP_HZ * t[beep])
    return np.round(signal * 32767).astype(np.int16)
