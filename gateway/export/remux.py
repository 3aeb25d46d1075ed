"""The derived MP4 of a court package: the MPEG-TS clip remuxed for browsers, never re-encoded.

Packets are copied as they are (``ffmpeg -c copy``); FFmpeg's MP4 muxer moves AAC from ADTS
framing to MP4's (its automatic ``aac_adtstoasc``), and ``+faststart`` puts the index first
so a browser can play while it downloads. The pictures and sound are the recorded ones.

An incident's segments come from one continuous mux (decision 0200), so its clip starts
wherever the badge's timeline was, seconds or hours in. Left as they are, those timestamps
make the MP4 begin with an empty edit as long as that offset, which a player shows as
missing seconds. Every timestamp is moved back by the first video timestamp, so the
timeline starts at 0 with the first picture; sound encoded just before it keeps its small
negative start, which MP4 records as priming to skip, and sound that starts a few
milliseconds after it keeps that short delay (an edit shorter than one audio frame, so the
sound stays in step with the pictures).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import av.stream

from gateway.errors import ExportError


def remux_to_mp4(source: Path, target: Path) -> None:
    """Write ``target`` (MP4) with every audio and video packet of ``source`` (MPEG-TS)."""
    try:
        with (
            av.open(str(source)) as clip,
            av.open(str(target), "w", format="mp4", options={"movflags": "+faststart"}) as mp4,
        ):
            copied = [stream for stream in clip.streams if stream.type in ("video", "audio")]
            outputs = {stream.index: mp4.add_stream_from_template(stream) for stream in copied}
            zero = _timeline_start(copied)
            for packet in clip.demux(copied):
                if packet.dts is None:  # the demuxer's end-of-stream marker carries no data
                    continue
                if packet.time_base is not None:
                    shift = round(zero / packet.time_base)
                    packet.dts -= shift
                    if packet.pts is not None:
                        packet.pts -= shift
                packet.stream = outputs[packet.stream.index]
                mp4.mux(packet)
    except (av.FFmpegError, ValueError, OSError) as error:
        raise ExportError(f"cannot remux {source} into an MP4: {error}") from None


def _timeline_start(streams: list[av.stream.Stream]) -> Fraction:
    """The clip's first video timestamp in seconds (else its first timestamp; 0 if unknown)."""
    starts = {
        stream.type: Fraction(stream.start_time) * stream.time_base
        for stream in sorted(streams, key=lambda stream: stream.type != "video")
        if stream.start_time is not None and stream.time_base is not None
    }
    if "video" in starts:
        return starts["video"]
    return min(starts.values(), default=Fraction(0))
