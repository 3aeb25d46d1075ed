"""The pre-roll audio setting: where privacy law forbids it, sound before a press is muted.

The microphone keeps running so every segment has the same streams (concatenated segments
play as one clip), but until an incident opens its blocks are replaced by silence.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from badge.media import AudioBlock
from badge.sources import AudioSource


class PreRollMute:
    """An `AudioSource` that passes sound through only while an incident records."""

    def __init__(self, source: AudioSource) -> None:
        self._source = source
        self._open = threading.Event()

    @property
    def sample_rate(self) -> int:
        """As the wrapped microphone."""
        return self._source.sample_rate

    @property
    def channels(self) -> int:
        """As the wrapped microphone."""
        return self._source.channels

    @property
    def realtime(self) -> bool:
        """As the wrapped microphone."""
        return self._source.realtime

    def recording(self, on: bool) -> None:
        """Let sound through (an incident is open) or mute it (none is)."""
        if on:
            self._open.set()
        else:
            self._open.clear()

    def blocks(self) -> Iterator[AudioBlock]:
        """The microphone's blocks, silenced while no incident records."""
        for block in self._source.blocks():
            yield block if self._open.is_set() else replace(
                block, samples=np.zeros_like(block.samples)
            )

    def close(self) -> None:
        """Close the wrapped microphone."""
        self._source.close()
