"""Playback: an incident's MPEG-TS segments remuxed on the fly to fragmented MP4, never re-encoded.

The segments of one badge recording are cut from one continuous MPEG-TS mux (decision 0200),
so their plaintexts, read one after another, are that stream. ``fragmented_mp4`` demuxes it
lazily (a segment is decrypted only when the demuxer reaches it) and muxes every packet,
untouched, into an MP4 with an empty ``moov`` and a fragment per keyframe, yielding bytes
as each fragment is written: a browser starts playing after the first segment, and the
whole clip is never held in memory.

``segment_mp4`` remuxes one segment on its own, its timestamps moved onto the player's
timeline (0 at the first stored segment of the incident, not the badge's uptime): what the
page's player appends, segment by segment, while the incident still records.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import Any

import av
from av.bitstream import BitStreamFilterContext

from gateway.errors import PlaybackError

MP4_OPTIONS = {"movflags": "frag_keyframe+empty_moov+default_base_moof+delay_moov"}
"""Fragmented MP4 that needs no seeking back: what a progressive ``<video>`` plays. The
``moov`` waits for the first fragment, by which time the AAC configuration is known."""
_SEGMENT_OPTIONS = {
    "movflags": MP4_OPTIONS["movflags"] + "+frag_discont",
    "use_editlist": "0",
    "avoid_negative_ts": "disabled",
}
"""A segment's own MP4 keeps its place on the timeline: each fragment's decode time is its
first packet's (``frag_discont``), and neither an edit list nor the muxer's shift to zero
moves its first frame back to 0, where a browser would lay it over the first segment."""
_NO_TAG = "\x00\x00\x00\x00"
_PROBE_OPTIONS = {"probesize": "262144", "analyzeduration": "500000"}
"""Enough for the tables, parameter sets and first audio frame at the head of a segment."""
CONTENT_TYPE = "video/mp4"
_SPS_NAL = 7
_BASELINE = "42E01E"
"""Constrained baseline, level 3.0: named when a segment carries no parameter set."""


class _SegmentReader(io.RawIOBase):
    """A forward-only file over the concatenation of byte blocks taken from an iterator."""

    def __init__(self, blocks: Iterable[bytes]) -> None:
        self._blocks = iter(blocks)
        self._current = b""
        self._position = 0

    def readable(self) -> bool:
        """Always readable."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` from the current block, taking the next one when it runs out."""
        view = memoryview(buffer).cast("B")
        while self._position >= len(self._current):
            following = next(self._blocks, None)
            if following is None:
                return 0
            self._current, self._position = following, 0
        count = min(len(view), len(self._current) - self._position)
        view[:count] = self._current[self._position : self._position + count]
        self._position += count
        return count


class _Sink:
    """A write-only, unseekable file that collects what the MP4 muxer writes."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        """Keep ``data`` until ``take``."""
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        """Everything written since the last ``take``."""
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def fragmented_mp4(segments: Iterable[bytes], where: str) -> Iterator[bytes]:
    """Remux MPEG-TS ``segments`` (plaintexts, in recording order) to fragmented MP4 bytes.

    Yields the MP4 in pieces as it is written. Raises PlaybackError naming ``where`` when
    the segments hold no playable stream; a library error never escapes.
    """
    sink = _Sink()
    try:
        source = av.open(
            _SegmentReader(segments), mode="r", format="mpegts", options=_PROBE_OPTIONS
        )
    except (av.FFmpegError, ValueError, OSError) as error:
        raise PlaybackError(f"{where}: the recording cannot be read as MPEG-TS ({error})") from None
    try:
        streams = [s for s in source.streams if s.type in ("video", "audio")]
        if not any(stream.type == "video" for stream in streams):
            raise PlaybackError(f"{where}: the recording holds no video stream")
        target = av.open(sink, mode="w", format="mp4", options=MP4_OPTIONS)
        try:
            yield from _copy_packets(source.demux(*streams), target, streams, sink)
        finally:
            target.close()
        tail = sink.take()
        if tail:
            yield tail
    except av.FFmpegError as error:
        raise PlaybackError(f"{where}: remuxing to MP4 failed ({error})") from None
    finally:
        source.close()


def _copy_packets(
    packets: Iterable[Any], target: Any, streams: list[Any], sink: _Sink
) -> Iterator[bytes]:
    """Mux ``packets`` of ``streams`` into ``target``, yielding what the muxer has written."""
    outputs = {stream.index: target.add_stream_from_template(stream) for stream in streams}
    # ADTS framing (how AAC travels in MPEG-TS) becomes MP4's AudioSpecificConfig.
    filters = {
        stream.index: BitStreamFilterContext("aac_adtstoasc", stream, outputs[stream.index])
        for stream in streams
        if stream.codec_context.name == "aac"
    }
    for output in outputs.values():
        output.codec_context.codec_tag = _NO_TAG  # MPEG-TS stream types mean nothing in MP4
    last_dts: dict[int, int] = {}
    for packet in packets:
        if packet.dts is None or packet.pts is None:
            continue  # the demuxer's end-of-stream marker, or a packet it could not time
        index = packet.stream.index
        if packet.dts <= last_dts.get(index, -(2**62)):
            continue  # a reboot inside the range restarts the clocks; MP4 needs them rising
        last_dts[index] = packet.dts
        bsf = filters.get(index)
        for ready in bsf.filter(packet) if bsf is not None else (packet,):
            ready.stream = outputs[index]
            target.mux(ready)
        written = sink.take()
        if written:
            yield written


def segment_mp4(plaintext: bytes, start_ns: int, where: str) -> tuple[bytes, str]:
    """One MPEG-TS segment as a whole fragmented MP4 whose first video frame plays at
    ``start_ns`` of the player's timeline, and its codecs as RFC 6381 names them.

    Every stream moves by the same amount, so sound stays with the picture; a packet the
    move would put before 0 (AAC priming ahead of the first picture) is left out. Raises
    PlaybackError naming ``where`` when the segment holds no playable video.
    """
    try:
        source = av.open(io.BytesIO(plaintext), mode="r", format="mpegts", options=_PROBE_OPTIONS)
    except (av.FFmpegError, ValueError, OSError) as error:
        raise PlaybackError(f"{where}: the segment cannot be read as MPEG-TS ({error})") from None
    sink = _Sink()
    try:
        streams = [s for s in source.streams if s.type in ("video", "audio")]
        packets = [p for p in source.demux(*streams) if p.pts is not None and p.dts is not None]
        first = next((p for p in packets if p.stream.type == "video"), None)
        if first is None:
            raise PlaybackError(f"{where}: the segment holds no video")
        move = Fraction(start_ns, 1_000_000_000) - int(first.pts or 0) * _base(first.time_base)
        shifts = {s.index: round(move / _base(s.time_base)) for s in streams}
        target = av.open(sink, mode="w", format="mp4", options=_SEGMENT_OPTIONS)
        try:
            for _ in _copy_packets(_moved(packets, shifts), target, streams, sink):
                pass
        finally:
            target.close()
        return sink.take(), _codecs(streams, bytes(first))
    except av.FFmpegError as error:
        raise PlaybackError(f"{where}: remuxing the segment to MP4 failed ({error})") from None
    finally:
        source.close()


def _base(time_base: Fraction | None) -> Fraction:
    """A stream's time base (MPEG-TS gives every stream one; 1/90000 is its clock)."""
    return Fraction(1, 90_000) if time_base is None else time_base


def _moved(packets: list[Any], shifts: dict[int, int]) -> Iterator[Any]:
    """``packets`` with their timestamps moved by their stream's shift, none before 0."""
    for packet in packets:
        shift = shifts[packet.stream.index]
        if packet.dts + shift < 0 or packet.pts + shift < 0:
            continue
        packet.pts += shift
        packet.dts += shift
        yield packet


def _codecs(streams: list[Any], keyframe: bytes) -> str:
    """``avc1.PPCCLL`` from the H.264 parameter set (in-band in MPEG-TS), and ``mp4a.40.2``
    for AAC-LC audio: what a browser's MediaSource is told it will be given."""
    names = [f"avc1.{_avc_profile(keyframe)}"]
    if any(stream.type == "audio" for stream in streams):
        names.append("mp4a.40.2")
    return ",".join(names)


def _avc_profile(annex_b: bytes) -> str:
    """Profile, constraint flags and level of the first sequence parameter set, in hex."""
    at = annex_b.find(b"\x00\x00\x01")
    while at >= 0 and at + 6 < len(annex_b):
        if annex_b[at + 3] & 0x1F == _SPS_NAL:
            return annex_b[at + 4 : at + 7].hex().upper()
        at = annex_b.find(b"\x00\x00\x01", at + 3)
    return _BASELINE
